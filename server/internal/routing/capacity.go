package routing

import (
	"context"
	"fmt"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/routing/engine"
)

// Channels are the channels an agent's presence and capacity apply to.
var Channels = []string{
	string(interaction.ChannelWebPortal), string(interaction.ChannelMessenger), string(interaction.ChannelMobile),
}

// notes collects the hub keys a transaction's changes wake, to notify once
// it commits.
type notes struct{ keys []string }

func (n *notes) agent(id uuid.UUID) {
	n.keys = append(n.keys, events.AgentKey(id.String()), events.RoutingKey)
}

func (n *notes) conversation(id uuid.UUID) {
	n.keys = append(n.keys, events.ConversationKey(id.String()))
}

func (n *notes) queue(id *uuid.UUID) {
	if id != nil {
		n.keys = append(n.keys, events.QueueKey(id.String()), events.RoutingKey)
	}
}

// presenceOn is an agent's presence on one channel.
func presenceOn(a *ent.Agent, channel string) agent.Presence {
	if p, ok := a.ChannelPresence[channel]; ok {
		return agent.Presence(p)
	}
	return a.Presence
}

// errUnavailable reports that an agent could not take more work: not
// available on the channel, or no free capacity there. It rolls back the
// transaction that met it.
var errUnavailable = fmt.Errorf("agent is not available or has no free capacity")

// hasFreeCapacity matches agents whose load is below their capacity.
func hasFreeCapacity() predicate.Agent {
	return func(s *entsql.Selector) {
		s.Where(entsql.ColumnsLT(s.C(agent.FieldLoad), s.C(agent.FieldCapacity)))
	}
}

// reserveCapacity takes one unit of an agent's capacity for work on
// channel, or fails with errUnavailable (and the transaction must roll
// back).
func reserveCapacity(ctx context.Context, tx *ent.Tx, agentID uuid.UUID, channel string, now time.Time) error {
	a, err := tx.Agent.Get(ctx, agentID)
	if err != nil {
		return fmt.Errorf("load agent %s: %w", agentID, err)
	}
	var loads map[uuid.UUID]map[string]int
	if _, limited := a.ChannelCapacity[channel]; limited && presenceOn(a, channel) == agent.PresenceAvailable {
		if loads, err = channelLoads(ctx, tx.Client(), []uuid.UUID{agentID}); err != nil {
			return err
		}
	}
	ok, err := reserve(ctx, tx, a, loads[agentID], channel, now)
	if err != nil {
		return err
	}
	if !ok {
		return errUnavailable
	}
	return nil
}

// reserve takes one unit of agent a's capacity for work on channel and
// reports true, or reports false and changes nothing: a is not available
// on the channel or has no room there. a and channelLoad (its work per
// channel, see room) are as read in tx. It checks the channel's presence
// and capacity first, then takes the unit with a conditional update that
// keeps the universal capacity, so a false answer needs no rollback and
// other work of the same transaction stands; on PostgreSQL a concurrent
// change of the agent's row since tx read it makes the (serializable)
// transaction retry.
func reserve(ctx context.Context, tx *ent.Tx, a *ent.Agent, channelLoad map[string]int, channel string, now time.Time) (bool, error) {
	if room(a, channelLoad, channel) <= 0 {
		return false, nil
	}
	n, err := tx.Agent.Update().
		Where(agent.ID(a.ID), hasFreeCapacity()).
		AddLoad(1).
		SetLastAssignedAt(now).
		Save(ctx)
	if err != nil {
		return false, fmt.Errorf("reserve capacity of agent %s: %w", a.ID, err)
	}
	return n > 0, nil
}

// room is how many more conversations on channel agent a can be offered
// now, given its work per channel (channelLoads; only read when the
// channel has a limit): 0 unless it is available on the channel, never
// negative. reserveCapacity accepts work exactly when room is above 0, and
// ListAgentDirectory shows it as free capacity. For channel "" it is the
// agent's overall presence and universal capacity alone.
func room(a *ent.Agent, channelLoad map[string]int, channel string) int {
	if presenceOn(a, channel) != agent.PresenceAvailable {
		return 0
	}
	e := engine.Agent{Capacity: a.Capacity, Load: a.Load, ChannelCapacity: a.ChannelCapacity, ChannelLoad: channelLoad}
	return max(0, e.Free(channel))
}

// ReleaseCapacity gives one unit of an agent's capacity back.
func ReleaseCapacity(ctx context.Context, tx *ent.Tx, agentID uuid.UUID) error {
	if _, err := tx.Agent.Update().Where(agent.ID(agentID), agent.LoadGT(0)).AddLoad(-1).Save(ctx); err != nil {
		return fmt.Errorf("release capacity of agent %s: %w", agentID, err)
	}
	return nil
}

// channelLoads counts each agent's work per channel: held conversations,
// conversations in wrap-up and pending offers.
func channelLoads(ctx context.Context, db *ent.Client, agentIDs []uuid.UUID) (map[uuid.UUID]map[string]int, error) {
	out := map[uuid.UUID]map[string]int{}
	add := func(a uuid.UUID, channel string) {
		if out[a] == nil {
			out[a] = map[string]int{}
		}
		out[a][channel]++
	}
	held, err := db.Conversation.Query().
		Where(conversation.AgentIDIn(agentIDs...), conversation.Or(
			conversation.StateEQ(conversation.StateAssigned),
			conversation.WrapUpUntilNotNil(),
		)).
		WithInteraction().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("count held conversations: %w", err)
	}
	for _, c := range held {
		add(*c.AgentID, string(c.Edges.Interaction.Channel))
	}
	offers, err := db.Offer.Query().
		Where(offer.AgentIDIn(agentIDs...), offer.StateEQ(offer.StatePending)).
		WithConversation(func(q *ent.ConversationQuery) { q.WithInteraction() }).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("count pending offers: %w", err)
	}
	for _, o := range offers {
		add(o.AgentID, string(o.Edges.Conversation.Edges.Interaction.Channel))
	}
	return out, nil
}

// loadPool returns the agents who could take work now (available on some
// channel, with free capacity) as the engine sees them.
func loadPool(ctx context.Context, db *ent.Client) ([]engine.Agent, error) {
	agents, err := db.Agent.Query().Where(hasFreeCapacity()).WithQueues().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("find available agents: %w", err)
	}
	var ids []uuid.UUID
	var pool []engine.Agent
	for _, a := range agents {
		ea := engineAgent(a)
		if len(ea.AvailableOn) == 0 {
			continue
		}
		ids = append(ids, a.ID)
		pool = append(pool, ea)
	}
	// Work per channel matters only where a channel has its own limit.
	var limited []uuid.UUID
	for i, a := range pool {
		if len(a.ChannelCapacity) > 0 {
			limited = append(limited, ids[i])
		}
	}
	if len(limited) == 0 {
		return pool, nil
	}
	loads, err := channelLoads(ctx, db, limited)
	if err != nil {
		return nil, err
	}
	for i := range pool {
		pool[i].ChannelLoad = loads[ids[i]]
	}
	return pool, nil
}

// engineAgent converts an agent (with its queues) for the engine, without
// its per-channel load.
func engineAgent(a *ent.Agent) engine.Agent {
	out := engine.Agent{
		ID: a.ID.String(), Capacity: a.Capacity, Load: a.Load,
		ChannelCapacity: a.ChannelCapacity, AvailableOn: map[string]bool{}, Skills: map[string]bool{}, Queues: map[string]bool{},
	}
	if a.LastAssignedAt != nil {
		out.LastAssigned = *a.LastAssignedAt
	}
	for _, c := range Channels {
		if presenceOn(a, c) == agent.PresenceAvailable {
			out.AvailableOn[c] = true
		}
	}
	for _, s := range a.Skills {
		out.Skills[s] = true
	}
	for _, q := range a.Edges.Queues {
		out.Queues[q.ID.String()] = true
	}
	return out
}
