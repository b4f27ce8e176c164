// Package routing serves RoutingService's routing methods (presence, work
// streams, offers, transfers, the agent directory and the supervisor's
// view; the admin's queues, rules and agents are package admin's) and runs
// the dispatcher that turns the engine's proposals into
// offers and keeps routing moving: offer expiry, lost agents, overflow and
// wrap-up.
package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// routing moving. The engine proposes from a snapshot; the proposals
// commit in short transactions (several to one) in which each is
// re-checked on its own with conditional updates, so a stale proposal
// (another replica or call was faster) is a no-op and the others stand.
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
	// returns the routing it saw is done. Passes on other replicas take
	// turns with it through store.Exclusive.
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

// Run makes a full pass at once and at every sweep interval (which bounds
// how late an offer expiry, a lost agent or an overflow is noticed), and on
// every kick in between an assigning pass (a kick means that work or
// capacity changed), until ctx ends. Kicks that come while a pass runs
// coalesce into one pass after it.
func (d *Dispatcher) Run(ctx context.Context, sweep time.Duration) {
	ticker := d.clk.NewTicker(sweep)
	defer ticker.Stop()
	steps := d.steps()
	for {
		if err := d.turn(ctx, steps); err != nil && ctx.Err() == nil {
			d.log.Error("routing pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			steps = []step{{"assign", d.assign}}
		case <-ticker.C():
			steps = d.steps()
		}
	}
}

// step is one part of a pass.
type step struct {
	name string
	run  func(context.Context) error
}

// steps are a full pass's steps, in order.
func (d *Dispatcher) steps() []step {
	return []step{
		{"renew leases", d.renewLeases}, {"lose dropped agents", d.loseDroppedAgents},
		{"close abandoned chats", d.closeAbandoned}, {"end wrap-ups", d.endWrapUps},
		{"expire offers", d.expireOffers}, {"overflow", d.overflow}, {"assign", d.assign},
	}
}

// Pass does one full round of routing work: it renews the leases of this
// replica's work streams, takes lost agents' work back, closes abandoned
// chats, ends lapsed wrap-ups, expires lapsed offers, moves chats that
// waited too long, then offers waiting work to agents. A step that fails
// (or panics) does not keep the others from running, and within a step a
// failing row (a conversation, an offer, an agent) is logged and retried
// with backoff while the other rows go on (see isolate). Pass returns the
// steps' failures.
func (d *Dispatcher) Pass(ctx context.Context) error {
	return d.turn(ctx, d.steps())
}

// turn runs steps as one pass, in turn with every other pass: this
// replica's (a pass asked for while another runs starts after it) and,
// through store.Exclusive, other replicas', so each pass reads what the one
// before it decided and two never propose the same offers.
func (d *Dispatcher) turn(ctx context.Context, steps []step) error {
	d.passing.Lock()
	defer d.passing.Unlock()
	return store.Exclusive(ctx, d.db, "routing-pass", func() error { return d.pass(ctx, steps) })
}

// pass runs steps; turn runs one pass at a time.
func (d *Dispatcher) pass(ctx context.Context, steps []step) error {
	if d.OnPass != nil {
		defer func(start time.Time) { d.OnPass(d.clk.Now().Sub(start)) }(d.clk.Now())
	}
	var errs []error
	for _, s := range steps {
		if err := recovered(func() error { return s.run(ctx) }); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// commit runs fn in a transaction and, once it commits, wakes the keys fn
// collected.
func (d *Dispatcher) commit(ctx context.Context, fn func(tx *ent.Tx, n *notes) error) error {
	var n notes
	err := store.InTx(ctx, d.db, func(ctx context.Context, tx *ent.Tx) error {
		n = notes{} // a retried transaction (PostgreSQL) starts over
		return fn(tx, &n)
	})
	if err != nil {
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

// waiting loads up to limit conversations waiting for an offer in the
// given queues, in the order they are served.
func (d *Dispatcher) waiting(ctx context.Context, queues []uuid.UUID, limit int) ([]*ent.Conversation, error) {
	rows, err := d.db.Conversation.Query().
		Where(
			conversation.StateEQ(conversation.StateQueued),
			conversation.QueueIDIn(queues...),
			conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
		).
		Order(ent.Desc(conversation.FieldPriority), ent.Asc(conversation.FieldQueuedAt), ent.Asc(conversation.FieldID)).
		Limit(limit).
		WithInteraction().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("find waiting conversations: %w", err)
	}
	return rows, nil
}

// assign offers waiting work to the agents who can take more. It looks
// only at the queues of those agents, and first only at the head of their
// line: as many waiting chats as the agents have free places, plus some,
// since a chat an agent refused or cannot take (channel, skills) lets the
// next one through. Only when that head leaves places free and more chats
// wait behind it does it look again, at the whole line (up to
// maxWorkPerPass), so nothing waits while an agent who could take it has
// room.
func (d *Dispatcher) assign(ctx context.Context) error {
	again, err := d.assignHead(ctx, false)
	if err != nil || !again {
		return err
	}
	_, err = d.assignHead(ctx, true)
	return err
}

// assignHead loads the agents who can take more work and the head of the
// line of their queues (the whole line, up to maxWorkPerPass, if whole),
// asks the engine whom to offer it to, and commits its proposals. It
// reports whether the line goes on beyond the head it loaded while the
// proposals left places free: then a look at the whole line may find work
// for them.
func (d *Dispatcher) assignHead(ctx context.Context, whole bool) (bool, error) {
	pool, err := loadPool(ctx, d.db.Client)
	if err != nil || len(pool) == 0 {
		return false, err
	}
	queues, err := d.db.Queue.Query().All(ctx)
	if err != nil {
		return false, fmt.Errorf("load queues: %w", err)
	}
	byID := map[uuid.UUID]*ent.Queue{}
	engineQueues := map[string]engine.Queue{}
	for _, q := range queues {
		byID[q.ID] = q
		engineQueues[q.ID.String()] = engineQueue(q)
	}
	var served []uuid.UUID
	free := 0
	for _, a := range pool {
		free += a.Capacity - a.Load
		for q := range a.Queues {
			id, err := uuid.Parse(q)
			if err != nil {
				return false, fmt.Errorf("queue id %q of agent %s: %w", q, a.ID, err)
			}
			served = append(served, id)
		}
	}
	slices.SortFunc(served, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	served = slices.Compact(served)
	if len(served) == 0 {
		return false, nil // the agents with room are in no queue
	}
	limit := maxWorkPerPass
	if !whole {
		limit = min(maxWorkPerPass, 2*free+headSlack)
	}
	waiting, err := d.waiting(ctx, served, limit)
	if err != nil || len(waiting) == 0 {
		return false, err
	}
	refused, err := refusals(ctx, d.db.Client, waiting)
	if err != nil {
		return false, err
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
	decisions := engine.Assign(engineQueues, work, pool, now)
	proposals := make([]proposal, 0, len(decisions))
	for _, dec := range decisions {
		c := convs[dec.ConversationID]
		agentID := uuid.MustParse(dec.AgentID)
		seen := 0
		for _, o := range refused[c.ID] {
			if o.AgentID == agentID {
				seen++
			}
		}
		proposals = append(proposals, proposal{conv: c, queue: byID[*c.QueueID], agentID: agentID, refusedSeen: seen})
	}
	d.propose(ctx, proposals)
	return len(waiting) == limit && limit < maxWorkPerPass && len(decisions) < free, nil
}

// headSlack is how many waiting chats beyond twice the free places a pass
// looks at first.
const headSlack = 32

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

// maxOffersPerCommit bounds how many proposals commit in one transaction.
const maxOffersPerCommit = 64

// proposal is an engine decision ready to commit: offer conv, waiting in
// queue, to the agent. refusedSeen is how many of the agent's declined or
// lapsed offers of conv the snapshot held: a pass that read the chat
// before the agent declined it must not offer it straight back.
type proposal struct {
	conv        *ent.Conversation
	queue       *ent.Queue
	agentID     uuid.UUID
	refusedSeen int
}

// key names the proposal's row for isolate.
func (p proposal) key() string { return "conversation " + p.conv.ID.String() }

// propose commits proposals, up to maxOffersPerCommit in one transaction.
// Each is re-checked on its own inside it (offerAll), so one that lost a
// race (the chat was taken, the agent refused it, filled up or left) is
// skipped and the others commit. If a transaction fails, its proposals are
// committed again one by one, so that a broken row fails alone (isolate).
// Rows backing off after a failure are left out.
func (d *Dispatcher) propose(ctx context.Context, proposals []proposal) {
	now := d.clk.Now()
	proposals = slices.DeleteFunc(proposals, func(p proposal) bool { return d.failures.waiting(p.key(), now) })
	for chunk := range slices.Chunk(proposals, maxOffersPerCommit) {
		err := recovered(func() error {
			return d.commit(ctx, func(tx *ent.Tx, n *notes) error { return d.offerAll(ctx, tx, chunk, n) })
		})
		if err == nil {
			for _, p := range chunk {
				d.failures.succeed(p.key())
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		for _, p := range chunk {
			_ = d.isolate(ctx, p.key(), func() error {
				return d.commit(ctx, func(tx *ent.Tx, n *notes) error { return d.offerAll(ctx, tx, []proposal{p}, n) })
			})
		}
	}
}

// offerAll commits proposals inside tx, each on its own terms: it re-checks
// that the conversation still waits in the queue with no pending offer,
// that the agent has not refused it since the snapshot, and that the agent
// still has room on its channel (counting the proposals before it); then it
// offers it, or assigns it at once in an auto-accept queue. A proposal that
// fails a re-check changes nothing and is no error: the next pass decides
// again. The re-checks read every proposal's rows at once, and the offers
// are inserted together.
func (d *Dispatcher) offerAll(ctx context.Context, tx *ent.Tx, proposals []proposal, n *notes) error {
	now := d.clk.Now()
	var convIDs, agentIDs []uuid.UUID
	for _, p := range proposals {
		convIDs = append(convIDs, p.conv.ID)
		agentIDs = append(agentIDs, p.agentID)
	}
	still, err := tx.Conversation.Query().Where(
		conversation.IDIn(convIDs...),
		conversation.StateEQ(conversation.StateQueued),
		conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
	).Select(conversation.FieldID, conversation.FieldQueueID).All(ctx)
	if err != nil {
		return fmt.Errorf("check that the proposed conversations still wait: %w", err)
	}
	waitsIn := map[uuid.UUID]uuid.UUID{}
	for _, c := range still {
		if c.QueueID != nil {
			waitsIn[c.ID] = *c.QueueID
		}
	}
	refusedRows, err := tx.Offer.Query().Where(
		offer.ConversationIDIn(convIDs...), offer.StateIn(offer.StateDeclined, offer.StateExpired),
	).Select(offer.FieldConversationID, offer.FieldAgentID).All(ctx)
	if err != nil {
		return fmt.Errorf("count refusals: %w", err)
	}
	type pair struct{ conv, agent uuid.UUID }
	refused := map[pair]int{}
	for _, o := range refusedRows {
		refused[pair{o.ConversationID, o.AgentID}]++
	}
	agentRows, err := tx.Agent.Query().Where(agent.IDIn(agentIDs...)).All(ctx)
	if err != nil {
		return fmt.Errorf("load the proposed agents: %w", err)
	}
	agents := map[uuid.UUID]*ent.Agent{}
	var limited []uuid.UUID
	for _, a := range agentRows {
		agents[a.ID] = a
		if len(a.ChannelCapacity) > 0 {
			limited = append(limited, a.ID)
		}
	}
	loads := map[uuid.UUID]map[string]int{}
	if len(limited) > 0 {
		if loads, err = channelLoads(ctx, tx.Client(), limited); err != nil {
			return err
		}
	}
	var creates []*ent.OfferCreate
	var assign []proposal
	for _, p := range proposals {
		c, q, a := p.conv, p.queue, agents[p.agentID]
		channel := string(c.Edges.Interaction.Channel)
		switch {
		case waitsIn[c.ID] != q.ID:
			continue // taken, closed or moved since the snapshot
		case refused[pair{c.ID, p.agentID}] > p.refusedSeen:
			continue // refused since the snapshot: the next pass decides with it
		case a == nil:
			continue // the agent was deleted
		}
		ok, err := reserve(ctx, tx, a, loads[a.ID], channel, now)
		if err != nil {
			return err
		}
		if !ok {
			continue // the agent filled up or left meanwhile
		}
		a.Load++
		if loads[a.ID] == nil {
			loads[a.ID] = map[string]int{}
		}
		loads[a.ID][channel]++
		create := tx.Offer.Create().
			SetConversationID(c.ID).
			SetAgentID(a.ID).
			SetExpiresAt(now.Add(time.Duration(q.OfferTimeoutMs) * time.Millisecond))
		if q.AutoAccept {
			create.SetState(offer.StateAccepted).SetDecidedAt(now)
			assign = append(assign, p)
		}
		creates = append(creates, create)
		n.agent(a.ID)
	}
	if len(creates) == 0 {
		return nil
	}
	if err := tx.Offer.CreateBulk(creates...).Exec(ctx); err != nil {
		return fmt.Errorf("create offers: %w", err)
	}
	for _, p := range assign {
		if err := assignTo(ctx, tx, p.conv.ID, agents[p.agentID], nil, now, n); err != nil {
			return fmt.Errorf("assign conversation %s to agent %s: %w", p.conv.ID, p.agentID, err)
		}
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
