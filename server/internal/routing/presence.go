package routing

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/store"
)

// streamRegistry counts this replica's open work streams per agent. The
// dispatcher renews those agents' leases in the store; an agent whose
// lease lapses (no replica renews it) has lost its stream.
type streamRegistry struct {
	mu   sync.Mutex
	open map[uuid.UUID]int
}

func newStreamRegistry() *streamRegistry {
	return &streamRegistry{open: map[uuid.UUID]int{}}
}

func (r *streamRegistry) add(id uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open[id]++
}

func (r *streamRegistry) remove(id uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open[id]--; r.open[id] <= 0 {
		delete(r.open, id)
	}
}

func (r *streamRegistry) ids() []uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Keys(r.open))
}

// grace returns how long a lost work stream may stay away.
func grace(ctx context.Context, db *ent.Client) (time.Duration, error) {
	set, err := db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return 0, fmt.Errorf("load settings: %w", err)
	}
	return time.Duration(set.AgentGraceSeconds) * time.Second, nil
}

// StreamOpened records that an agent's work stream opened on this replica
// and leases it at once, so a drop before the next pass is noticed too.
func (d *Dispatcher) StreamOpened(ctx context.Context, agentID uuid.UUID) error {
	d.streams.add(agentID)
	g, err := grace(ctx, d.db.Client)
	if err != nil {
		return err
	}
	err = store.InTx(ctx, d.db, func(ctx context.Context, tx *ent.Tx) error {
		return tx.Agent.UpdateOneID(agentID).SetStreamLeaseUntil(d.clk.Now().Add(g)).Exec(ctx)
	})
	if err != nil {
		return fmt.Errorf("lease work stream of %s: %w", agentID, err)
	}
	d.Kick() // an agent connected: waiting work may be theirs
	return nil
}

// StreamClosed records that an agent's work stream ended. Its lease runs
// out after the grace period unless the agent comes back.
func (d *Dispatcher) StreamClosed(agentID uuid.UUID) {
	d.streams.remove(agentID)
}

func (d *Dispatcher) renewLeases(ctx context.Context) error {
	ids := d.streams.ids()
	if len(ids) == 0 {
		return nil
	}
	g, err := grace(ctx, d.db.Client)
	if err != nil {
		return err
	}
	err = store.InTx(ctx, d.db, func(ctx context.Context, tx *ent.Tx) error {
		return tx.Agent.Update().Where(agent.IDIn(ids...)).SetStreamLeaseUntil(d.clk.Now().Add(g)).Exec(ctx)
	})
	if err != nil {
		return fmt.Errorf("renew work stream leases: %w", err)
	}
	return nil
}

// loseDroppedAgents takes back the work of agents whose stream lease
// lapsed: they go offline, their offers go to others and, per queue
// policy, their chats are re-queued.
func (d *Dispatcher) loseDroppedAgents(ctx context.Context) error {
	now := d.clk.Now()
	lost, err := d.db.Agent.Query().Where(agent.StreamLeaseUntilLT(now)).IDs(ctx)
	if err != nil {
		return fmt.Errorf("find lost agents: %w", err)
	}
	for _, id := range lost {
		_ = d.isolate(ctx, "agent "+id.String(), func() error { return d.loseAgent(ctx, id, now) })
	}
	return nil
}

// loseAgent takes back the work of an agent whose stream lease lapsed.
func (d *Dispatcher) loseAgent(ctx context.Context, id uuid.UUID, now time.Time) error {
	err := d.commit(ctx, func(tx *ent.Tx, n *notes) error {
		// Re-check under the write lock: the agent may just have come back.
		count, err := tx.Agent.Update().Where(agent.ID(id), agent.StreamLeaseUntilLT(now)).ClearStreamLeaseUntil().Save(ctx)
		if err != nil || count == 0 {
			return err
		}
		return applyPresence(ctx, tx, id, agent.PresenceOffline, "", now, n)
	})
	if err != nil {
		return fmt.Errorf("take back the work of lost agent %s: %w", id, err)
	}
	return nil
}

// applyPresence sets an agent's presence on channel ("" for every channel),
// then withdraws their pending offers on channels where they no longer
// take work (so others get them) and, once they are offline everywhere,
// re-queues their chats per each queue's agent loss policy.
func applyPresence(ctx context.Context, tx *ent.Tx, agentID uuid.UUID, presence agent.Presence, channel string, now time.Time, n *notes) error {
	a, err := tx.Agent.Get(ctx, agentID)
	if err != nil {
		return fmt.Errorf("load agent %s: %w", agentID, err)
	}
	perChannel := map[string]string{}
	if channel == "" {
		a.Presence = presence
	} else {
		perChannel = maps.Clone(a.ChannelPresence)
		if presence == a.Presence {
			delete(perChannel, channel)
		} else {
			perChannel[channel] = string(presence)
		}
	}
	a.ChannelPresence = perChannel
	if err := tx.Agent.UpdateOneID(agentID).SetPresence(a.Presence).SetChannelPresence(perChannel).Exec(ctx); err != nil {
		return fmt.Errorf("set presence of %s: %w", agentID, err)
	}
	n.agent(agentID)
	pending, err := tx.Offer.Query().
		Where(offer.AgentID(agentID), offer.StateEQ(offer.StatePending)).
		WithConversation(func(q *ent.ConversationQuery) { q.WithInteraction() }).
		All(ctx)
	if err != nil {
		return fmt.Errorf("load pending offers of %s: %w", agentID, err)
	}
	for _, o := range pending {
		if presenceOn(a, string(o.Edges.Conversation.Edges.Interaction.Channel)) == agent.PresenceAvailable {
			continue
		}
		if _, err := closeOffer(ctx, tx, o, offer.StateWithdrawn, now, n); err != nil {
			return err
		}
	}
	for _, c := range Channels {
		if presenceOn(a, c) != agent.PresenceOffline {
			return nil
		}
	}
	return requeueHeld(ctx, tx, a, now, n)
}

// requeueHeld puts back the chats a lost agent holds in queues whose
// policy is to re-queue. A re-queued chat keeps its place by when it
// started, so it goes ahead of newer chats of its priority.
func requeueHeld(ctx context.Context, tx *ent.Tx, a *ent.Agent, now time.Time, n *notes) error {
	held, err := tx.Conversation.Query().
		Where(conversation.AgentID(a.ID), conversation.StateEQ(conversation.StateAssigned)).
		WithQueue().
		All(ctx)
	if err != nil {
		return fmt.Errorf("load conversations of %s: %w", a.ID, err)
	}
	for _, c := range held {
		q := c.Edges.Queue
		if q == nil || q.AgentLossPolicy == queue.AgentLossPolicyKeep {
			continue
		}
		if err := withdrawOffers(ctx, tx, c.ID, now, n); err != nil { // a pending transfer
			return err
		}
		if err := ReleaseCapacity(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := tx.Conversation.UpdateOneID(c.ID).
			SetState(conversation.StateQueued).
			ClearAgentID().
			SetQueuedAt(c.CreatedAt).
			SetQueueEnteredAt(now).
			SetPriority(q.Priority).
			Exec(ctx); err != nil {
			return fmt.Errorf("re-queue conversation %s: %w", c.ID, err)
		}
		from := chatlog.AgentSender(a)
		if _, err := chatlog.Append(ctx, tx, c.ID, now,
			chatlog.Entry{Sender: from, Payload: &parleyv1.ParticipantLeft{Participant: from.Participant()}},
			chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.ConversationQueued{QueueId: q.ID.String(), QueueName: q.DisplayName, Reason: "agent_lost"}},
			*chatlog.ControllerChange(conversation.StateAssigned, conversation.StateQueued, chatlog.ReasonAgentLost),
		); err != nil {
			return err
		}
		n.conversation(c.ID)
		n.queue(&q.ID)
	}
	return nil
}

// assignTo gives a conversation to agent me, inside tx: for a transfer
// offer it takes the conversation from the transferring agent, otherwise
// the conversation must still wait in its queue.
func assignTo(ctx context.Context, tx *ent.Tx, convID uuid.UUID, me *ent.Agent, transfer *ent.Offer, now time.Time, n *notes) error {
	conv, err := tx.Conversation.Get(ctx, convID)
	if err != nil {
		return fmt.Errorf("load conversation: %w", err)
	}
	var entries []chatlog.Entry
	if transfer != nil && transfer.TransferFromAgentID != nil {
		from := *transfer.TransferFromAgentID
		if conv.State != conversation.StateAssigned || conv.AgentID == nil || *conv.AgentID != from {
			return errTransferStale
		}
		prev, err := tx.Agent.Get(ctx, from)
		if err != nil {
			return fmt.Errorf("load transferring agent: %w", err)
		}
		if err := ReleaseCapacity(ctx, tx, from); err != nil {
			return err
		}
		n.agent(from)
		entries = append(entries,
			chatlog.Entry{Sender: chatlog.AgentSender(prev), Payload: &parleyv1.ConversationTransferred{
				From: chatlog.AgentSender(prev).Participant(), ToAgentId: me.ID.String(), Note: transfer.TransferNote,
			}},
			chatlog.Entry{Sender: chatlog.AgentSender(prev), Payload: &parleyv1.ParticipantLeft{Participant: chatlog.AgentSender(prev).Participant()}},
		)
	} else if conv.State != conversation.StateQueued {
		return errNotWaiting(conv.ID)
	}
	// By predicate, not UpdateOneID, for the reason Close gives.
	if err := tx.Conversation.Update().Where(conversation.ID(conv.ID)).
		SetState(conversation.StateAssigned).
		SetAgentID(me.ID).
		ClearQueuedAt().
		ClearQueueEnteredAt().
		ClearWaitExceededAt().
		Exec(ctx); err != nil {
		return fmt.Errorf("assign conversation: %w", err)
	}
	entries = append(entries, chatlog.Entry{Sender: chatlog.AgentSender(me), Payload: &parleyv1.ParticipantJoined{Participant: chatlog.AgentSender(me).Participant()}})
	entries = chatlog.WithControllerChange(entries, conv.State, conversation.StateAssigned, chatlog.ReasonAccepted)
	if _, err := chatlog.Append(ctx, tx, conv.ID, now, entries...); err != nil {
		return err
	}
	n.conversation(conv.ID)
	n.agent(me.ID)
	n.queue(conv.QueueID)
	return nil
}
