package messaging

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/readcursor"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// typingActivityEvery bounds how often typing counts as customer activity
// in the store (typing signals themselves are not stored).
const typingActivityEvery = 30 * time.Second

// SetTyping passes a typing signal to the conversation's other subscribers.
func (s *Service) SetTyping(ctx context.Context, req *parleyv1.SetTypingRequest) (*parleyv1.SetTypingResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Post)
	if err != nil {
		return nil, err
	}
	me, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	now := s.clk.Now()
	if p.Role == auth.RoleGuest || p.Role == auth.RoleCustomer {
		err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
			return tx.Conversation.Update().
				Where(conversation.ID(id), conversation.Or(
					conversation.CustomerActiveAtIsNil(), conversation.CustomerActiveAtLT(now.Add(-typingActivityEvery)),
				)).
				SetCustomerActiveAt(now).
				Exec(ctx)
		})
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("record customer activity: %w", err))
		}
	}
	s.signals.Publish(events.ConversationKey(id.String()), events.Signal{From: me.ID, Payload: &parleyv1.Typing{
		Participant: me.Participant(),
		Typing:      req.GetTyping(),
		ExpireTime:  timestamppb.New(now.Add(s.opts.TypingTTL)),
	}})
	return &parleyv1.SetTypingResponse{}, nil
}

// MarkDelivered moves the caller's delivered cursor forward.
func (s *Service) MarkDelivered(ctx context.Context, req *parleyv1.MarkDeliveredRequest) (*parleyv1.MarkDeliveredResponse, error) {
	cursor, err := s.moveCursor(ctx, req, parleyv1connect.MessagingServiceMarkDeliveredProcedure,
		req.GetConversationId(), req.GetRequestId(), req.GetDeliveredSeq(), 0)
	if err != nil {
		return nil, err
	}
	return &parleyv1.MarkDeliveredResponse{ReadCursor: cursor}, nil
}

// MarkRead moves the caller's read and delivered cursors forward.
func (s *Service) MarkRead(ctx context.Context, req *parleyv1.MarkReadRequest) (*parleyv1.MarkReadResponse, error) {
	cursor, err := s.moveCursor(ctx, req, parleyv1connect.MessagingServiceMarkReadProcedure,
		req.GetConversationId(), req.GetRequestId(), req.GetReadSeq(), req.GetReadSeq())
	if err != nil {
		return nil, err
	}
	return &parleyv1.MarkReadResponse{ReadCursor: cursor}, nil
}

// moveCursor raises the caller's cursors to delivered and read (0 leaves
// read as it is), idempotently per request id, records customer activity,
// and tells the other participants.
func (s *Service) moveCursor(ctx context.Context, req proto.Message, procedure, convID, requestID string, delivered, read int64) (*parleyv1.ReadCursor, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(convID)
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Participate)
	if err != nil {
		return nil, err
	}
	if delivered > conv.LastSeq {
		return nil, apierr.New(connect.CodeOutOfRange, "CURSOR_BEYOND_LOG",
			fmt.Sprintf("seq %d is beyond the log's last seq %d; acknowledge only seqs you received", delivered, conv.LastSeq))
	}
	me, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	now := s.clk.Now()
	key := idempotency.Key{Caller: p.Caller(), Procedure: procedure, ID: requestID, Now: now}
	cursor, replayed, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (*parleyv1.ReadCursor, error) {
		rc, err := raiseCursor(ctx, tx, id, me, delivered, read, now)
		if err != nil {
			return nil, err
		}
		if err := touchCustomer(ctx, tx, p, id, now); err != nil {
			return nil, err
		}
		return cursorToProto(rc), nil
	})
	if err != nil {
		return nil, err
	}
	if !replayed {
		s.signals.Publish(events.ConversationKey(id.String()), events.Signal{From: me.ID, Payload: cursor})
	}
	return cursor, nil
}

// raiseCursor creates or moves a participant's cursor; seqs never go back.
func raiseCursor(ctx context.Context, tx *ent.Tx, convID uuid.UUID, who chatlog.Sender, delivered, read int64, now time.Time) (*ent.ReadCursor, error) {
	rc, err := tx.ReadCursor.Query().Where(readcursor.ConversationID(convID), readcursor.ParticipantID(who.ID)).Only(ctx)
	if ent.IsNotFound(err) {
		rc, err = tx.ReadCursor.Create().
			SetConversationID(convID).
			SetParticipantRole(readcursor.ParticipantRole(who.Role)).
			SetParticipantID(who.ID).
			SetParticipantName(who.Name).
			SetDeliveredSeq(delivered).
			SetReadSeq(read).
			SetUpdatedAt(now).
			Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("create read cursor: %w", err)
		}
		return rc, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load read cursor: %w", err)
	}
	if delivered <= rc.DeliveredSeq && read <= rc.ReadSeq {
		return rc, nil
	}
	rc, err = rc.Update().
		SetDeliveredSeq(max(rc.DeliveredSeq, delivered)).
		SetReadSeq(max(rc.ReadSeq, read)).
		SetUpdatedAt(now).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("move read cursor: %w", err)
	}
	return rc, nil
}

// ListReadCursors returns every participant's cursors.
func (s *Service) ListReadCursors(ctx context.Context, req *parleyv1.ListReadCursorsRequest) (*parleyv1.ListReadCursorsResponse, error) {
	id := chatlog.ParseID(req.GetConversationId())
	p := auth.FromContext(ctx)
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Read)
	if err != nil {
		return nil, err
	}
	// An agent who handed the chat over sees cursors up to when they left.
	end, _, err := chatlog.HistoryEnd(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.ReadCursor.Query().Where(readcursor.ConversationID(id)).Order(ent.Asc(readcursor.FieldID)).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load read cursors: %w", err))
	}
	resp := &parleyv1.ListReadCursorsResponse{}
	for _, rc := range rows {
		out := cursorToProto(rc)
		out.DeliveredSeq, out.ReadSeq = min(out.GetDeliveredSeq(), end), min(out.GetReadSeq(), end)
		resp.ReadCursors = append(resp.ReadCursors, out)
	}
	return resp, nil
}

// cursorToProto converts a stored cursor.
func cursorToProto(rc *ent.ReadCursor) *parleyv1.ReadCursor {
	who := chatlog.Sender{Role: event.SenderRole(rc.ParticipantRole), ID: rc.ParticipantID, Name: rc.ParticipantName}
	return &parleyv1.ReadCursor{
		Participant:  who.Participant(),
		DeliveredSeq: rc.DeliveredSeq,
		ReadSeq:      rc.ReadSeq,
		UpdateTime:   timestamppb.New(rc.UpdatedAt),
	}
}
