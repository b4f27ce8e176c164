package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/cases"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/store"
)

// leftMessageSummary is how much of a left message titles its case.
const leftMessageSummary = 100

// LeaveMessage turns a waiting chat into a case: the customer's message is
// posted, a case is opened and linked, and the conversation closes. A
// retry with the same request_id returns the same case.
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
	sum := sha256.Sum256(fmt.Appendf(nil, "leave\x00%s\x00%s", id, req.GetText()))
	now := s.clk.Now()
	var number string
	var notify []string
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		prior, err := tx.ServiceCase.Query().Where(servicecase.RequestID(req.GetRequestId())).Only(ctx)
		if err == nil {
			if !bytes.Equal(prior.RequestHash, sum[:]) {
				return apierr.New(connect.CodeAlreadyExists, "REQUEST_ID_REUSED",
					fmt.Sprintf("request_id %s was already used for a different request; use a new request_id", req.GetRequestId()))
			}
			number = prior.Number
			return nil
		}
		if !ent.IsNotFound(err) {
			return fmt.Errorf("look up request id: %w", err)
		}
		cur, err := tx.Conversation.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("reload conversation: %w", err)
		}
		if cur.State != conversation.StateQueued {
			return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_NOT_WAITING",
				"this chat is no longer waiting for an agent: write to the agent, or start a new chat")
		}
		caseNumber, err := cases.NextNumber(ctx, tx)
		if err != nil {
			return err
		}
		summary := []rune(req.GetText())
		if len(summary) > leftMessageSummary {
			summary = append(summary[:leftMessageSummary], '…')
		}
		create := tx.ServiceCase.Create().
			SetCreatedAt(now).
			SetNumber(caseNumber).
			SetShortDescription("Message left while waiting: " + string(summary)).
			SetConversationID(id).
			SetRequestID(req.GetRequestId()).
			SetRequestHash(sum[:])
		if cur.ConsumerID != nil {
			create.SetConsumerID(*cur.ConsumerID)
		}
		c, err := create.Save(ctx)
		if err != nil {
			return fmt.Errorf("create case: %w", err)
		}
		number = c.Number
		channel := event.Channel(conv.Edges.Interaction.Channel)
		if _, err := chatlog.Append(ctx, tx, id, now,
			chatlog.Entry{Sender: sender, Channel: &channel, ClientMessageID: req.GetRequestId(),
				Payload: &parleyv1.MessagePosted{Text: req.GetText(), ClientMessageId: req.GetRequestId()}},
			chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.CaseLinked{CaseId: c.ID.String(), CaseNumber: c.Number}},
		); err != nil {
			return err
		}
		notify, err = routing.Close(ctx, tx, cur, sender, "the customer left a message: case "+c.Number, now)
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(notify...)
	s.dispatcher.Kick()
	closed, err := s.db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	return &parleyv1.LeaveMessageResponse{CaseNumber: number, Conversation: chatlog.ToProto(closed)}, nil
}
