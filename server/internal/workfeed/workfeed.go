// Package workfeed serves RoutingService.FollowWork: an agent's one stream
// of its offers, its assignments, and the log, typing and read cursors of
// every conversation it holds, each item naming its conversation.
//
// It puts together what the two streams it replaces already do: the
// agent's work as WatchWork tells it (routing.Service.WorkChanges, re-read
// at every wake-up of the agent's key) and each held conversation as
// Subscribe follows it (messaging.Service.FollowHeld, on the shared
// delivery tails). One follower goroutine per held conversation writes to
// the stream's one writer, which sends every item in order.
package workfeed

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent/conversation"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/messaging"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// replayBatch is how many events a release reads from the store at once.
const replayBatch = 200

// resume tells a client whose stream ended what to do.
const resume = "open FollowWork again with the last seq you received of each conversation"

// Feed serves FollowWork.
type Feed struct {
	db         *store.DB
	hub        *events.Hub
	clk        clock.Clock
	work       *routing.Service
	dispatcher *routing.Dispatcher
	logs       *messaging.Service
	heartbeat  time.Duration
}

// New returns the FollowWork handler: the agent's work read by work, its
// conversations followed by logs, its stream leased from dispatcher, and
// a heartbeat after each heartbeat interval without other items.
func New(db *store.DB, hub *events.Hub, clk clock.Clock, work *routing.Service, dispatcher *routing.Dispatcher, logs *messaging.Service, heartbeat time.Duration) *Feed {
	return &Feed{db: db, hub: hub, clk: clk, work: work, dispatcher: dispatcher, logs: logs, heartbeat: heartbeat}
}

// FollowWork streams the calling agent's work and held conversations (see
// the RPC's documentation). Like WatchWork, it keeps the agent's work
// stream lease while it is open; like Subscribe, it ends when the
// credential no longer holds, and never sends anything of a conversation
// once it left the agent.
func (f *Feed) FollowWork(ctx context.Context, req *parleyv1.FollowWorkRequest, stream parleyv1connect.RoutingServiceFollowWorkServerStream) error {
	p := auth.FromContext(ctx)
	cursors := make(map[uuid.UUID]int64, len(req.GetCursors()))
	for _, c := range req.GetCursors() {
		id := chatlog.ParseID(c.GetConversationId())
		if _, dup := cursors[id]; dup {
			// The validator refuses these already; a handler called
			// without it must not resume from either.
			return apierr.New(connect.CodeInvalidArgument, "DUPLICATE_CURSOR",
				fmt.Sprintf("conversation %s has more than one cursor; send one per conversation", id))
		}
		cursors[id] = c.GetAfterSeq()
	}
	if err := f.checkCursors(ctx, p.AgentID, cursors); err != nil {
		return err
	}
	// Its timers are armed before the stream opens, so a client that has
	// the headers knows the stream is waiting on them (tests advance a
	// fake clock then).
	idle := f.clk.NewTicker(f.heartbeat)
	defer idle.Stop()
	guard := auth.NewGuard(f.db, f.hub, f.clk, p)
	defer guard.Stop()
	if err := stream.SendHeaders(); err != nil {
		return err
	}
	// While this stream is open, this replica keeps the agent's lease, as
	// for WatchWork: the agent is online.
	if err := f.dispatcher.StreamOpened(ctx, p.AgentID); err != nil {
		if ctx.Err() != nil {
			return apierr.StreamEnded(ctx, resume)
		}
		return apierr.Internal(err)
	}
	defer f.dispatcher.StreamClosed(p.AgentID)
	requested := make([]uuid.UUID, 0, len(cursors))
	for id := range cursors {
		requested = append(requested, id)
	}
	fs := &feedStream{
		f: f, p: p, stream: stream, guard: guard, idle: idle,
		told: routing.NewWork(), cursors: cursors, requested: requested,
		followers: map[uuid.UUID]*follower{}, notes: make(chan note),
		unannounced: map[uuid.UUID]bool{},
	}
	defer fs.stopAll()
	err := fs.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Whatever failed, it failed because the stream is ending.
		return apierr.StreamEnded(ctx, resume)
	}
	return err
}

// checkCursors refuses cursors beyond the log of a conversation the agent
// holds, as Subscribe refuses an after_seq beyond the log: the client is
// confused, and resuming from the log's end would hide it.
func (f *Feed) checkCursors(ctx context.Context, agentID uuid.UUID, cursors map[uuid.UUID]int64) error {
	if len(cursors) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, 0, len(cursors))
	for id := range cursors {
		ids = append(ids, id)
	}
	held, err := f.db.Conversation.Query().
		Where(conversation.IDIn(ids...), conversation.AgentID(agentID), conversation.StateEQ(conversation.StateAssigned)).
		Select(conversation.FieldID, conversation.FieldLastSeq).
		All(ctx)
	if err != nil {
		return apierr.Internal(fmt.Errorf("load the conversations of the cursors: %w", err))
	}
	for _, c := range held {
		if cursors[c.ID] > c.LastSeq {
			return cursorBeyondLog(c.ID, cursors[c.ID], c.LastSeq)
		}
	}
	return nil
}

// cursorBeyondLog refuses a cursor beyond a conversation's log.
func cursorBeyondLog(id uuid.UUID, cursor, last int64) error {
	return apierr.New(connect.CodeOutOfRange, "CURSOR_BEYOND_LOG",
		fmt.Sprintf("the cursor of conversation %s, after_seq %d, is beyond its log's last seq %d; resume from a seq you received", id, cursor, last))
}

// feedStream is one FollowWork stream. Only its run goroutine sends on
// the stream and touches its fields; followers hand it their items as
// notes.
type feedStream struct {
	f      *Feed
	p      *auth.Principal
	stream parleyv1connect.RoutingServiceFollowWorkServerStream
	guard  *auth.Guard
	idle   clock.Ticker
	told   *routing.Work
	// cursors is where each conversation resumes: the request's cursor
	// until it is first followed, then the last seq the stream sent, kept
	// after a release so that a conversation coming back to the agent is
	// not sent twice.
	cursors map[uuid.UUID]int64
	// requested are the conversations the request had cursors for.
	requested []uuid.UUID
	followers map[uuid.UUID]*follower
	notes     chan note
	// unannounced are the followers started by the opening read of the
	// agent's work that have not announced their conversation yet; synced
	// is sent once there are none left (and then synced is set).
	unannounced map[uuid.UUID]bool
	synced      bool
}

// follower is the goroutine following one held conversation.
type follower struct {
	id uuid.UUID
	// conv is the conversation as the work stream told it assigned, sent
	// when the follower starts following.
	conv *parleyv1.Conversation
	// announced: assigned was sent.
	announced bool
	// closed: the conversation's closing event was sent.
	closed bool
	stop   context.CancelFunc
	done   chan struct{}
}

// note is what a follower hands the writer: its headers (it follows the
// conversation now), an item, or its end.
type note struct {
	from    *follower
	headers bool
	item    *parleyv1.SubscribeResponse
	ended   bool
	err     error
}

// sink is a follower's messaging.Sink: it hands the writer what the
// follow sends, except heartbeats (the stream beats when it is idle as a
// whole) and queue positions (which agents are not sent).
type sink struct {
	ctx   context.Context
	from  *follower
	notes chan<- note
}

func (s sink) SendHeaders() error { return s.put(note{from: s.from, headers: true}) }

func (s sink) Send(item *parleyv1.SubscribeResponse) error {
	switch item.GetItem().(type) {
	case *parleyv1.SubscribeResponse_Heartbeat, *parleyv1.SubscribeResponse_QueuePosition:
		return nil
	}
	return s.put(note{from: s.from, item: item})
}

func (s sink) put(n note) error {
	select {
	case s.notes <- n:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// run sends the agent's work changes at every wake-up of its key, and the
// followers' items in between, until the stream fails or ends. After the
// first read of the agent's work it releases the requested conversations
// the agent no longer holds; synced follows once the held ones are
// announced.
func (fs *feedStream) run(ctx context.Context) error {
	key := events.AgentKey(fs.p.AgentID.String())
	for opening := true; ; opening = false {
		wake := fs.f.hub.Wait(key)
		if err := fs.guard.Check(ctx); err != nil {
			return err
		}
		items, err := fs.f.work.WorkChanges(ctx, fs.p.AgentID, fs.told)
		if err != nil {
			return err
		}
		for _, item := range items {
			if err := fs.apply(ctx, item); err != nil {
				return err
			}
		}
		if opening {
			if err := fs.releaseGone(ctx); err != nil {
				return err
			}
			if err := fs.syncIfAnnounced(ctx); err != nil {
				return err
			}
		}
		if err := fs.await(ctx, wake); err != nil {
			return err
		}
	}
}

// releaseGone releases each requested conversation the agent does not
// hold (it left them while the client was away): the events after its
// cursor that the agent may still read, then released; a conversation the
// agent may not read is released alone. Its cursor is left at the end of
// what was sent, so that if it comes back it resumes from there.
func (fs *feedStream) releaseGone(ctx context.Context) error {
	for _, id := range fs.requested {
		if fs.followers[id] != nil {
			continue
		}
		end, readable, err := fs.sendRelease(ctx, id, false)
		switch {
		case err != nil:
			return err
		case !readable:
			delete(fs.cursors, id)
		case fs.cursors[id] > end:
			fs.cursors[id] = end // a confused cursor: there was nothing to send
		}
	}
	return nil
}

// syncIfAnnounced sends synced once every follower of the opening read
// has announced its conversation (or ended without).
func (fs *feedStream) syncIfAnnounced(ctx context.Context) error {
	if fs.synced || len(fs.unannounced) > 0 {
		return nil
	}
	fs.synced = true
	return fs.send(ctx, &parleyv1.FollowWorkResponse{Item: &parleyv1.FollowWorkResponse_Synced{Synced: &parleyv1.WorkSynced{}}})
}

// await passes on the followers' items until the agent's work may have
// changed: its key woke, the credential may have changed, a follower
// ended, or the stream beat (a safety poll, as WatchWork's).
func (fs *feedStream) await(ctx context.Context, wake <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			return nil
		case <-fs.guard.Changed():
			return nil
		case <-fs.guard.Expired():
			return nil
		case n := <-fs.notes:
			ended, err := fs.take(ctx, n)
			if err != nil || ended {
				return err
			}
		case <-fs.idle.C():
			if err := fs.guard.Check(ctx); err != nil {
				return err
			}
			beat := &parleyv1.Heartbeat{SendTime: timestamppb.New(fs.f.clk.Now())}
			return fs.stream.Send(&parleyv1.FollowWorkResponse{Item: &parleyv1.FollowWorkResponse_Heartbeat{Heartbeat: beat}})
		}
	}
}

// send sends one item, once the credential still holds.
func (fs *feedStream) send(ctx context.Context, item *parleyv1.FollowWorkResponse) error {
	if err := fs.guard.Still(ctx); err != nil {
		return err
	}
	// Reset before sending, so a client that received an item knows when
	// the next heartbeat is due.
	fs.idle.Reset(fs.f.heartbeat)
	return fs.stream.Send(item)
}

// apply acts on one change of the agent's work: offers are sent, a newly
// held conversation gets a follower (which announces it), a released one
// is released.
func (fs *feedStream) apply(ctx context.Context, item *parleyv1.WatchWorkResponse) error {
	switch it := item.GetItem().(type) {
	case *parleyv1.WatchWorkResponse_Offer:
		return fs.send(ctx, &parleyv1.FollowWorkResponse{
			ConversationId: it.Offer.GetConversation().GetId(),
			Item:           &parleyv1.FollowWorkResponse_Offer{Offer: it.Offer},
		})
	case *parleyv1.WatchWorkResponse_OfferClosed:
		return fs.send(ctx, &parleyv1.FollowWorkResponse{
			ConversationId: it.OfferClosed.GetConversationId(),
			Item:           &parleyv1.FollowWorkResponse_OfferClosed{OfferClosed: it.OfferClosed},
		})
	case *parleyv1.WatchWorkResponse_Assigned:
		id := chatlog.ParseID(it.Assigned.GetId())
		if fs.followers[id] == nil {
			fs.start(ctx, id, it.Assigned)
		}
		return nil
	case *parleyv1.WatchWorkResponse_Released:
		id := chatlog.ParseID(it.Released.GetId())
		if fl := fs.followers[id]; fl != nil {
			return fs.release(ctx, fl)
		}
		return nil
	}
	return apierr.Internal(fmt.Errorf("workfeed: unexpected work item %T", item.GetItem()))
}

// start follows conversation id (told as conv) from its cursor.
func (fs *feedStream) start(ctx context.Context, id uuid.UUID, conv *parleyv1.Conversation) {
	fctx, stop := context.WithCancel(ctx)
	fl := &follower{id: id, conv: conv, stop: stop, done: make(chan struct{})}
	fs.followers[id] = fl
	if !fs.synced {
		fs.unannounced[id] = true
	}
	cursor := fs.cursors[id]
	out := sink{ctx: fctx, from: fl, notes: fs.notes}
	go func() {
		defer close(fl.done)
		err := fs.f.logs.FollowHeld(fctx, id, &cursor, out)
		_ = out.put(note{from: fl, ended: true, err: err}) // fails only once the writer stopped it
	}()
}

// take sends what follower n.from handed over, and reports whether it
// ended (then the agent's work is read again: the conversation left the
// agent, or is to be followed afresh).
func (fs *feedStream) take(ctx context.Context, n note) (ended bool, err error) {
	fl := n.from
	if fs.followers[fl.id] != fl {
		return false, nil // from a follower released meanwhile
	}
	id := fl.id.String()
	switch {
	case n.headers:
		fl.announced = true
		delete(fs.unannounced, fl.id)
		if err := fs.send(ctx, &parleyv1.FollowWorkResponse{ConversationId: id, Item: &parleyv1.FollowWorkResponse_Assigned{Assigned: fl.conv}}); err != nil {
			return false, err
		}
		return false, fs.syncIfAnnounced(ctx)
	case n.ended:
		return true, fs.ended(ctx, fl, n.err)
	}
	out := &parleyv1.FollowWorkResponse{ConversationId: id}
	switch it := n.item.GetItem().(type) {
	case *parleyv1.SubscribeResponse_Event:
		if it.Event.GetSeq() <= fs.cursors[fl.id] {
			return false, nil // never twice
		}
		out.Item = &parleyv1.FollowWorkResponse_Event{Event: it.Event}
		if err := fs.send(ctx, out); err != nil {
			return false, err
		}
		fs.cursors[fl.id] = it.Event.GetSeq()
		fl.closed = it.Event.GetConversationClosed() != nil
		return false, nil
	case *parleyv1.SubscribeResponse_Typing:
		out.Item = &parleyv1.FollowWorkResponse_Typing{Typing: it.Typing}
	case *parleyv1.SubscribeResponse_ReadCursor:
		out.Item = &parleyv1.FollowWorkResponse_ReadCursor{ReadCursor: it.ReadCursor}
	default:
		return false, apierr.Internal(fmt.Errorf("workfeed: unexpected item %T of conversation %s", n.item.GetItem(), id))
	}
	return false, fs.send(ctx, out)
}

// ended handles the end of a follower: after the closing event, or once
// the agent may no longer follow the conversation (it left them), it is
// released; any other end ends the stream.
func (fs *feedStream) ended(ctx context.Context, fl *follower, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil || connect.CodeOf(err) == connect.CodePermissionDenied:
		// PermissionDenied is NO_LONGER_HOLDING, or the refusal of an
		// agent who never held the chat through an offer.
		return fs.release(ctx, fl)
	case apierr.Reason(err) == "CURSOR_BEYOND_LOG":
		// A conversation held since the stream opened, whose cursor the
		// request gave: name it.
		c, _ := fs.f.db.Conversation.Get(ctx, fl.id)
		if c != nil {
			return cursorBeyondLog(fl.id, fs.cursors[fl.id], c.LastSeq)
		}
	}
	return err
}

// release tells the client that a conversation left the agent: its
// follower stops; the events of it that the agent may still read and was
// not sent yet follow (up to its closing event, or to when the agent left
// it), then released, after which nothing more of it is sent. A
// conversation never announced is dropped silently. The agent's work
// forgets it, so that it is announced again if it comes back.
func (fs *feedStream) release(ctx context.Context, fl *follower) error {
	fl.stop()
	<-fl.done
	delete(fs.followers, fl.id)
	fs.told.Forget(fl.id)
	if !fl.announced {
		delete(fs.unannounced, fl.id)
		return fs.syncIfAnnounced(ctx)
	}
	_, _, err := fs.sendRelease(ctx, fl.id, fl.closed)
	return err
}

// sendRelease sends the events of conversation id after its cursor that
// the agent may still read (none if closed: its closing event was sent),
// then released. It returns the last seq the agent may read, and whether
// it may read the conversation at all (if not, released names only its
// id).
func (fs *feedStream) sendRelease(ctx context.Context, id uuid.UUID, closed bool) (end int64, readable bool, err error) {
	released := &parleyv1.Conversation{Id: id.String()}
	conv, err := chatlog.Authorize(ctx, fs.f.db.Client, fs.p, id, chatlog.Read)
	switch {
	case err == nil:
		readable, released = true, chatlog.ToProto(conv)
		if end, _, err = chatlog.HistoryEnd(ctx, fs.f.db.Client, fs.p, conv); err != nil {
			return 0, false, err
		}
		if !closed {
			if err := fs.sendRest(ctx, id, end); err != nil {
				return 0, false, err
			}
		}
	case connect.CodeOf(err) != connect.CodePermissionDenied && connect.CodeOf(err) != connect.CodeNotFound:
		return 0, false, err
	}
	return end, readable, fs.send(ctx, &parleyv1.FollowWorkResponse{ConversationId: id.String(), Item: &parleyv1.FollowWorkResponse_Released{Released: released}})
}

// sendRest sends the events of conversation id after its cursor up to
// seq end, stopping after a closing event.
func (fs *feedStream) sendRest(ctx context.Context, id uuid.UUID, end int64) error {
	viewer := fs.p.AgentID.String()
	for fs.cursors[id] < end {
		evs, err := chatlog.EventsAfter(ctx, fs.f.db.Client, id, fs.cursors[id], replayBatch)
		if err != nil {
			return apierr.Internal(err)
		}
		if len(evs) == 0 {
			return nil
		}
		for _, ev := range evs {
			if ev.Seq > end {
				return nil
			}
			out, err := chatlog.EventToProto(ev, viewer)
			if err != nil {
				return apierr.Internal(err)
			}
			if err := fs.send(ctx, &parleyv1.FollowWorkResponse{ConversationId: id.String(), Item: &parleyv1.FollowWorkResponse_Event{Event: out}}); err != nil {
				return err
			}
			fs.cursors[id] = ev.Seq
			if ev.Kind == "conversation_closed" {
				return nil
			}
		}
	}
	return nil
}

// stopAll stops every follower and waits until they have.
func (fs *feedStream) stopAll() {
	for _, fl := range fs.followers {
		fl.stop()
	}
	for _, fl := range fs.followers {
		<-fl.done
	}
}
