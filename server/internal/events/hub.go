// Package events is the in-process wake-up hub. It carries no data: it only
// tells waiters that something they watch (a conversation's log, an agent's
// work) changed, and they re-read the store, which is the truth.
package events

import "sync"

// Hub wakes waiters by key.
type Hub struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{waiters: make(map[string]chan struct{})}
}

// Wait returns a channel that is closed at the next Notify of key. Take it
// before reading the store, so a change committed after the read is never
// missed.
func (h *Hub) Wait(key string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.waiters[key]
	if !ok {
		ch = make(chan struct{})
		h.waiters[key] = ch
	}
	return ch
}

// Notify wakes every waiter of each key.
func (h *Hub) Notify(keys ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, key := range keys {
		if ch, ok := h.waiters[key]; ok {
			close(ch)
			delete(h.waiters, key)
		}
	}
}

// ConversationKey is the key of a conversation's log.
func ConversationKey(id string) string { return "conversation/" + id }

// AgentKey is the key of an agent's work (offers and assignments).
func AgentKey(id string) string { return "agent/" + id }

// QueueKey is the key of a queue's waiting line: it changes when a chat
// enters or leaves the queue, which moves the others' positions.
func QueueKey(id string) string { return "queue/" + id }

// TokenKey is the key of a token: it changes when the token is revoked,
// which ends the streams opened with it.
func TokenKey(id string) string { return "token/" + id }

// RoutingKey changes with any queue, agent presence or load, for the
// supervisor's view.
const RoutingKey = "routing"
