package messaging

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/readcursor"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/delivery"
	"github.com/parleyhq/parley/server/internal/events"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// replayBatch is how many events a subscription reads from the store at once.
const replayBatch = 200

// Subscribe replays events after after_seq, then follows the log live,
// passing on other participants' typing and cursor signals. It ends after
// sending the conversation's closing event.
func (s *Service) Subscribe(ctx context.Context, req *parleyv1.SubscribeRequest, stream parleyv1connect.MessagingServiceSubscribeServerStream) error {
	cursor := req.GetAfterSeq()
	err := s.follow(ctx, chatlog.ParseID(req.GetConversationId()), false, stream, &cursor)
	if err != nil && ctx.Err() != nil {
		// Whatever failed, it failed because the stream is ending.
		return apierr.StreamEnded(ctx, fmt.Sprintf("subscribe again with after_seq %d", cursor))
	}
	return err
}

// Sink is where a follow sends a conversation's items, in order: a
// Subscribe stream, or the conversation's share of an agent's multiplexed
// stream (see FollowHeld).
type Sink interface {
	// SendHeaders is called once, before any item, when the conversation
	// is followed: from then on no signal of it is missed.
	SendHeaders() error
	// Send passes on one item.
	Send(*parleyv1.SubscribeResponse) error
}

// FollowHeld follows conversation id, which the calling agent holds, from
// *cursor into sink, as Subscribe does, keeping *cursor at the last seq
// sent: the other participants' read cursors, the log after *cursor, then
// the log, typing and cursors live, with heartbeats when it is idle. It
// ends with nil after the closing event; with PermissionDenied (reason
// NO_LONGER_HOLDING) once the conversation left the agent, or at once,
// before SendHeaders, if the agent does not hold it; with the guard's
// error when the credential no longer holds; with ctx's error when ctx
// ends.
func (s *Service) FollowHeld(ctx context.Context, id uuid.UUID, cursor *int64, sink Sink) error {
	return s.follow(ctx, id, true, sink, cursor)
}

// follow runs a subscription of conversation id, keeping *cursor at the
// last seq sent. If held, the caller must be the agent holding it.
func (s *Service) follow(ctx context.Context, id uuid.UUID, held bool, stream Sink, cursor *int64) error {
	p := auth.FromContext(ctx)
	conv, me, err := s.opening(ctx, p, id, *cursor)
	if err != nil {
		return err
	}
	// An agent following a conversation they hold stops receiving it once
	// it leaves them (transferred, re-queued).
	holder := p.Role == auth.RoleAgent && conv.AgentID != nil && *conv.AgentID == p.AgentID
	if held && !holder {
		return noLongerHolding(id)
	}
	key := events.ConversationKey(id.String())
	// Listen for signals before reading cursors, so no move is missed.
	signals, unsubscribe := s.signals.Subscribe(key)
	defer unsubscribe()
	// The log comes from the conversation's shared tail, and the queue
	// position from the queue's line, not from reads of this stream's own.
	tail := s.tails.Join(id)
	defer tail.Leave()
	var line *delivery.Line
	defer func() {
		if line != nil {
			line.Leave()
		}
	}()
	// The stream's timers are armed before it opens, so a client that has
	// the headers knows the stream is waiting on them (tests advance a
	// fake clock then).
	idle := s.clk.NewTicker(s.opts.Heartbeat)
	defer idle.Stop()
	guard := auth.NewGuard(s.db, s.hub, s.clk, p)
	defer guard.Stop()
	// Open the stream at once: a client resuming at the head of the log
	// must not wait for the next event to learn that it is subscribed.
	if err := stream.SendHeaders(); err != nil {
		return err
	}
	if err := s.sendCursors(ctx, id, me.ID, stream); err != nil {
		return err
	}
	// The customer side sees its place in the queue while it waits.
	customerSide := p.Role == auth.RoleGuest || p.Role == auth.RoleCustomer
	var lastPosition *parleyv1.QueuePosition
	allowed := s.allowed(guard, p, id, holder)
	// reread is set when the stream found its access lost while it waited
	// (allowed failed), perhaps on another replica, which the tail may not
	// show yet: the next round reads the conversation and the log from the
	// store, as a stream without a tail would.
	reread := false
	for {
		// Take the snapshot before reading: its Changed is closed by the
		// tail's next pass, which follows any commit after this read.
		snap := tail.Snapshot()
		// Access is checked again before anything more is sent: the
		// credential may have been revoked or expired, and an agent may
		// have lost the conversation to a colleague. The credential is
		// checked after the tail read the events it hands out, and the
		// conversation as the tail read it after them.
		use := snap
		if reread {
			use = nil
		}
		if conv, err = s.recheck(ctx, guard, p, id, holder, use); err != nil {
			return err
		}
		var queueWake <-chan struct{}
		if customerSide {
			if queueWake, err = s.sendPosition(ctx, conv, &line, &lastPosition, stream); err != nil {
				return err
			}
		}
		evs, more, err := s.tails.Next(ctx, use, id, *cursor, replayBatch)
		if err != nil {
			return apierr.Internal(err)
		}
		if (use == nil || !use.Usable()) && conv != nil {
			// Access was judged on the conversation read before these
			// events: pass on only what was committed by then; the rest
			// waits for the next round's check.
			for len(evs) > 0 && evs[len(evs)-1].Seq > conv.LastSeq {
				evs, more = evs[:len(evs)-1], true
			}
		}
		if len(evs) > 0 {
			// Reset before sending, so a client that received an item
			// knows when the next heartbeat is due.
			idle.Reset(s.opts.Heartbeat)
		}
		closed, interrupted, err := sendEvents(ctx, guard, evs, me.ID, cursor, stream)
		switch {
		case err != nil:
			return err
		case closed:
			return nil
		case interrupted:
			continue // revoked meanwhile: re-check before sending more
		}
		if more {
			continue
		}
		if reread, err = s.await(ctx, guard, allowed, snap.Changed(), queueWake, signals, me.ID, idle, stream); err != nil {
			return err
		}
	}
}

// allowed is the check a stream makes before passing on a signal or a
// heartbeat, that the caller may still have it: the credential for
// everyone, and for an agent the conversation too, which they may lose
// without a wake-up of this stream (removed from its queue; handed over on
// another replica).
func (s *Service) allowed(guard *auth.Guard, p *auth.Principal, id uuid.UUID, holder bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if p.Role != auth.RoleAgent {
			return guard.Check(ctx)
		}
		_, err := s.recheck(ctx, guard, p, id, holder, nil)
		return err
	}
}

// opening authorizes a new subscription from cursor and tells who the
// caller is in the conversation.
func (s *Service) opening(ctx context.Context, p *auth.Principal, id uuid.UUID, cursor int64) (*ent.Conversation, chatlog.Sender, error) {
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Follow)
	if err != nil {
		return nil, chatlog.Sender{}, err
	}
	if cursor > conv.LastSeq {
		return nil, chatlog.Sender{}, apierr.New(connect.CodeOutOfRange, "CURSOR_BEYOND_LOG",
			fmt.Sprintf("after_seq %d is beyond the log's last seq %d; resume from a seq you received", cursor, conv.LastSeq))
	}
	me, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, chatlog.Sender{}, apierr.Internal(err)
	}
	return conv, me, nil
}

// sendEvents sends evs to viewer in order, moving cursor past each one
// sent. It stops early, interrupted, if the guard sees the credential
// revoked or expired (the caller re-checks before sending more), and
// reports closed after the conversation's closing event.
func sendEvents(ctx context.Context, guard *auth.Guard, evs []*ent.Event, viewer string, cursor *int64,
	stream Sink) (closed, interrupted bool, err error) {
	for _, ev := range evs {
		if guard.Still(ctx) != nil {
			return false, true, nil
		}
		out, err := chatlog.EventToProto(ev, viewer)
		if err != nil {
			return false, false, apierr.Internal(err)
		}
		if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Event{Event: out}}); err != nil {
			return false, false, err
		}
		*cursor = ev.Seq
		if ev.Kind == "conversation_closed" {
			return true, false, nil
		}
	}
	return false, false, nil
}

// recheck ends the stream (with the error to return) if the caller may no
// longer read the conversation: its credential was revoked or expired, it
// lost access (an agent whose queue's chat went to a colleague), or, for
// the agent holding it, it left them. It judges by the conversation as the
// tail's snapshot has it if that is usable, and reads it again otherwise
// (or if snap is nil). A guest whose token was revoked because the conversation
// closed still receives the rest of the log, up to the closing event it
// was there for.
func (s *Service) recheck(ctx context.Context, guard *auth.Guard, p *auth.Principal, id uuid.UUID, holder bool, snap *delivery.Snapshot) (*ent.Conversation, error) {
	credErr := guard.Check(ctx)
	if credErr != nil && (p.Role != auth.RoleGuest || apierr.Reason(credErr) != auth.ReasonTokenRevoked) {
		return nil, credErr
	}
	var conv *ent.Conversation
	var err error
	lost := func(c *ent.Conversation) bool {
		return holder && (c.AgentID == nil || *c.AgentID != p.AgentID) && c.State != conversation.StateClosed
	}
	if snap != nil && snap.Usable() {
		conv, err = snap.Conversation, chatlog.Recheck(ctx, s.db.Client, p, snap.Conversation)
		if err != nil || lost(conv) {
			// The shared tail's snapshot may predate this stream (an
			// agent who just accepted the chat): a refusal is confirmed
			// by a fresh read before it ends the stream.
			conv, err = chatlog.Reauthorize(ctx, s.db.Client, p, id)
		}
	} else {
		conv, err = chatlog.Reauthorize(ctx, s.db.Client, p, id)
	}
	if err != nil {
		return nil, err
	}
	if credErr != nil && conv.State != conversation.StateClosed {
		return nil, credErr
	}
	if lost(conv) {
		return nil, noLongerHolding(id)
	}
	return conv, nil
}

// noLongerHolding ends an agent's follow of conversation id, which left
// them.
func noLongerHolding(id uuid.UUID) error {
	return apierr.New(connect.CodePermissionDenied, "NO_LONGER_HOLDING",
		fmt.Sprintf("conversation %s is no longer yours; its history stays readable with ListEvents", id))
}

// sendPosition sends conv's queue position while it waits, if the position
// or estimate changed since *last, from the line of its queue, which it
// follows in *line (leaving the line of a queue it no longer waits in;
// joining one waits for its first computation, so that a waiting chat's
// stream tells its place before anything else). It returns the channel
// closed when the line has new positions, nil unless conv waits.
func (s *Service) sendPosition(ctx context.Context, conv *ent.Conversation, line **delivery.Line, last **parleyv1.QueuePosition, stream Sink) (<-chan struct{}, error) {
	waiting := conv.State == conversation.StateQueued && conv.QueueID != nil && conv.QueuedAt != nil
	if *line != nil && (!waiting || (*line).Queue() != *conv.QueueID) {
		(*line).Leave()
		*line = nil
	}
	if !waiting {
		return nil, nil
	}
	if *line == nil {
		*line = s.lines.Join(*conv.QueueID)
	}
	positions, err := (*line).Positions(ctx)
	if err != nil {
		return nil, err
	}
	if positions.Err != nil {
		return nil, apierr.Internal(positions.Err)
	}
	if pos, ok := positions.Of(conv.ID); ok && !proto.Equal(pos, *last) {
		*last = pos
		if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_QueuePosition{QueuePosition: pos}}); err != nil {
			return nil, err
		}
	}
	return positions.Changed(), nil
}

// await passes on other participants' signals and sends heartbeats until
// the log or the queue has news (wake, queueWake), the stream's credential
// changed, the stream's access no longer holds (reread: then the caller
// re-checks against the store), or the stream ends. Nothing is sent once
// the stream's access no longer holds.
func (s *Service) await(ctx context.Context, guard *auth.Guard, allowed func(context.Context) error, wake, queueWake <-chan struct{}, signals <-chan events.Signal, me string, idle clock.Ticker, stream Sink) (reread bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-wake:
			return false, nil
		case <-queueWake:
			return false, nil
		case <-guard.Changed():
			return false, nil
		case <-guard.Expired():
			return false, nil
		case sig := <-signals:
			if sig.From == me {
				continue
			}
			if allowed(ctx) != nil {
				return true, nil // the loop re-checks access and ends the stream
			}
			idle.Reset(s.opts.Heartbeat) // before sending, as in follow
			if err := stream.Send(signalItem(sig)); err != nil {
				return false, err
			}
		case <-idle.C():
			if allowed(ctx) != nil {
				return true, nil
			}
			beat := &parleyv1.Heartbeat{SendTime: timestamppb.New(s.clk.Now())}
			if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Heartbeat{Heartbeat: beat}}); err != nil {
				return false, err
			}
		}
	}
}

// signalItem wraps an ephemeral signal for the stream.
func signalItem(sig events.Signal) *parleyv1.SubscribeResponse {
	switch m := sig.Payload.(type) {
	case *parleyv1.Typing:
		return &parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Typing{Typing: m}}
	case *parleyv1.ReadCursor:
		return &parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_ReadCursor{ReadCursor: m}}
	}
	panic(fmt.Sprintf("messaging: unknown signal payload %T", sig.Payload))
}

// sendCursors sends the other participants' current read cursors.
func (s *Service) sendCursors(ctx context.Context, id uuid.UUID, me string, stream Sink) error {
	rows, err := s.db.ReadCursor.Query().
		Where(readcursor.ConversationID(id), readcursor.ParticipantIDNEQ(me)).
		Order(ent.Asc(readcursor.FieldID)).
		All(ctx)
	if err != nil {
		return apierr.Internal(fmt.Errorf("load read cursors: %w", err))
	}
	for _, rc := range rows {
		item := &parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_ReadCursor{ReadCursor: cursorToProto(rc)}}
		if err := stream.Send(item); err != nil {
			return err
		}
	}
	return nil
}
