package session

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/store"
)

// ClaimGuestConversation moves a guest conversation into the signed-in
// customer's history, if the caller also holds its live guest token. Only
// the conversation's owner changes: the guest's typed name and email stay
// on the interaction and never reach the verified consumer record. The
// guest tokens are revoked, so from then on only the customer's identity
// opens the conversation.
func (s *Service) ClaimGuestConversation(ctx context.Context, req *parleyv1.ClaimGuestConversationRequest) (*parleyv1.ClaimGuestConversationResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	info, _ := connect.CallInfoForServerContext(ctx)
	secret := ""
	if info != nil {
		secret = strings.TrimSpace(info.RequestHeader().Get(auth.GuestTokenHeader))
	}
	if secret == "" {
		return nil, apierr.New(connect.CodeUnauthenticated, "MISSING_GUEST_TOKEN",
			fmt.Sprintf("send the conversation's guest token in the %s header", auth.GuestTokenHeader))
	}
	now := s.clk.Now()
	denied := apierr.New(connect.CodePermissionDenied, "CONVERSATION_ACCESS_DENIED",
		fmt.Sprintf("you have no access to conversation %s: the guest token is not live for it", id))
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		conv, err := tx.Conversation.Get(ctx, id)
		if err == nil && conv.ConsumerID != nil && *conv.ConsumerID == p.ConsumerID {
			return nil // claimed before: a retry
		}
		live, terr := auth.GuestTokenLive(ctx, tx, secret, id, now)
		if terr != nil {
			return terr
		}
		if !live {
			return denied
		}
		if err != nil {
			return fmt.Errorf("load conversation %s: %w", id, err)
		}
		if conv.ConsumerID != nil {
			return apierr.New(connect.CodeFailedPrecondition, "ALREADY_CLAIMED",
				fmt.Sprintf("conversation %s already belongs to another customer", id))
		}
		c, err := tx.Consumer.Get(ctx, p.ConsumerID)
		if err != nil {
			return fmt.Errorf("load consumer %s: %w", p.ConsumerID, err)
		}
		// A claimed chat counts like one the customer started.
		if err := checkCustomerChats(ctx, tx, c.ID, now); err != nil {
			return err
		}
		n, err := tx.Conversation.Update().
			Where(conversation.ID(id), conversation.ConsumerIDIsNil(), conversation.StateNEQ(conversation.StateClosed)).
			SetConsumerID(c.ID).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("claim conversation %s: %w", id, err)
		}
		if n == 0 {
			return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_CLOSED",
				fmt.Sprintf("conversation %s is closed", id))
		}
		if err := auth.RevokeGuestTokens(ctx, tx, id, now); err != nil {
			return err
		}
		me := chatlog.Sender{Role: event.SenderRoleCustomer, ID: c.ID.String(), Name: c.DisplayName}
		_, err = chatlog.Append(ctx, tx, id, now, chatlog.Entry{Sender: me, Payload: &parleyv1.ParticipantJoined{Participant: me.Participant()}})
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.ConversationKey(id.String()))
	conv, err := s.db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	return &parleyv1.ClaimGuestConversationResponse{Conversation: chatlog.ToProto(conv)}, nil
}
