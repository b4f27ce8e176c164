package chatlog

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
)

// Need is what a caller wants to do with a conversation.
type Need int

const (
	// Read the conversation and its log.
	Read Need = iota
	// Post messages to it: its guest, or the agent holding it.
	Post
	// Manage it (close it): its guest or customer, the agent holding it, a
	// supervisor or an admin.
	Manage
	// Participate in it in any state (acknowledge what was read): its guest
	// or the agent holding it.
	Participate
	// Follow its log live (Subscribe): those who may read it, except agents
	// who held it once and hold it no longer while it is open (they keep
	// its history).
	Follow
)

func denied(id uuid.UUID) error {
	return apierr.New(connect.CodePermissionDenied, "CONVERSATION_ACCESS_DENIED",
		fmt.Sprintf("you have no access to conversation %s", id))
}

// Authorize loads the conversation (with its interaction) if the caller may
// do what it needs with it:
//
//   - a guest, only its own conversation; a customer, only its own;
//   - an agent reads the conversations it holds, held or was offered, and
//     those waiting in its queues, and follows them live except those it
//     held once and holds no longer; it posts to and manages only the ones
//     it holds;
//   - supervisors and admins read and manage (close) every conversation,
//     and post to none.
//
// Permission is checked before existence: a caller who could not see the
// conversation if it existed is denied whether or not it exists, so probing
// ids reveals nothing. Supervisors and admins learn NotFound.
func Authorize(ctx context.Context, db *ent.Client, p *auth.Principal, id uuid.UUID, need Need) (*ent.Conversation, error) {
	return authorize(ctx, db, p, id, need, true)
}

// Reauthorize is Authorize for following, again, on an open stream: the
// same rules, but the conversation is loaded without its interaction,
// which the stream already has.
func Reauthorize(ctx context.Context, db *ent.Client, p *auth.Principal, id uuid.UUID) (*ent.Conversation, error) {
	return authorize(ctx, db, p, id, Follow, false)
}

func authorize(ctx context.Context, db *ent.Client, p *auth.Principal, id uuid.UUID, need Need, withInteraction bool) (*ent.Conversation, error) {
	if p == nil {
		return nil, apierr.New(connect.CodeUnauthenticated, "MISSING_TOKEN", "missing credentials")
	}
	overseer := p.Role == auth.RoleAdmin || p.Role == auth.RoleSupervisor
	switch {
	case p.Role == auth.RoleGuest && p.ConversationID != id:
		return nil, denied(id)
	case overseer && (need == Post || need == Participate):
		return nil, apierr.New(connect.CodePermissionDenied, "OVERSEER_CANNOT_POST",
			"supervisors and admins do not take part in conversations; the agent holding it posts")
	}
	query := db.Conversation.Query().Where(conversation.ID(id))
	if withInteraction {
		query.WithInteraction()
	}
	conv, err := query.Only(ctx)
	if ent.IsNotFound(err) {
		if overseer {
			return nil, apierr.New(connect.CodeNotFound, "CONVERSATION_NOT_FOUND",
				fmt.Sprintf("conversation %s does not exist", id))
		}
		return nil, denied(id)
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation %s: %w", id, err))
	}
	if err := check(ctx, db, p, conv, need); err != nil {
		return nil, err
	}
	return conv, nil
}

// Recheck is Reauthorize for a conversation the stream did not load
// itself: one a delivery tail read after the events it hands out, shared
// by every subscriber of the conversation (so it is only read, never
// changed).
func Recheck(ctx context.Context, db *ent.Client, p *auth.Principal, conv *ent.Conversation) error {
	if p == nil {
		return apierr.New(connect.CodeUnauthenticated, "MISSING_TOKEN", "missing credentials")
	}
	if p.Role == auth.RoleGuest && p.ConversationID != conv.ID {
		return denied(conv.ID)
	}
	return check(ctx, db, p, conv, Follow)
}

// check decides whether p may do what it needs with conv, loaded by
// authorize, by the rules Authorize lists (the guest's conversation and
// the overseers' limits are checked before loading).
func check(ctx context.Context, db *ent.Client, p *auth.Principal, conv *ent.Conversation, need Need) error {
	id := conv.ID
	switch p.Role {
	case auth.RoleCustomer:
		if conv.ConsumerID == nil || *conv.ConsumerID != p.ConsumerID {
			return denied(id)
		}
	case auth.RoleAgent:
		if conv.AgentID == nil || *conv.AgentID != p.AgentID {
			view, err := agentSees(ctx, db, p.AgentID, conv)
			if err != nil {
				return err
			}
			switch {
			case !view.offered && !view.held && !view.queued:
				return denied(id)
			case need == Follow && !view.offered && !view.queued && conv.State != conversation.StateClosed:
				return apierr.New(connect.CodePermissionDenied, "NO_LONGER_HOLDING",
					fmt.Sprintf("conversation %s is no longer yours; its history stays readable with ListEvents", id))
			case need != Read && need != Follow:
				return apierr.New(connect.CodePermissionDenied, "NOT_HOLDING_CONVERSATION",
					fmt.Sprintf("conversation %s is not assigned to you", id))
			}
		}
	}
	if need == Post {
		return CheckPost(p, conv)
	}
	return nil
}

// agentView is why an agent that does not hold a conversation may see it.
type agentView struct {
	// offered: the agent has a pending offer of it (a new chat or a
	// transfer).
	offered bool
	// held: the agent held it before (accepted an offer of it).
	held bool
	// queued: it waits in one of the agent's queues.
	queued bool
}

// agentSees tells why an agent that does not hold conv may see it, if at
// all.
func agentSees(ctx context.Context, db *ent.Client, agentID uuid.UUID, conv *ent.Conversation) (agentView, error) {
	var view agentView
	states, err := db.Offer.Query().Where(
		offer.ConversationID(conv.ID), offer.AgentID(agentID),
		offer.StateIn(offer.StatePending, offer.StateAccepted),
	).Select(offer.FieldState).Strings(ctx)
	if err != nil {
		return view, apierr.Internal(fmt.Errorf("check offers of %s: %w", conv.ID, err))
	}
	for _, st := range states {
		view.offered = view.offered || st == string(offer.StatePending)
		view.held = view.held || st == string(offer.StateAccepted)
	}
	if view.offered || conv.State != conversation.StateQueued || conv.QueueID == nil {
		return view, nil
	}
	view.queued, err = db.Agent.Query().Where(agent.ID(agentID), agent.HasQueuesWith(queue.ID(*conv.QueueID))).Exist(ctx)
	if err != nil {
		return view, apierr.Internal(fmt.Errorf("check queues of agent %s: %w", agentID, err))
	}
	return view, nil
}

// HistoryEnd is the last seq of conv (loaded by Authorize) that p may read
// and the time it was written: the whole log, except for an agent who held
// it once and holds it no longer while it is open, who reads it up to the
// moment they left it (they keep its history, but do not follow it).
func HistoryEnd(ctx context.Context, db *ent.Client, p *auth.Principal, conv *ent.Conversation) (int64, time.Time, error) {
	whole := func() (int64, time.Time, error) { return conv.LastSeq, time.Time{}, nil }
	if p.Role != auth.RoleAgent || conv.State == conversation.StateClosed || (conv.AgentID != nil && *conv.AgentID == p.AgentID) {
		return whole()
	}
	view, err := agentSees(ctx, db, p.AgentID, conv)
	if err != nil {
		return 0, time.Time{}, err
	}
	if view.offered || view.queued || !view.held {
		return whole()
	}
	left, err := db.Event.Query().
		Where(event.ConversationID(conv.ID), event.Kind("participant_left"), event.SenderID(p.AgentID.String())).
		Order(ent.Desc(event.FieldSeq)).
		First(ctx)
	if ent.IsNotFound(err) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, apierr.Internal(fmt.Errorf("find when %s left %s: %w", p.AgentID, conv.ID, err))
	}
	return left.Seq, left.CreatedAt, nil
}

// CheckPost tells whether the caller may post to conv in its current state:
// nobody posts to a closed conversation, and an agent only to one it holds.
func CheckPost(p *auth.Principal, conv *ent.Conversation) error {
	if conv.State == conversation.StateClosed {
		return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_CLOSED",
			fmt.Sprintf("conversation %s is closed", conv.ID))
	}
	if p.Role == auth.RoleAgent && (conv.AgentID == nil || *conv.AgentID != p.AgentID) {
		return apierr.New(connect.CodePermissionDenied, "NOT_HOLDING_CONVERSATION",
			fmt.Sprintf("conversation %s is not assigned to you", conv.ID))
	}
	return nil
}

// SenderOf returns the sender a principal writes as in conv.
func SenderOf(ctx context.Context, db *ent.Client, p *auth.Principal, conv *ent.Conversation) (Sender, error) {
	switch p.Role {
	case auth.RoleGuest:
		in := conv.Edges.Interaction
		return Sender{Role: event.SenderRoleGuest, ID: in.ID.String(), Name: in.Name}, nil
	case auth.RoleCustomer:
		c, err := db.Consumer.Get(ctx, p.ConsumerID)
		if err != nil {
			return Sender{}, fmt.Errorf("load consumer %s: %w", p.ConsumerID, err)
		}
		return Sender{Role: event.SenderRoleCustomer, ID: c.ID.String(), Name: c.DisplayName}, nil
	case auth.RoleAgent:
		a, err := db.Agent.Get(ctx, p.AgentID)
		if err != nil {
			return Sender{}, fmt.Errorf("load agent %s: %w", p.AgentID, err)
		}
		return AgentSender(a), nil
	}
	return System, nil
}

// ViewerID is the sender id p writes as in conv (loaded with its
// interaction), or "" for supervisors and admins, who never post: the
// viewer EventToProto takes.
func ViewerID(p *auth.Principal, conv *ent.Conversation) string {
	switch p.Role {
	case auth.RoleGuest:
		return conv.Edges.Interaction.ID.String()
	case auth.RoleCustomer:
		return p.ConsumerID.String()
	case auth.RoleAgent:
		return p.AgentID.String()
	}
	return ""
}

// AgentSender is the sender for an agent.
func AgentSender(a *ent.Agent) Sender {
	return Sender{Role: event.SenderRoleAgent, ID: a.ID.String(), Name: a.DisplayName}
}

// ParseID parses an id the validator already checked is a UUID.
func ParseID(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}
