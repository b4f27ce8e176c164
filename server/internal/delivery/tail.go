package delivery

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
)

// Tails follows the logs of the conversations this process streams: one
// Tail per conversation, whatever the number of its subscribers.
type Tails struct {
	db     *ent.Client
	hub    *events.Hub
	size   int
	shared *shared[Tail]
}

// NewTails returns the tails of conversations read from db, each woken by
// the hub's ConversationKey and holding the newest size events.
func NewTails(db *ent.Client, hub *events.Hub, size int) *Tails {
	ts := &Tails{db: db, hub: hub, size: size}
	ts.shared = newShared(ts.open)
	return ts
}

// Join returns the tail of conversation id, starting it if this process
// did not follow the conversation yet. Match every Join with a Leave.
func (ts *Tails) Join(id uuid.UUID) *Tail { return ts.shared.join(id) }

// Following is how many conversations have a tail.
func (ts *Tails) Following() int { return ts.shared.size() }

// Tail follows one conversation's log: at every wake-up of the
// conversation's key, one read of the events after its head, then one of
// the conversation, published as a Snapshot to every subscriber.
//
// Invariants: a snapshot's window holds committed events only (read from
// the store), in seq order, without a gap; its conversation was read after
// its events, so a subscriber that may read the conversation as read may
// be sent every event of the window; each snapshot's Changed is closed
// when the next is published, and a snapshot is published after every
// commit the hub is told of.
type Tail struct {
	tails *Tails
	id    uuid.UUID
	cur   atomic.Pointer[Snapshot]
}

func (ts *Tails) open(ctx context.Context, id uuid.UUID) *Tail {
	t := &Tail{tails: ts, id: id}
	t.cur.Store(&Snapshot{changed: make(chan struct{})})
	go follow(ctx, ts.hub, events.ConversationKey(id.String()), t.pass)
	return t
}

// Leave ends one Join.
func (t *Tail) Leave() { t.tails.shared.leave(t.id) }

// Snapshot is the latest snapshot.
func (t *Tail) Snapshot() *Snapshot { return t.cur.Load() }

// pass reads the log after the head and then the conversation, and
// publishes them. The first pass reads the conversation only: the window
// starts empty at its last seq, so opening a tail never reads history.
func (t *Tail) pass(ctx context.Context) (more bool) {
	prev := t.cur.Load()
	next := &Snapshot{Window: prev.Window, begun: prev.begun, changed: make(chan struct{})}
	var evs []*ent.Event
	var err error
	if prev.begun {
		evs, err = chatlog.EventsAfter(ctx, t.tails.db, t.id, prev.Window.Head(), t.tails.size)
	}
	var conv *ent.Conversation
	if err == nil {
		if conv, err = t.tails.db.Conversation.Get(ctx, t.id); err != nil {
			err = fmt.Errorf("delivery: read conversation %s: %w", t.id, err)
		}
	}
	switch {
	case err != nil:
		next.Err = err
	case !prev.begun:
		next.Window, next.begun, next.Conversation = NewWindow(conv.LastSeq), true, conv
	default:
		next.Window, next.Conversation = prev.Window.Extend(evs, t.tails.size), conv
		more = len(evs) == t.tails.size
	}
	t.cur.Store(next)
	close(prev.changed)
	return more
}

// Snapshot is what one pass of a tail read. Share it, never change it.
type Snapshot struct {
	// Window holds the conversation's newest events.
	Window Window
	// Conversation is the conversation as read after the window's events,
	// or nil before the first pass and when Err is set.
	Conversation *ent.Conversation
	// Err is why the pass failed; the window is the last pass's.
	Err error

	begun   bool
	changed chan struct{}
}

// Usable reports whether subscribers may take events and the
// conversation's state from the snapshot; if not (the tail has not read
// yet, or its read failed, or there is no snapshot), they read the store
// themselves.
func (s *Snapshot) Usable() bool { return s != nil && s.Conversation != nil }

// Changed is closed when the tail publishes the next snapshot.
func (s *Snapshot) Changed() <-chan struct{} { return s.changed }

// Next returns the next events after cursor for a subscriber of
// conversation id that checked its access against snap, at most limit of
// them, and whether more are ready after them (the subscriber goes on
// without waiting for snap.Changed()). It copies them from the window if
// that holds them; otherwise (the subscriber is behind the window or
// before a gap, or snap is nil or not usable) it reads them from the store, and
// from a usable snapshot keeps only those up to its head, so that every
// event handed out was committed before the conversation it was checked
// against was read.
func (ts *Tails) Next(ctx context.Context, snap *Snapshot, id uuid.UUID, cursor int64, limit int) (evs []*ent.Event, more bool, err error) {
	if snap.Usable() {
		if evs, ok := snap.Window.After(cursor, limit); ok {
			return evs, len(evs) > 0 && evs[len(evs)-1].Seq < snap.Window.Head(), nil
		}
	}
	evs, err = chatlog.EventsAfter(ctx, ts.db, id, cursor, limit)
	if err != nil {
		return nil, false, err
	}
	if !snap.Usable() {
		return evs, len(evs) == limit, nil
	}
	for len(evs) > 0 && evs[len(evs)-1].Seq > snap.Window.Head() {
		evs = evs[:len(evs)-1]
	}
	return evs, len(evs) > 0 && evs[len(evs)-1].Seq < snap.Window.Head(), nil
}
