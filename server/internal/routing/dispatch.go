// Package routing serves RoutingService (presence, work streams, offers,
// transfers and the admin's queues, rules and agents) and runs the
// dispatcher that turns the engine's proposals into offers.
package routing

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/routing/engine"
	"github.com/parleyhq/parley/server/internal/store"
)

// DefaultOfferTimeout applies to queues created without one.
const DefaultOfferTimeout = 30 * time.Second

// maxWorkPerPass bounds how many waiting conversations one pass considers.
const maxWorkPerPass = 1000

// Dispatcher offers waiting conversations to available agents and expires
// lapsed offers. The engine proposes from a snapshot; each proposal commits
// in its own short transaction that re-checks it with conditional updates,
// so a stale proposal is a no-op.
type Dispatcher struct {
	db   *ent.Client
	hub  *events.Hub
	clk  clock.Clock
	log  *slog.Logger
	kick chan struct{}
}

// NewDispatcher returns a dispatcher; start it with Run.
func NewDispatcher(db *ent.Client, hub *events.Hub, clk clock.Clock, log *slog.Logger) *Dispatcher {
	return &Dispatcher{db: db, hub: hub, clk: clk, log: log, kick: make(chan struct{}, 1)}
}

// Kick asks for a pass soon. It never blocks; kicks coalesce.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run makes passes on every kick and every sweep interval (which bounds how
// late an offer expiry is noticed) until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, sweep time.Duration) {
	ticker := time.NewTicker(sweep)
	defer ticker.Stop()
	for {
		if err := d.Pass(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("routing pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-ticker.C:
		}
	}
}

// Pass closes abandoned conversations and expires lapsed offers, then
// offers waiting work to agents.
func (d *Dispatcher) Pass(ctx context.Context) error {
	if err := d.closeAbandoned(ctx); err != nil {
		return err
	}
	if err := d.expireOffers(ctx); err != nil {
		return err
	}
	return d.assign(ctx)
}

func (d *Dispatcher) expireOffers(ctx context.Context) error {
	now := d.clk.Now()
	lapsed, err := d.db.Offer.Query().
		Where(offer.StateEQ(offer.StatePending), offer.ExpiresAtLTE(now)).
		All(ctx)
	if err != nil {
		return fmt.Errorf("find lapsed offers: %w", err)
	}
	for _, o := range lapsed {
		var closed bool
		err := store.InTx(ctx, d.db, func(tx *ent.Tx) error {
			var err error
			closed, err = closeOffer(ctx, tx, o, offer.StateExpired, now)
			return err
		})
		if err != nil {
			return fmt.Errorf("expire offer %s: %w", o.ID, err)
		}
		if closed {
			d.hub.Notify(events.AgentKey(o.AgentID.String()))
		}
	}
	return nil
}

// closeOffer moves a pending offer to a final state and gives its capacity
// back. It reports false if the offer was no longer pending.
func closeOffer(ctx context.Context, tx *ent.Tx, o *ent.Offer, state offer.State, now time.Time) (bool, error) {
	n, err := tx.Offer.Update().
		Where(offer.ID(o.ID), offer.StateEQ(offer.StatePending)).
		SetState(state).
		SetDecidedAt(now).
		Save(ctx)
	if err != nil || n == 0 {
		return false, err
	}
	if err := ReleaseCapacity(ctx, tx, o.AgentID); err != nil {
		return false, err
	}
	return true, nil
}

// WithdrawOffers withdraws a conversation's pending offers and returns the
// agents they were for.
func WithdrawOffers(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, now time.Time) ([]uuid.UUID, error) {
	pending, err := tx.Offer.Query().Where(offer.ConversationID(conversationID), offer.StateEQ(offer.StatePending)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load pending offers of %s: %w", conversationID, err)
	}
	var agents []uuid.UUID
	for _, o := range pending {
		closed, err := closeOffer(ctx, tx, o, offer.StateWithdrawn, now)
		if err != nil {
			return nil, err
		}
		if closed {
			agents = append(agents, o.AgentID)
		}
	}
	return agents, nil
}

// ReleaseCapacity gives one unit of an agent's capacity back.
func ReleaseCapacity(ctx context.Context, tx *ent.Tx, agentID uuid.UUID) error {
	if _, err := tx.Agent.Update().Where(agent.ID(agentID), agent.LoadGT(0)).AddLoad(-1).Save(ctx); err != nil {
		return fmt.Errorf("release capacity of agent %s: %w", agentID, err)
	}
	return nil
}

// hasFreeCapacity matches agents whose load is below their capacity.
func hasFreeCapacity() predicate.Agent {
	return func(s *entsql.Selector) {
		s.Where(entsql.ColumnsLT(s.C(agent.FieldLoad), s.C(agent.FieldCapacity)))
	}
}

// reserveCapacity takes one unit of an available agent's capacity; it
// reports false if the agent is not available or full.
func reserveCapacity(ctx context.Context, tx *ent.Tx, agentID uuid.UUID, now time.Time) (bool, error) {
	n, err := tx.Agent.Update().
		Where(agent.ID(agentID), agent.PresenceEQ(agent.PresenceAvailable), hasFreeCapacity()).
		AddLoad(1).
		SetLastAssignedAt(now).
		Save(ctx)
	if err != nil {
		return false, fmt.Errorf("reserve capacity of agent %s: %w", agentID, err)
	}
	return n == 1, nil
}

func (d *Dispatcher) assign(ctx context.Context) error {
	waiting, err := d.db.Conversation.Query().
		Where(
			conversation.StateEQ(conversation.StateQueued),
			conversation.QueueIDNotNil(),
			conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
		).
		Order(ent.Asc(conversation.FieldQueuedAt), ent.Asc(conversation.FieldID)).
		Limit(maxWorkPerPass).
		WithQueue().
		All(ctx)
	if err != nil {
		return fmt.Errorf("find waiting conversations: %w", err)
	}
	if len(waiting) == 0 {
		return nil
	}
	agents, err := d.db.Agent.Query().
		Where(agent.PresenceEQ(agent.PresenceAvailable), hasFreeCapacity()).
		WithQueues().
		All(ctx)
	if err != nil {
		return fmt.Errorf("find available agents: %w", err)
	}
	if len(agents) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(waiting))
	for i, c := range waiting {
		ids[i] = c.ID
	}
	refused, err := d.db.Offer.Query().
		Where(offer.ConversationIDIn(ids...), offer.StateIn(offer.StateDeclined, offer.StateExpired)).
		All(ctx)
	if err != nil {
		return fmt.Errorf("find refused offers: %w", err)
	}
	excluded := map[string]map[string]bool{}
	for _, o := range refused {
		c := o.ConversationID.String()
		if excluded[c] == nil {
			excluded[c] = map[string]bool{}
		}
		excluded[c][o.AgentID.String()] = true
	}
	work := make([]engine.Work, len(waiting))
	timeouts := map[string]time.Duration{}
	for i, c := range waiting {
		work[i] = engine.Work{
			ConversationID: c.ID.String(),
			QueueID:        c.QueueID.String(),
			QueuedAt:       *c.QueuedAt,
			Excluded:       excluded[c.ID.String()],
		}
		timeouts[c.ID.String()] = time.Duration(c.Edges.Queue.OfferTimeoutMs) * time.Millisecond
	}
	pool := make([]engine.Agent, len(agents))
	for i, a := range agents {
		pool[i] = engineAgent(a)
	}
	for _, dec := range engine.Assign(work, pool) {
		convID, agentID := uuid.MustParse(dec.ConversationID), uuid.MustParse(dec.AgentID)
		offered, err := d.offer(ctx, convID, agentID, timeouts[dec.ConversationID])
		if err != nil {
			return err
		}
		if offered {
			d.hub.Notify(events.AgentKey(dec.AgentID))
		}
	}
	return nil
}

func engineAgent(a *ent.Agent) engine.Agent {
	out := engine.Agent{ID: a.ID.String(), Capacity: a.Capacity, Load: a.Load, Queues: map[string]bool{}}
	if a.LastAssignedAt != nil {
		out.LastAssigned = *a.LastAssignedAt
	}
	for _, q := range a.Edges.Queues {
		out.Queues[q.ID.String()] = true
	}
	return out
}

// offer commits one proposal: it re-checks that the conversation still
// waits with no pending offer and that the agent still has capacity.
func (d *Dispatcher) offer(ctx context.Context, convID, agentID uuid.UUID, timeout time.Duration) (bool, error) {
	now := d.clk.Now()
	offered := false
	err := store.InTx(ctx, d.db, func(tx *ent.Tx) error {
		still, err := tx.Conversation.Query().Where(
			conversation.ID(convID),
			conversation.StateEQ(conversation.StateQueued),
			conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
		).Exist(ctx)
		if err != nil || !still {
			return err
		}
		ok, err := reserveCapacity(ctx, tx, agentID, now)
		if err != nil || !ok {
			return err
		}
		if err := tx.Offer.Create().
			SetConversationID(convID).
			SetAgentID(agentID).
			SetExpiresAt(now.Add(timeout)).
			Exec(ctx); err != nil {
			return fmt.Errorf("create offer: %w", err)
		}
		offered = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("offer conversation %s to agent %s: %w", convID, agentID, err)
	}
	return offered, nil
}
