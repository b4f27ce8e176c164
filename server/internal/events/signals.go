package events

import (
	"sync"
	"sync/atomic"
)

// signalBuffer is how many signals a slow subscriber may fall behind
// before further ones are dropped for it. Signals are ephemeral (typing,
// cursor moves): dropping one loses nothing the store does not hold.
const signalBuffer = 32

// Signal is an ephemeral notice for a conversation's subscribers. Unlike
// the hub's wake-ups it carries its data, because it is not in the store.
type Signal struct {
	// From is the participant id of the sender; subscribers skip their own.
	From string
	// Payload is the message to pass on (a *parleyv1.Typing, ...). Only a
	// proto.Message crosses replicas; a subscriber on another replica gets
	// a copy of it.
	Payload any
}

// Signals fans ephemeral signals out to a conversation's subscribers.
type Signals struct {
	mu   sync.Mutex
	subs map[string]map[chan Signal]struct{}
	// relay, when set, carries Publish's signals to the other replicas.
	relay atomic.Pointer[Relay]
}

// NewSignals returns a fan-out with no subscribers.
func NewSignals() *Signals {
	return &Signals{subs: make(map[string]map[chan Signal]struct{})}
}

// Subscribe returns a channel of the signals published for key from now
// on, and a function that ends the subscription.
func (s *Signals) Subscribe(key string) (<-chan Signal, func()) {
	ch := make(chan Signal, signalBuffer)
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.subs[key]
	if !ok {
		set = make(map[chan Signal]struct{})
		s.subs[key] = set
	}
	set[ch] = struct{}{}
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(set, ch)
		if len(s.subs[key]) == 0 {
			delete(s.subs, key)
		}
	}
}

// Publish passes sig to every subscriber of key without blocking; a
// subscriber whose buffer is full misses it. With a Relay, subscribers on
// the other replicas get it soon after, unless the relay is too far behind
// (signals are ephemeral: dropping one loses nothing the store holds).
func (s *Signals) Publish(key string, sig Signal) {
	s.publish(key, sig)
	if r := s.relay.Load(); r != nil {
		r.addSignal(key, sig)
	}
}

// publish passes sig to the local subscribers of key.
func (s *Signals) publish(key string, sig Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs[key] {
		select {
		case ch <- sig:
		default:
		}
	}
}
