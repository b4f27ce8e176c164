package session

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/paging"
)

// StartCustomerChat resumes the signed-in customer's open conversation,
// whichever channel it started on, or starts one. A retry with the same
// request_id returns the first call's response.
func (s *Service) StartCustomerChat(ctx context.Context, req *parleyv1.StartCustomerChatRequest) (*parleyv1.StartCustomerChatResponse, error) {
	p := auth.FromContext(ctx)
	c, err := s.db.Consumer.Get(ctx, p.ConsumerID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load consumer %s: %w", p.ConsumerID, err))
	}
	me := chatlog.Sender{Role: event.SenderRoleCustomer, ID: c.ID.String(), Name: c.DisplayName}
	now := s.clk.Now()
	var notify []string
	key := idempotency.Key{Caller: p.Caller(), Procedure: parleyv1connect.SessionServiceStartCustomerChatProcedure, ID: req.GetRequestId(), Now: now}
	resp, _, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (*parleyv1.StartCustomerChatResponse, error) {
		set, err := tx.Setting.Get(ctx, schema.SettingsID)
		if err != nil {
			return nil, fmt.Errorf("load settings: %w", err)
		}
		if err := checkIssueType(set, req.GetIssueType()); err != nil {
			return nil, err
		}
		open, err := tx.Conversation.Query().
			Where(conversation.ConsumerID(c.ID), conversation.StateNEQ(conversation.StateClosed)).
			Order(ent.Desc(conversation.FieldCreatedAt)).
			First(ctx)
		resumed := err == nil
		switch {
		case resumed:
			notify = append(notify, events.ConversationKey(open.ID.String()))
			if req.GetFirstMessage() != "" {
				channel := event.Channel(chatlog.ChannelFromProto(req.GetChannel()))
				posted, err := chatlog.Append(ctx, tx, open.ID, now, chatlog.Entry{
					Sender: me, Channel: &channel, ClientMessageID: req.GetRequestId(),
					Payload: &parleyv1.MessagePosted{Text: req.GetFirstMessage(), ClientMessageId: req.GetRequestId()},
				})
				if err != nil {
					return nil, err
				}
				if open.State == conversation.StateBot && s.bot != nil {
					if err := s.bot.MarkPending(ctx, tx, open.ID, posted[0].Seq); err != nil {
						return nil, err
					}
				}
			}
			if err := tx.Conversation.UpdateOneID(open.ID).SetCustomerActiveAt(now).Exec(ctx); err != nil {
				return nil, fmt.Errorf("record customer activity: %w", err)
			}
		case ent.IsNotFound(err):
			if err := checkCustomerChats(ctx, tx, c.ID, now); err != nil {
				return nil, err
			}
			hash, herr := idempotency.Fingerprint(req)
			if herr != nil {
				return nil, herr
			}
			open, err = s.open(ctx, tx, chatForm{
				requestID: idempotency.Scoped(p.Caller(), req.GetRequestId()), firstMessageID: req.GetRequestId(), hash: hash, name: c.DisplayName, email: c.Email,
				issueType: req.GetIssueType(), firstMessage: req.GetFirstMessage(), channel: req.GetChannel(),
				language: req.GetLanguage(), formFields: req.GetFormFields(), tier: auth.FromContext(ctx).Tier,
			}, set, &me, now)
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("look up open conversation: %w", err)
		}
		conv, err := tx.Conversation.Query().Where(conversation.ID(open.ID)).WithInteraction().Only(ctx)
		if err != nil {
			return nil, fmt.Errorf("load conversation: %w", err)
		}
		return &parleyv1.StartCustomerChatResponse{Conversation: chatlog.ToProto(conv), Resumed: resumed}, nil
	})
	if err != nil {
		return nil, err
	}
	if q := resp.GetConversation().GetQueueId(); q != "" {
		notify = append(notify, events.QueueKey(q), events.RoutingKey)
	}
	s.hub.Notify(notify...)
	s.kick()
	return resp, nil
}

// MaxCustomerChatsPerHour bounds how many conversations one signed-in
// customer starts in a rolling hour, so that starting and closing chats
// in a loop cannot store without bound (guests have the guest session
// limits).
const MaxCustomerChatsPerHour = 20

// checkCustomerChats refuses a customer's new conversation past
// MaxCustomerChatsPerHour, counted in the store.
func checkCustomerChats(ctx context.Context, tx *ent.Tx, consumerID uuid.UUID, now time.Time) error {
	n, err := tx.Conversation.Query().
		Where(conversation.ConsumerID(consumerID), conversation.CreatedAtGT(now.Add(-GuestSessionWindow))).
		Count(ctx)
	if err != nil {
		return fmt.Errorf("count the customer's recent conversations: %w", err)
	}
	if n >= MaxCustomerChatsPerHour {
		return apierr.New(connect.CodeResourceExhausted, "CUSTOMER_CHAT_LIMIT",
			fmt.Sprintf("you started %d conversations in the last hour, the most one customer may; continue an open one or try again later", n))
	}
	return nil
}

// ListMyConversations pages through the customer's conversations from
// every channel, newest first.
func (s *Service) ListMyConversations(ctx context.Context, req *parleyv1.ListMyConversationsRequest) (*parleyv1.ListMyConversationsResponse, error) {
	p := auth.FromContext(ctx)
	scope := "consumer/" + p.ConsumerID.String()
	before, err := paging.DecodeID(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	q := s.db.Conversation.Query().Where(conversation.ConsumerID(p.ConsumerID))
	if before != uuid.Nil {
		q = q.Where(conversation.IDLT(before))
	}
	size := paging.Size(req.GetPageSize(), 50, 200)
	rows, err := q.Order(ent.Desc(conversation.FieldID)).Limit(size + 1).WithInteraction().All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list conversations: %w", err))
	}
	page, next := paging.Trim(rows, size, scope, func(c *ent.Conversation) string { return c.ID.String() })
	resp := &parleyv1.ListMyConversationsResponse{NextPageToken: next}
	for _, c := range page {
		resp.Conversations = append(resp.Conversations, chatlog.ToProto(c))
	}
	return resp, nil
}
