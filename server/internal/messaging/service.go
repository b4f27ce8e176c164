// Package messaging serves MessagingService: sending messages (idempotent
// per client_message_id) and reading a conversation's log, replayed from a
// cursor and then followed live.
package messaging

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/clock"
	convpkg "github.com/parleyhq/parley/server/internal/conversation"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// replayBatch is how many events a subscription reads from the store at once.
const replayBatch = 200

// Service implements parleyv1connect.MessagingServiceHandler.
type Service struct {
	db        *ent.Client
	hub       *events.Hub
	clk       clock.Clock
	heartbeat time.Duration
}

var _ parleyv1connect.MessagingServiceHandler = (*Service)(nil)

// NewService returns the MessagingService handler. Subscribe streams send
// a heartbeat after each heartbeat interval without an event.
func NewService(db *ent.Client, hub *events.Hub, clk clock.Clock, heartbeat time.Duration) *Service {
	return &Service{db: db, hub: hub, clk: clk, heartbeat: heartbeat}
}

// SendMessage appends a message. A retry with the same client_message_id
// and text returns the original event; with other text it is rejected.
func (s *Service) SendMessage(ctx context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	p := auth.FromContext(ctx)
	id := convpkg.ParseID(req.GetConversationId())
	conv, err := convpkg.Authorize(ctx, s.db, p, id, convpkg.Post)
	if err != nil {
		return nil, err
	}
	sender, err := convpkg.SenderOf(ctx, s.db, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if prior, err := s.priorSend(ctx, id, sender, req); prior != nil || err != nil {
		return prior, err
	}
	var channel *event.Channel
	if p.Role == auth.RoleGuest {
		c := event.Channel(conv.Edges.Interaction.Channel)
		channel = &c
	}
	var appended *ent.Event
	err = store.InTx(ctx, s.db, func(tx *ent.Tx) error {
		// The state may have changed since Authorize; check it under the lock.
		cur, err := tx.Conversation.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("reload conversation: %w", err)
		}
		if err := convpkg.CheckPost(p, cur); err != nil {
			return err
		}
		evs, err := convpkg.Append(ctx, tx, id, s.clk.Now(), convpkg.Entry{
			Sender: sender, Channel: channel, ClientMessageID: req.GetClientMessageId(),
			Payload: &parleyv1.MessagePosted{Text: req.GetText(), ClientMessageId: req.GetClientMessageId()},
		})
		if err != nil {
			return err
		}
		appended = evs[0]
		return nil
	})
	if ent.IsConstraintError(err) {
		// A concurrent retry won the unique index: answer as a retry.
		if prior, perr := s.priorSend(ctx, id, sender, req); prior != nil || perr != nil {
			return prior, perr
		}
	}
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.ConversationKey(id.String()))
	out, err := convpkg.EventToProto(appended)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &parleyv1.SendMessageResponse{Event: out}, nil
}

// priorSend returns the event an earlier send with the same key stored, or
// nil if there is none.
func (s *Service) priorSend(ctx context.Context, id uuid.UUID, sender convpkg.Sender, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	prior, err := s.db.Event.Query().Where(
		event.ConversationID(id), event.SenderID(sender.ID), event.ClientMessageID(req.GetClientMessageId()),
	).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("look up client_message_id: %w", err))
	}
	out, err := convpkg.EventToProto(prior)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if !proto.Equal(out.GetMessagePosted(), &parleyv1.MessagePosted{Text: req.GetText(), ClientMessageId: req.GetClientMessageId()}) {
		return nil, apierr.New(connect.CodeAlreadyExists, "CLIENT_MESSAGE_ID_REUSED",
			fmt.Sprintf("client_message_id %q was already used for a different message; use a new id", req.GetClientMessageId()))
	}
	return &parleyv1.SendMessageResponse{Event: out}, nil
}

// Subscribe replays events after after_seq, then follows the log live. It
// ends after sending the conversation's closing event.
func (s *Service) Subscribe(ctx context.Context, req *parleyv1.SubscribeRequest, stream parleyv1connect.MessagingServiceSubscribeServerStream) error {
	id := convpkg.ParseID(req.GetConversationId())
	conv, err := convpkg.Authorize(ctx, s.db, auth.FromContext(ctx), id, convpkg.Read)
	if err != nil {
		return err
	}
	cursor := req.GetAfterSeq()
	if cursor > conv.LastSeq {
		return apierr.New(connect.CodeOutOfRange, "CURSOR_BEYOND_LOG",
			fmt.Sprintf("after_seq %d is beyond the log's last seq %d; resume from a seq you received", cursor, conv.LastSeq))
	}
	// Open the stream at once: a client resuming at the head of the log
	// must not wait for the next event to learn that it is subscribed.
	if err := stream.SendHeaders(); err != nil {
		return err
	}
	key := events.ConversationKey(id.String())
	idle := time.NewTicker(s.heartbeat)
	defer idle.Stop()
	for {
		// Take the wake-up before reading, so a commit after the read wakes us.
		wake := s.hub.Wait(key)
		evs, err := convpkg.EventsAfter(ctx, s.db, id, cursor, replayBatch)
		if err != nil {
			return apierr.Internal(err)
		}
		for _, ev := range evs {
			out, err := convpkg.EventToProto(ev)
			if err != nil {
				return apierr.Internal(err)
			}
			if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Event{Event: out}}); err != nil {
				return err
			}
			cursor = ev.Seq
			if ev.Kind == "conversation_closed" {
				return nil
			}
		}
		if len(evs) > 0 {
			idle.Reset(s.heartbeat)
		}
		if len(evs) == replayBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return apierr.StreamEnded(ctx, fmt.Sprintf("subscribe again with after_seq %d", cursor))
		case <-wake:
		case <-idle.C:
			beat := &parleyv1.Heartbeat{SendTime: timestamppb.New(s.clk.Now())}
			if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Heartbeat{Heartbeat: beat}}); err != nil {
				return err
			}
		}
	}
}

// ListEvents pages through the log in seq order.
func (s *Service) ListEvents(ctx context.Context, req *parleyv1.ListEventsRequest) (*parleyv1.ListEventsResponse, error) {
	id := convpkg.ParseID(req.GetConversationId())
	if _, err := convpkg.Authorize(ctx, s.db, auth.FromContext(ctx), id, convpkg.Read); err != nil {
		return nil, err
	}
	after, err := paging.Decode(id.String(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var cursor int64
	if after != "" {
		if cursor, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, apierr.New(connect.CodeInvalidArgument, "INVALID_PAGE_TOKEN", "page_token is not one this list returned")
		}
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := convpkg.EventsAfter(ctx, s.db, id, cursor, size+1)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	page, next := paging.Trim(rows, size, id.String(), func(ev *ent.Event) string { return strconv.FormatInt(ev.Seq, 10) })
	resp := &parleyv1.ListEventsResponse{NextPageToken: next}
	for _, ev := range page {
		out, err := convpkg.EventToProto(ev)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Events = append(resp.Events, out)
	}
	return resp, nil
}
