package session

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/cases"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/routing"
)

// leftMessageSummary is how much of a left message titles its case.
const leftMessageSummary = 100

// LeaveMessage turns a waiting chat into a case: the customer's message is
// posted, a case is opened and linked, and the conversation closes. A
// retry with the same request_id returns the first call's response.
func (s *Service) LeaveMessage(ctx context.Context, req *parleyv1.LeaveMessageRequest) (*parleyv1.LeaveMessageResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Manage)
	if err != nil {
		return nil, err
	}
	if p.Role != auth.RoleGuest && p.Role != auth.RoleCustomer {
		return nil, apierr.New(connect.CodePermissionDenied, "CUSTOMERS_ONLY", "only the customer of a chat may leave a message in it")
	}
	sender, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	now := s.clk.Now()
	var notify []string
	key := idempotency.Key{Caller: p.Caller(), Procedure: parleyv1connect.SessionServiceLeaveMessageProcedure, ID: req.GetRequestId(), Now: now}
	resp, _, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (*parleyv1.LeaveMessageResponse, error) {
		number, keys, err := leaveMessage(ctx, tx, conv, sender, req.GetRequestId(), req.GetText(), now)
		if err != nil {
			return nil, err
		}
		notify = keys
		closed, err := tx.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
		if err != nil {
			return nil, fmt.Errorf("load conversation: %w", err)
		}
		return &parleyv1.LeaveMessageResponse{CaseNumber: number, Conversation: chatlog.ToProto(closed)}, nil
	})
	if err != nil {
		return nil, err
	}
	s.hub.Notify(notify...)
	s.dispatcher.Kick()
	return resp, nil
}

// leaveMessage does LeaveMessage's write inside tx: it posts the customer's
// text (with requestID as its client_message_id), opens a case for it,
// links the case and closes the conversation. It returns the case number
// and the hub keys to notify once tx commits.
func leaveMessage(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, sender chatlog.Sender, requestID, text string, now time.Time) (string, []string, error) {
	cur, err := tx.Conversation.Get(ctx, conv.ID)
	if err != nil {
		return "", nil, fmt.Errorf("reload conversation: %w", err)
	}
	if cur.State != conversation.StateQueued {
		return "", nil, apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_NOT_WAITING",
			"this chat is no longer waiting for an agent: write to the agent, or start a new chat")
	}
	caseNumber, err := cases.NextNumber(ctx, tx)
	if err != nil {
		return "", nil, err
	}
	summary := []rune(text)
	if len(summary) > leftMessageSummary {
		summary = append(summary[:leftMessageSummary], '…')
	}
	create := tx.ServiceCase.Create().
		SetCreatedAt(now).
		SetUpdatedAt(now).
		SetNumber(caseNumber).
		SetShortDescription("Message left while waiting: " + string(summary)).
		SetConversationID(conv.ID)
	if cur.ConsumerID != nil {
		create.SetConsumerID(*cur.ConsumerID)
	}
	c, err := create.Save(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("create case: %w", err)
	}
	channel := event.Channel(conv.Edges.Interaction.Channel)
	if _, err := chatlog.Append(ctx, tx, conv.ID, now,
		chatlog.Entry{Sender: sender, Channel: &channel, ClientMessageID: requestID,
			Payload: &parleyv1.MessagePosted{Text: text, ClientMessageId: requestID}},
		chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.CaseLinked{CaseId: c.ID.String(), CaseNumber: c.Number}},
	); err != nil {
		return "", nil, err
	}
	notify, err := routing.Close(ctx, tx, cur, sender, "the customer left a message: case "+c.Number, now)
	if err != nil {
		return "", nil, err
	}
	return c.Number, notify, nil
}
