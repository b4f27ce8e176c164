package delivery

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
)

// Lines computes the queue positions of the chats waiting in the queues
// this process has waiting customers' streams for: one Line per queue,
// computed once per change of the queue, whatever the number of streams.
type Lines struct {
	db     *ent.Client
	hub    *events.Hub
	clk    clock.Clock
	shared *shared[Line]
}

// NewLines returns the lines of queues read from db, each woken by the
// hub's QueueKey; estimates are made as of clk's now.
func NewLines(db *ent.Client, hub *events.Hub, clk clock.Clock) *Lines {
	ls := &Lines{db: db, hub: hub, clk: clk}
	ls.shared = newShared(ls.open)
	return ls
}

// Join returns the line of queue, starting it if nobody in this process
// follows the queue yet. Match every Join with a Leave.
func (ls *Lines) Join(queue uuid.UUID) *Line { return ls.shared.join(queue) }

// Following is how many queues have a line.
func (ls *Lines) Following() int { return ls.shared.size() }

// Line is one queue's waiting chats' positions, computed at every
// wake-up of the queue's key (chatlog.QueuePositions) and published as
// Positions.
type Line struct {
	lines *Lines
	queue uuid.UUID
	cur   atomic.Pointer[Positions]
}

func (ls *Lines) open(ctx context.Context, queue uuid.UUID) *Line {
	l := &Line{lines: ls, queue: queue}
	l.cur.Store(&Positions{changed: make(chan struct{})})
	go follow(ctx, ls.hub, events.QueueKey(queue.String()), l.pass)
	return l
}

// Queue is the queue the line is of.
func (l *Line) Queue() uuid.UUID { return l.queue }

// Leave ends one Join.
func (l *Line) Leave() { l.lines.shared.leave(l.queue) }

// Positions returns the latest positions, once the line has computed
// them the first time (or ctx ends).
func (l *Line) Positions(ctx context.Context) (*Positions, error) {
	for {
		cur := l.cur.Load()
		if cur.computed {
			return cur, nil
		}
		select {
		case <-cur.changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("delivery: wait for the positions of queue %s: %w", l.queue, ctx.Err())
		}
	}
}

func (l *Line) pass(ctx context.Context) bool {
	prev := l.cur.Load()
	next := &Positions{computed: true, changed: make(chan struct{})}
	next.of, next.Err = chatlog.QueuePositions(ctx, l.lines.db, l.queue, l.lines.clk.Now())
	l.cur.Store(next)
	close(prev.changed)
	return false
}

// Positions is one computation of a queue's positions. Share it, never
// change it.
type Positions struct {
	// Err is why the computation failed.
	Err error

	of       map[uuid.UUID]*parleyv1.QueuePosition
	computed bool
	changed  chan struct{}
}

// Of returns the position of conversation id, and false if it did not
// wait in the queue when the positions were computed (or they have not
// been yet). The position is shared: read it, never change it.
func (p *Positions) Of(id uuid.UUID) (*parleyv1.QueuePosition, bool) {
	pos, ok := p.of[id]
	return pos, ok
}

// Changed is closed when the line publishes the next positions.
func (p *Positions) Changed() <-chan struct{} { return p.changed }
