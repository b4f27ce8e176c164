package routing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/store"
)

// Service implements parleyv1connect.RoutingServiceHandler's routing
// methods: presence, work streams, offers, transfers, agents' and
// supervisors' views. The admin's methods (queues, rules, agents) are
// admin.Service's; app serves both as one RoutingService.
type Service struct {
	db         *store.DB
	hub        *events.Hub
	clk        clock.Clock
	dispatcher *Dispatcher
	heartbeat  time.Duration
	// Summarize, when set, writes the summary the next agent reads, inside
	// a transfer's transaction (the virtual agent's package provides it).
	Summarize func(ctx context.Context, tx *ent.Tx, convID uuid.UUID, reason string, now time.Time) error
}

// NewService returns the routing methods of RoutingService. WatchWork
// streams send a heartbeat after each heartbeat interval without other items.
func NewService(db *store.DB, hub *events.Hub, clk clock.Clock, dispatcher *Dispatcher, heartbeat time.Duration) *Service {
	return &Service{db: db, hub: hub, clk: clk, dispatcher: dispatcher, heartbeat: heartbeat}
}

// PresenceFromProto maps the API's presences to stored ones.
var PresenceFromProto = map[parleyv1.Presence]agent.Presence{
	parleyv1.Presence_PRESENCE_AVAILABLE: agent.PresenceAvailable,
	parleyv1.Presence_PRESENCE_AWAY:      agent.PresenceAway,
	parleyv1.Presence_PRESENCE_OFFLINE:   agent.PresenceOffline,
}

// SetPresence sets the calling agent's presence on one channel or all.
// Offers on channels where the agent stops taking work go to others at
// once; going offline everywhere re-queues their chats per queue policy.
func (s *Service) SetPresence(ctx context.Context, req *parleyv1.SetPresenceRequest) (*parleyv1.SetPresenceResponse, error) {
	p := auth.FromContext(ctx)
	channel := ""
	if req.GetChannel() != parleyv1.Channel_CHANNEL_UNSPECIFIED {
		channel = string(chatlog.ChannelFromProto(req.GetChannel()))
	}
	err := s.dispatcher.commit(ctx, func(tx *ent.Tx, n *notes) error {
		return applyPresence(ctx, tx, p.AgentID, PresenceFromProto[req.GetPresence()], channel, s.clk.Now(), n)
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.dispatcher.Kick()
	a, err := s.db.Agent.Query().Where(agent.ID(p.AgentID)).WithQueues().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load agent %s: %w", p.AgentID, err))
	}
	return &parleyv1.SetPresenceResponse{Agent: AgentToProto(a)}, nil
}

var errTransferStale = apierr.New(connect.CodeFailedPrecondition, "TRANSFER_STALE",
	"the conversation changed hands since this transfer was offered")

func errNotWaiting(id uuid.UUID) error {
	return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_NOT_WAITING",
		fmt.Sprintf("conversation %s is no longer waiting", id))
}

// AcceptOffer takes an offered conversation. The offer id is the
// idempotency key: accepting an offer the caller already accepted (a
// retry, or the same agent on another device) returns the conversation
// again.
func (s *Service) AcceptOffer(ctx context.Context, req *parleyv1.AcceptOfferRequest) (*parleyv1.AcceptOfferResponse, error) {
	p := auth.FromContext(ctx)
	now := s.clk.Now()
	var o *ent.Offer
	err := s.dispatcher.commit(ctx, func(tx *ent.Tx, n *notes) error {
		var done bool
		var err error
		o, done, err = s.offerToDecide(ctx, tx, p, chatlog.ParseID(req.GetOfferId()), offer.StateAccepted, now)
		if err != nil || done {
			return err
		}
		count, err := tx.Offer.Update().Where(offer.ID(o.ID), offer.StateEQ(offer.StatePending)).
			SetState(offer.StateAccepted).SetDecidedAt(now).Save(ctx)
		if err != nil {
			return fmt.Errorf("accept offer: %w", err)
		}
		if count == 0 {
			return decidedMeanwhile(ctx, tx, o.ID, offer.StateAccepted)
		}
		me, err := tx.Agent.Get(ctx, p.AgentID)
		if err != nil {
			return fmt.Errorf("load agent: %w", err)
		}
		return assignTo(ctx, tx, o.ConversationID, me, o, now, n)
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.dispatcher.Kick()
	conv, err := s.loadConversation(ctx, o.ConversationID)
	if err != nil {
		return nil, err
	}
	return &parleyv1.AcceptOfferResponse{Conversation: conv}, nil
}

// offerToDecide loads, inside the deciding transaction, the caller's
// offer id for a decision that moves it to want. It reports done if the
// offer is in want already: the caller decided so before (a retry) or
// another of their calls just did (a second device), and the decision
// answers again without writing. Otherwise the offer is returned pending
// and unexpired, or the error says why it cannot be decided.
func (s *Service) offerToDecide(ctx context.Context, tx *ent.Tx, p *auth.Principal, id uuid.UUID, want offer.State, now time.Time) (*ent.Offer, bool, error) {
	o, err := tx.Offer.Get(ctx, id)
	notFound := apierr.New(connect.CodeNotFound, "OFFER_NOT_FOUND", fmt.Sprintf("you have no offer %s", id))
	if ent.IsNotFound(err) {
		return nil, false, notFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("load offer: %w", err)
	}
	if o.AgentID != p.AgentID {
		// Permission before existence: an agent outside the chat's queue
		// learns nothing. A member of it sees the queue's chats anyway, so
		// it learns that this one went to someone else.
		member, err := tx.Conversation.Query().Where(
			conversation.ID(o.ConversationID),
			conversation.HasQueueWith(queue.HasAgentsWith(agent.ID(p.AgentID))),
		).Exist(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("check queue membership: %w", err)
		}
		if !member {
			return nil, false, notFound
		}
		return nil, false, apierr.New(connect.CodeFailedPrecondition, "OFFER_FOR_ANOTHER_AGENT",
			fmt.Sprintf("offer %s is for another agent", id))
	}
	switch {
	case o.State == want:
		return o, true, nil
	case o.State != offer.StatePending:
		return nil, false, errOfferClosed(o)
	case !now.Before(o.ExpiresAt):
		return nil, false, apierr.New(connect.CodeFailedPrecondition, "OFFER_EXPIRED", fmt.Sprintf("offer %s expired", id))
	}
	return o, false, nil
}

// decidedMeanwhile answers a decision whose conditional update found the
// offer no longer pending although offerToDecide read it pending: another
// transaction decided it in between, which happens where transactions do
// not serialize on one write lock (PostgreSQL; on SQLite the read already
// sees it). Offers are decided once and the update waited for that
// transaction to commit, so a fresh read sees the outcome. If it is want,
// the other call was the caller's own (only the offered agent decides an
// offer), and this one answers as its retry; otherwise the error names
// the outcome.
func decidedMeanwhile(ctx context.Context, tx *ent.Tx, id uuid.UUID, want offer.State) error {
	o, err := tx.Offer.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("reload offer: %w", err)
	}
	if o.State == want {
		return nil
	}
	return errOfferClosed(o)
}

func errOfferClosed(o *ent.Offer) error {
	return apierr.New(connect.CodeFailedPrecondition, "OFFER_CLOSED", fmt.Sprintf("offer %s is already %s", o.ID, o.State))
}

// DeclineOffer refuses an offer; declining it again (a retry, or the same
// agent on another device) is a no-op.
func (s *Service) DeclineOffer(ctx context.Context, req *parleyv1.DeclineOfferRequest) (*parleyv1.DeclineOfferResponse, error) {
	p := auth.FromContext(ctx)
	now := s.clk.Now()
	err := s.dispatcher.commit(ctx, func(tx *ent.Tx, n *notes) error {
		o, done, err := s.offerToDecide(ctx, tx, p, chatlog.ParseID(req.GetOfferId()), offer.StateDeclined, now)
		if err != nil || done {
			return err
		}
		closed, err := closeOffer(ctx, tx, o, offer.StateDeclined, now, n)
		if err == nil && !closed {
			err = decidedMeanwhile(ctx, tx, o.ID, offer.StateDeclined)
		}
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.dispatcher.Kick()
	return &parleyv1.DeclineOfferResponse{}, nil
}

// TransferConversation hands a conversation to an agent or a queue. A
// retry with the same request_id returns the first call's response.
func (s *Service) TransferConversation(ctx context.Context, req *parleyv1.TransferConversationRequest) (*parleyv1.TransferConversationResponse, error) {
	p := auth.FromContext(ctx)
	convID := chatlog.ParseID(req.GetConversationId())
	if _, err := chatlog.Authorize(ctx, s.db.Client, p, convID, chatlog.Post); err != nil {
		return nil, err
	}
	now := s.clk.Now()
	var notify []string
	key := idempotency.Key{Caller: p.Caller(), Procedure: parleyv1connect.RoutingServiceTransferConversationProcedure, ID: req.GetRequestId(), Now: now}
	resp, _, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (*parleyv1.TransferConversationResponse, error) {
		conv, err := tx.Conversation.Query().Where(conversation.ID(convID)).WithQueue().Only(ctx)
		if err != nil {
			return nil, fmt.Errorf("load conversation: %w", err)
		}
		if conv.State != conversation.StateAssigned || conv.AgentID == nil || *conv.AgentID != p.AgentID {
			return nil, apierr.New(connect.CodeFailedPrecondition, "NOT_HOLDING_CONVERSATION",
				fmt.Sprintf("conversation %s is not assigned to you", convID))
		}
		me, err := tx.Agent.Get(ctx, p.AgentID)
		if err != nil {
			return nil, fmt.Errorf("load agent: %w", err)
		}
		resp := &parleyv1.TransferConversationResponse{}
		switch target := req.GetTarget().(type) {
		case *parleyv1.TransferConversationRequest_AgentId:
			offerID, err := s.transferToAgent(ctx, tx, conv, me, chatlog.ParseID(target.AgentId), req.GetNote(), now)
			if err != nil {
				return nil, err
			}
			resp.OfferId = offerID.String()
			notify = append(notify, events.AgentKey(target.AgentId))
		case *parleyv1.TransferConversationRequest_QueueId:
			var n notes
			queueID := chatlog.ParseID(target.QueueId)
			if err := s.transferToQueue(ctx, tx, conv, me, queueID, req.GetNote(), now, &n); err != nil {
				return nil, err
			}
			n.conversation(convID)
			n.agent(me.ID)
			n.queue(&queueID)
			notify = append(notify, n.keys...)
		default:
			return nil, apierr.New(connect.CodeInvalidArgument, "TRANSFER_TARGET_REQUIRED", "set agent_id or queue_id")
		}
		if s.Summarize != nil {
			if err := s.Summarize(ctx, tx, convID, chatlog.ReasonTransfer, now); err != nil {
				return nil, err
			}
		}
		after, err := tx.Conversation.Query().Where(conversation.ID(convID)).WithInteraction().Only(ctx)
		if err != nil {
			return nil, fmt.Errorf("reload conversation: %w", err)
		}
		resp.Conversation = chatlog.ToProto(after)
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	s.hub.Notify(notify...)
	s.dispatcher.Kick()
	return resp, nil
}

func (s *Service) transferToAgent(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, me *ent.Agent, to uuid.UUID, note string, now time.Time) (uuid.UUID, error) {
	if to == me.ID {
		return uuid.Nil, apierr.New(connect.CodeInvalidArgument, "TRANSFER_TO_SELF", "you already hold this conversation")
	}
	target, err := tx.Agent.Get(ctx, to)
	if ent.IsNotFound(err) {
		return uuid.Nil, apierr.New(connect.CodeNotFound, "AGENT_NOT_FOUND", fmt.Sprintf("agent %s does not exist", to))
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("load target agent: %w", err)
	}
	pending, err := tx.Offer.Query().Where(offer.ConversationID(conv.ID), offer.StateEQ(offer.StatePending)).Exist(ctx)
	if err != nil {
		return uuid.Nil, fmt.Errorf("check pending offers: %w", err)
	}
	if pending {
		return uuid.Nil, apierr.New(connect.CodeFailedPrecondition, "TRANSFER_PENDING",
			"a transfer of this conversation is already waiting for an answer")
	}
	in, err := conv.QueryInteraction().Only(ctx)
	if err != nil {
		return uuid.Nil, fmt.Errorf("load interaction: %w", err)
	}
	if err := reserveCapacity(ctx, tx, target.ID, string(in.Channel), now); err != nil {
		if errors.Is(err, errUnavailable) {
			return uuid.Nil, apierr.New(connect.CodeFailedPrecondition, "AGENT_UNAVAILABLE",
				fmt.Sprintf("%s is not available on this chat's channel or has no free capacity", target.DisplayName))
		}
		return uuid.Nil, err
	}
	timeout := DefaultOfferTimeout
	if conv.Edges.Queue != nil {
		timeout = time.Duration(conv.Edges.Queue.OfferTimeoutMs) * time.Millisecond
	}
	o, err := tx.Offer.Create().
		SetConversationID(conv.ID).
		SetAgentID(target.ID).
		SetExpiresAt(now.Add(timeout)).
		SetTransferFromAgentID(me.ID).
		SetTransferNote(note).
		Save(ctx)
	if err != nil {
		return uuid.Nil, fmt.Errorf("create transfer offer: %w", err)
	}
	return o.ID, nil
}

func (s *Service) transferToQueue(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, me *ent.Agent, queueID uuid.UUID, note string, now time.Time, n *notes) error {
	q, err := tx.Queue.Get(ctx, queueID)
	if ent.IsNotFound(err) {
		return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("queue %s does not exist", queueID))
	}
	if err != nil {
		return fmt.Errorf("load queue: %w", err)
	}
	// A pending transfer offer to another agent is withdrawn.
	if err := withdrawOffers(ctx, tx, conv.ID, now, n); err != nil {
		return err
	}
	if err := ReleaseCapacity(ctx, tx, me.ID); err != nil {
		return err
	}
	if err := tx.Conversation.UpdateOneID(conv.ID).
		SetState(conversation.StateQueued).
		ClearAgentID().
		SetQueueID(q.ID).
		SetQueuedAt(now).
		SetQueueEnteredAt(now).
		ClearWaitExceededAt().
		SetPriority(q.Priority).
		Exec(ctx); err != nil {
		return fmt.Errorf("requeue conversation: %w", err)
	}
	from := chatlog.AgentSender(me)
	_, err = chatlog.Append(ctx, tx, conv.ID, now,
		chatlog.Entry{Sender: from, Payload: &parleyv1.ConversationTransferred{From: from.Participant(), ToQueueId: q.ID.String(), Note: note}},
		chatlog.Entry{Sender: from, Payload: &parleyv1.ParticipantLeft{Participant: from.Participant()}},
		chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.ConversationQueued{QueueId: q.ID.String(), QueueName: q.DisplayName, Reason: "transfer"}},
		*chatlog.ControllerChange(conversation.StateAssigned, conversation.StateQueued, chatlog.ReasonTransfer),
	)
	return err
}

// ListAssignedConversations lists the caller's open conversations.
func (s *Service) ListAssignedConversations(ctx context.Context, req *parleyv1.ListAssignedConversationsRequest) (*parleyv1.ListAssignedConversationsResponse, error) {
	p := auth.FromContext(ctx)
	scope := "assigned/" + p.AgentID.String()
	after, err := paging.DecodeID(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), 50, 200)
	rows, err := s.db.Conversation.Query().
		Where(conversation.AgentID(p.AgentID), conversation.StateEQ(conversation.StateAssigned), conversation.IDGT(after)).
		Order(ent.Asc(conversation.FieldID)).
		WithInteraction().
		Limit(size + 1).
		All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list assigned conversations: %w", err))
	}
	page, next := paging.Trim(rows, size, scope, func(c *ent.Conversation) string { return c.ID.String() })
	resp := &parleyv1.ListAssignedConversationsResponse{NextPageToken: next}
	for _, c := range page {
		resp.Conversations = append(resp.Conversations, chatlog.ToProto(c))
	}
	return resp, nil
}

func (s *Service) loadConversation(ctx context.Context, id uuid.UUID) (*parleyv1.Conversation, error) {
	c, err := s.db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation %s: %w", id, err))
	}
	return chatlog.ToProto(c), nil
}

// ListQueuedConversations lists waiting conversations, oldest first: an
// agent's queues' for an agent, every queue's for supervisors and admins.
func (s *Service) ListQueuedConversations(ctx context.Context, req *parleyv1.ListQueuedConversationsRequest) (*parleyv1.ListQueuedConversationsResponse, error) {
	p := auth.FromContext(ctx)
	scope := "queued"
	query := s.db.Conversation.Query().Where(conversation.StateEQ(conversation.StateQueued))
	if p.Role == auth.RoleAgent {
		scope += "/" + p.AgentID.String()
		query.Where(conversation.HasQueueWith(queue.HasAgentsWith(agent.ID(p.AgentID))))
	}
	cursor, err := paging.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if cursor != "" {
		at, id, ok := parseQueuedCursor(cursor)
		if !ok {
			return nil, paging.ErrBadToken()
		}
		query.Where(conversation.Or(
			conversation.QueuedAtGT(at),
			conversation.And(conversation.QueuedAt(at), conversation.IDGT(id)),
		))
	}
	size := paging.Size(req.GetPageSize(), 50, 200)
	rows, err := query.
		Order(ent.Asc(conversation.FieldQueuedAt), ent.Asc(conversation.FieldID)).
		WithInteraction().
		Limit(size + 1).
		All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list queued conversations: %w", err))
	}
	page, next := paging.Trim(rows, size, scope, func(c *ent.Conversation) string {
		return c.QueuedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID.String()
	})
	resp := &parleyv1.ListQueuedConversationsResponse{NextPageToken: next}
	for _, c := range page {
		resp.Conversations = append(resp.Conversations, chatlog.ToProto(c))
	}
	return resp, nil
}

// parseQueuedCursor splits a ListQueuedConversations cursor.
func parseQueuedCursor(cursor string) (time.Time, uuid.UUID, bool) {
	at, id, found := strings.Cut(cursor, "|")
	t, err1 := time.Parse(time.RFC3339Nano, at)
	u, err2 := uuid.Parse(id)
	return t, u, found && err1 == nil && err2 == nil
}
