// Package delivery reads what a process's streams wait for once per
// process and fans it out to them, instead of every stream reading it for
// itself: a tail per conversation (its recent committed events and its
// state, read after them) and a line per queue (every waiting chat's
// position). Each is followed by one goroutine while anyone needs it,
// woken by the hub's key of what it follows; the store stays the truth,
// and a follower that the shared reading cannot serve reads the store.
package delivery

import (
	"context"
	"sync"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/server/internal/events"
)

// shared keeps one value per id while it has followers: open makes it
// (and starts what keeps it current, until its context ends) at the first
// join, and the context ends at the last leave.
type shared[T any] struct {
	open func(ctx context.Context, id uuid.UUID) *T

	mu sync.Mutex
	m  map[uuid.UUID]*entry[T]
}

type entry[T any] struct {
	v    *T
	refs int
	stop context.CancelFunc
}

func newShared[T any](open func(ctx context.Context, id uuid.UUID) *T) *shared[T] {
	return &shared[T]{open: open, m: make(map[uuid.UUID]*entry[T])}
}

// join returns the value of id, opening it if nobody follows it yet.
func (s *shared[T]) join(id uuid.UUID) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		ctx, stop := context.WithCancel(context.Background())
		e = &entry[T]{v: s.open(ctx, id), stop: stop}
		s.m[id] = e
	}
	e.refs++
	return e.v
}

// leave ends one join of id, and the value with the last.
func (s *shared[T]) leave(id uuid.UUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[id]
	if e.refs--; e.refs == 0 {
		delete(s.m, id)
		e.stop()
	}
}

// size is how many ids are followed.
func (s *shared[T]) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// follow calls pass at once and again after every notice of key, until
// ctx ends; a pass that reports more runs again without waiting. The
// wake-up is taken before each pass, so a change committed after a pass
// read the store always brings another.
func follow(ctx context.Context, hub *events.Hub, key string, pass func(context.Context) (more bool)) {
	for ctx.Err() == nil {
		wake := hub.Wait(key)
		if pass(ctx) {
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
		}
	}
}
