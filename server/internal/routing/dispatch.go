// Package routing serves RoutingService's routing methods (presence, work
// streams, offers, transfers, the agent directory and the supervisor's
// view; the admin's queues, rules and agents are package admin's) and runs
// the dispatcher that turns the engine's proposals into
// offers and keeps routing moving: offer expiry, lost agents, overflow and
// wrap-up.
package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/routing/engine"
	"github.com/parleyhq/parley/server/internal/store"
)

// DefaultOfferTimeout applies to queues created without one.
const DefaultOfferTimeout = 30 * time.Second

// maxWorkPerPass bounds how many waiting conversations one pass considers:
// the highest-priority, longest-waiting ones.
const maxWorkPerPass = 1000

// Dispatcher offers waiting conversations to available agents and keeps
// routing moving. The engine proposes from a snapshot; each proposal
// commits in its own short transaction that re-checks it with conditional
// updates, so a stale proposal (another replica was faster) is a no-op.
// Nothing authoritative lives here: after a restart, the store holds every
// waiting chat, offer and lease.
type Dispatcher struct {
	db      *store.DB
	hub     *events.Hub
	clk     clock.Clock
	log     *slog.Logger
	kick    chan struct{}
	streams *streamRegistry
	// failures isolates failing rows: they back off, the others go on.
	failures *failures
	// passing makes this replica's passes take turns: a pass asked for
	// (App.Dispatch) while a kicked one runs starts after it, so when it
	// returns the routing it saw is done. Passes on other replicas still
	// run beside it, safely (conditional updates).
	passing sync.Mutex
	// OnPass, if set before Run, is told how long each pass took (on the
	// dispatcher's clock), for metrics.
	OnPass func(time.Duration)
}

// NewDispatcher returns a dispatcher; start it with Run.
func NewDispatcher(db *store.DB, hub *events.Hub, clk clock.Clock, log *slog.Logger) *Dispatcher {
	return &Dispatcher{db: db, hub: hub, clk: clk, log: log, kick: make(chan struct{}, 1), streams: newStreamRegistry(), failures: newFailures()}
}

// Kick asks for a pass soon. It never blocks; kicks coalesce.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run makes passes on every kick and every sweep interval (which bounds how
// late an offer expiry, a lost agent or an overflow is noticed) until ctx
// ends.
func (d *Dispatcher) Run(ctx context.Context, sweep time.Duration) {
	ticker := d.clk.NewTicker(sweep)
	defer ticker.Stop()
	for {
		if err := d.Pass(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("routing pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-ticker.C():
		}
	}
}

// Pass does one round of routing work: it renews the leases of this
// replica's work streams, takes lost agents' work back, closes abandoned
// chats, ends lapsed wrap-ups, expires lapsed offers, moves chats that
// waited too long, then offers waiting work to agents. A step that fails
// (or panics) does not keep the others from running, and within a step a
// failing row (a conversation, an offer, an agent) is logged and retried
// with backoff while the other rows go on (see isolate). Pass returns the
// steps' failures.
func (d *Dispatcher) Pass(ctx context.Context) error {
	d.passing.Lock()
	defer d.passing.Unlock()
	// Replicas take turns too: each pass reads what the one before it
	// decided, so two never propose the same offers.
	return store.Exclusive(ctx, d.db, "routing-pass", func() error { return d.pass(ctx) })
}

// pass is one routing pass; Pass runs one at a time.
func (d *Dispatcher) pass(ctx context.Context) error {
	if d.OnPass != nil {
		defer func(start time.Time) { d.OnPass(d.clk.Now().Sub(start)) }(d.clk.Now())
	}
	var errs []error
	for _, step := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"renew leases", d.renewLeases}, {"lose dropped agents", d.loseDroppedAgents},
		{"close abandoned chats", d.closeAbandoned}, {"end wrap-ups", d.endWrapUps},
		{"expire offers", d.expireOffers}, {"overflow", d.overflow}, {"assign", d.assign},
	} {
		if err := recovered(func() error { return step.run(ctx) }); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
}

// commit runs fn in a transaction and, once it commits, wakes the keys fn
// collected.
func (d *Dispatcher) commit(ctx context.Context, fn func(tx *ent.Tx, n *notes) error) error {
	var n notes
	if err := store.InTx(ctx, d.db, func(ctx context.Context, tx *ent.Tx) error { return fn(tx, &n) }); err != nil {
		return err
	}
	d.hub.Notify(n.keys...)
	return nil
}

func (d *Dispatcher) expireOffers(ctx context.Context) error {
	now := d.clk.Now()
	lapsed, err := d.db.Offer.Query().
		Where(offer.StateEQ(offer.StatePending), offer.ExpiresAtLTE(now)).
		WithConversation(func(q *ent.ConversationQuery) { q.WithQueue() }).
		All(ctx)
	if err != nil {
		return fmt.Errorf("find lapsed offers: %w", err)
	}
	for _, o := range lapsed {
		_ = d.isolate(ctx, "expire offer "+o.ID.String(), func() error { return d.expireOffer(ctx, o, now) })
	}
	return nil
}

// expireOffer closes a lapsed offer and moves its agent to the queue's
// timeout presence.
func (d *Dispatcher) expireOffer(ctx context.Context, o *ent.Offer, now time.Time) error {
	err := d.commit(ctx, func(tx *ent.Tx, n *notes) error {
		closed, err := closeOffer(ctx, tx, o, offer.StateExpired, now, n)
		if err != nil || !closed {
			return err
		}
		// The agent let it lapse: they move to the queue's timeout
		// presence, so nothing more rings unanswered.
		presence := agent.PresenceAway
		if c := o.Edges.Conversation; c != nil && c.Edges.Queue != nil {
			presence = agent.Presence(c.Edges.Queue.TimeoutPresence)
		}
		if presence == agent.PresenceAvailable {
			return nil
		}
		return applyPresence(ctx, tx, o.AgentID, presence, "", now, n)
	})
	if err != nil {
		return fmt.Errorf("expire offer %s: %w", o.ID, err)
	}
	return nil
}

// closeOffer moves a pending offer to a final state and gives its capacity
// back. It reports false if the offer was no longer pending.
func closeOffer(ctx context.Context, tx *ent.Tx, o *ent.Offer, state offer.State, now time.Time, n *notes) (bool, error) {
	count, err := tx.Offer.Update().
		Where(offer.ID(o.ID), offer.StateEQ(offer.StatePending)).
		SetState(state).
		SetDecidedAt(now).
		Save(ctx)
	if err != nil || count == 0 {
		return false, err
	}
	if err := ReleaseCapacity(ctx, tx, o.AgentID); err != nil {
		return false, err
	}
	n.agent(o.AgentID)
	if o.TransferFromAgentID != nil {
		n.agent(*o.TransferFromAgentID)
	}
	return true, nil
}

// withdrawOffers withdraws a conversation's pending offers, noting the
// agents to wake.
func withdrawOffers(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, now time.Time, n *notes) error {
	pending, err := tx.Offer.Query().Where(offer.ConversationID(conversationID), offer.StateEQ(offer.StatePending)).All(ctx)
	if err != nil {
		return fmt.Errorf("load pending offers of %s: %w", conversationID, err)
	}
	for _, o := range pending {
		if _, err := closeOffer(ctx, tx, o, offer.StateWithdrawn, now, n); err != nil {
			return err
		}
	}
	return nil
}

// waiting loads the conversations waiting for an offer, in the order they
// are served.
func (d *Dispatcher) waiting(ctx context.Context) ([]*ent.Conversation, error) {
	rows, err := d.db.Conversation.Query().
		Where(
			conversation.StateEQ(conversation.StateQueued),
			conversation.QueueIDNotNil(),
			conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
		).
		Order(ent.Desc(conversation.FieldPriority), ent.Asc(conversation.FieldQueuedAt), ent.Asc(conversation.FieldID)).
		Limit(maxWorkPerPass).
		WithInteraction().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("find waiting conversations: %w", err)
	}
	return rows, nil
}

func (d *Dispatcher) assign(ctx context.Context) error {
	waiting, err := d.waiting(ctx)
	if err != nil || len(waiting) == 0 {
		return err
	}
	pool, err := loadPool(ctx, d.db.Client)
	if err != nil || len(pool) == 0 {
		return err
	}
	queues, err := d.db.Queue.Query().All(ctx)
	if err != nil {
		return fmt.Errorf("load queues: %w", err)
	}
	byID := map[uuid.UUID]*ent.Queue{}
	engineQueues := map[string]engine.Queue{}
	for _, q := range queues {
		byID[q.ID] = q
		engineQueues[q.ID.String()] = engineQueue(q)
	}
	refused, err := refusals(ctx, d.db.Client, waiting)
	if err != nil {
		return err
	}
	now := d.clk.Now()
	work := make([]engine.Work, 0, len(waiting))
	convs := map[string]*ent.Conversation{}
	for _, c := range waiting {
		_ = d.isolate(ctx, "conversation "+c.ID.String(), func() error {
			w, err := workOf(c, byID, refused[c.ID], now)
			if err != nil {
				return err
			}
			work = append(work, w)
			convs[c.ID.String()] = c
			return nil
		})
	}
	for _, dec := range engine.Assign(engineQueues, work, pool, now) {
		c := convs[dec.ConversationID]
		agentID := uuid.MustParse(dec.AgentID)
		seen := 0
		for _, o := range refused[c.ID] {
			if o.AgentID == agentID {
				seen++
			}
		}
		_ = d.isolate(ctx, "conversation "+c.ID.String(), func() error {
			return d.offer(ctx, c, byID[*c.QueueID], agentID, seen)
		})
	}
	return nil
}

// workOf is a waiting conversation as the engine sees it. An agent who
// refused it rests from it for the queue's offer timeout, so others who
// come a moment later get it first.
func workOf(c *ent.Conversation, queues map[uuid.UUID]*ent.Queue, refused []*ent.Offer, now time.Time) (engine.Work, error) {
	if c.Edges.Interaction == nil || c.QueueID == nil || c.QueuedAt == nil || queues[*c.QueueID] == nil {
		return engine.Work{}, fmt.Errorf("conversation %s waits without its interaction, queue or queue time: %w", c.ID, errRowBroken)
	}
	w := engine.Work{
		ConversationID: c.ID.String(),
		QueueID:        c.QueueID.String(),
		Channel:        string(c.Edges.Interaction.Channel),
		Priority:       c.Priority,
		QueuedAt:       *c.QueuedAt,
		Resting:        map[string]bool{},
		Refused:        map[string]bool{},
	}
	rest := time.Duration(queues[*c.QueueID].OfferTimeoutMs) * time.Millisecond
	for _, o := range refused {
		if o.DecidedAt != nil && now.Sub(*o.DecidedAt) < rest {
			w.Resting[o.AgentID.String()] = true
		} else {
			w.Refused[o.AgentID.String()] = true
		}
	}
	return w, nil
}

// refusals maps each waiting conversation to its declined and lapsed offers.
func refusals(ctx context.Context, db *ent.Client, waiting []*ent.Conversation) (map[uuid.UUID][]*ent.Offer, error) {
	ids := make([]uuid.UUID, len(waiting))
	for i, c := range waiting {
		ids[i] = c.ID
	}
	rows, err := db.Offer.Query().
		Where(offer.ConversationIDIn(ids...), offer.StateIn(offer.StateDeclined, offer.StateExpired)).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("find refused offers: %w", err)
	}
	out := map[uuid.UUID][]*ent.Offer{}
	for _, o := range rows {
		out[o.ConversationID] = append(out[o.ConversationID], o)
	}
	return out, nil
}

// offer commits one proposal: it re-checks that the conversation still
// waits with no pending offer, that the agent has not refused it since the
// snapshot the proposal came from (refusedSeen is how many of the agent's
// declined or lapsed offers of it the snapshot held: a pass that read the
// chat before the agent declined it must not offer it straight back), and
// that the agent still has capacity on its channel; then it offers it, or
// assigns it at once in an auto-accept queue.
func (d *Dispatcher) offer(ctx context.Context, c *ent.Conversation, q *ent.Queue, agentID uuid.UUID, refusedSeen int) error {
	now := d.clk.Now()
	channel := string(c.Edges.Interaction.Channel)
	err := d.commit(ctx, func(tx *ent.Tx, n *notes) error {
		still, err := tx.Conversation.Query().Where(
			conversation.ID(c.ID),
			conversation.StateEQ(conversation.StateQueued),
			conversation.QueueID(q.ID),
			conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
		).Exist(ctx)
		if err != nil || !still {
			return err
		}
		refused, err := tx.Offer.Query().Where(
			offer.ConversationID(c.ID), offer.AgentID(agentID), offer.StateIn(offer.StateDeclined, offer.StateExpired),
		).Count(ctx)
		if err != nil {
			return fmt.Errorf("count refusals: %w", err)
		}
		if refused > refusedSeen {
			return nil // refused since the snapshot: the next pass decides with it
		}
		if err := reserveCapacity(ctx, tx, agentID, channel, now); err != nil {
			return err
		}
		create := tx.Offer.Create().
			SetConversationID(c.ID).
			SetAgentID(agentID).
			SetExpiresAt(now.Add(time.Duration(q.OfferTimeoutMs) * time.Millisecond))
		if q.AutoAccept {
			create.SetState(offer.StateAccepted).SetDecidedAt(now)
		}
		if err := create.Exec(ctx); err != nil {
			return fmt.Errorf("create offer: %w", err)
		}
		n.agent(agentID)
		if q.AutoAccept {
			me, err := tx.Agent.Get(ctx, agentID)
			if err != nil {
				return fmt.Errorf("load agent: %w", err)
			}
			return assignTo(ctx, tx, c.ID, me, nil, now, n)
		}
		return nil
	})
	if errors.Is(err, errUnavailable) {
		return nil // the agent filled up or left meanwhile: a later pass retries
	}
	if err != nil {
		return fmt.Errorf("offer conversation %s to agent %s: %w", c.ID, agentID, err)
	}
	return nil
}

// engineQueue converts a queue's routing policy for the engine.
func engineQueue(q *ent.Queue) engine.Queue {
	out := engine.Queue{RequiredSkills: q.RequiredSkills}
	if q.Strategy == queue.StrategyLeastRecentlyAssigned {
		out.Strategy = engine.LeastRecentlyAssigned
	}
	return out
}
