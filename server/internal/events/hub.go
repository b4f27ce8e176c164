// Package events is the wake-up hub and the ephemeral signals. A hub
// carries no data: it only tells waiters that something they watch (a
// conversation's log, an agent's work) changed, and they re-read the store,
// which is the truth. Signals (typing, read cursors) carry their data,
// because the store does not hold it.
//
// On SQLite everything stays in the process. On PostgreSQL several
// replicas share the database, and a Relay carries the hub's keys and the
// signals to every replica over LISTEN/NOTIFY. app wires it once, when
// store.Open was given a postgres:// address (the relay's dsn), before
// serving; on SQLite it makes none:
//
//	hub, signals := events.NewHub(), events.NewSignals()
//	relay, err := events.NewRelay(ctx, dsn, hub, signals, events.RelayOptions{
//		Clock:          opts.Clock,
//		Log:            opts.Log,
//		OnRevocation:   auth.NoteRemoteRevocation,
//		OnConfigChange: origins.Invalidate,
//	})
//	if err != nil { ... }
//	defer relay.Close() // after the server has drained
//
// and passes hub and signals to the services as today. Nothing else
// changes for them: Notify and Publish wake local waiters as before and
// hand their keys and signals to the relay without blocking.
package events

import (
	"sync"
	"sync/atomic"
)

// Hub wakes waiters by key.
type Hub struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
	// relay, when set, carries Notify's keys to the other replicas.
	relay atomic.Pointer[Relay]
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

// Notify wakes every waiter of each key, on this replica at once and, with
// a Relay, on the others soon after. Call it only once the writes it
// announces have committed (never inside a write transaction): a woken
// waiter re-reads the store, here or on another replica, and must find
// them.
func (h *Hub) Notify(keys ...string) {
	h.wake(keys)
	if r := h.relay.Load(); r != nil {
		r.addKeys(keys)
	}
}

// wake wakes the local waiters of keys.
func (h *Hub) wake(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, key := range keys {
		if ch, ok := h.waiters[key]; ok {
			close(ch)
			delete(h.waiters, key)
		}
	}
}

// wakeAll wakes every local waiter, whatever its key: a relay does so when
// hints may have been lost, and the waiters re-read the store.
func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.waiters {
		close(ch)
	}
	clear(h.waiters)
}

// ConversationKey is the key of a conversation's log.
func ConversationKey(id string) string { return "conversation/" + id }

// AgentKey is the key of an agent's work (offers and assignments).
func AgentKey(id string) string { return "agent/" + id }

// QueueKey is the key of a queue's waiting line: it changes when a chat
// enters or leaves the queue, which moves the others' positions.
func QueueKey(id string) string { return "queue/" + id }

// tokenKeyPrefix starts every TokenKey.
const tokenKeyPrefix = "token/"

// TokenKey is the key of a token: it changes when the token is revoked,
// which ends the streams opened with it.
func TokenKey(id string) string { return tokenKeyPrefix + id }

// RoutingKey changes with any queue, agent presence or load, for the
// supervisor's view.
const RoutingKey = "routing"

// ConfigKey changes with the sites or the installation's settings, so
// that every replica drops what it caches of them.
const ConfigKey = "config"
