package routing

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/routing/engine"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var presenceToProto = map[agent.Presence]parleyv1.Presence{
	agent.PresenceAvailable: parleyv1.Presence_PRESENCE_AVAILABLE,
	agent.PresenceAway:      parleyv1.Presence_PRESENCE_AWAY,
	agent.PresenceOffline:   parleyv1.Presence_PRESENCE_OFFLINE,
}

// AgentToProto converts an agent; load its queues edge first.
func AgentToProto(a *ent.Agent) *parleyv1.Agent {
	out := &parleyv1.Agent{
		Id:          a.ID.String(),
		DisplayName: a.DisplayName,
		Presence:    presenceToProto[a.Presence],
		Capacity:    int32(a.Capacity),
		Load:        int32(a.Load),
	}
	for _, q := range a.Edges.Queues {
		out.QueueIds = append(out.QueueIds, q.ID.String())
	}
	slices.Sort(out.QueueIds)
	out.Skills = slices.Sorted(slices.Values(a.Skills))
	for _, c := range Channels {
		if limit, ok := a.ChannelCapacity[c]; ok {
			out.ChannelCapacities = append(out.ChannelCapacities, &parleyv1.ChannelCapacity{
				Channel: chatlog.ChannelToProto(interaction.Channel(c)), Capacity: int32(limit),
			})
		}
		if p, ok := a.ChannelPresence[c]; ok {
			out.ChannelPresences = append(out.ChannelPresences, &parleyv1.ChannelPresence{
				Channel: chatlog.ChannelToProto(interaction.Channel(c)), Presence: presenceToProto[agent.Presence(p)],
			})
		}
	}
	return out
}

// directoryEntryToProto converts an agent (with its queues) for the agent
// directory: its presence on channel ("" for overall), free capacity and
// queues by name, and nothing else.
func directoryEntryToProto(a *ent.Agent, channel string, free int) *parleyv1.AgentDirectoryEntry {
	out := &parleyv1.AgentDirectoryEntry{
		Id:           a.ID.String(),
		DisplayName:  a.DisplayName,
		Presence:     presenceToProto[presenceOn(a, channel)],
		FreeCapacity: int32(max(0, free)),
	}
	for _, q := range a.Edges.Queues {
		out.Queues = append(out.Queues, &parleyv1.AgentDirectoryQueue{Id: q.ID.String(), DisplayName: q.DisplayName})
	}
	slices.SortFunc(out.Queues, func(x, y *parleyv1.AgentDirectoryQueue) int {
		return cmp.Or(strings.Compare(x.GetDisplayName(), y.GetDisplayName()), strings.Compare(x.GetId(), y.GetId()))
	})
	return out
}

var (
	strategyToProto = map[queue.Strategy]parleyv1.RoutingStrategy{
		queue.StrategyMostAvailable:         parleyv1.RoutingStrategy_ROUTING_STRATEGY_MOST_AVAILABLE,
		queue.StrategyLeastRecentlyAssigned: parleyv1.RoutingStrategy_ROUTING_STRATEGY_LEAST_RECENTLY_ASSIGNED,
	}
	lossToProto = map[queue.AgentLossPolicy]parleyv1.AgentLossPolicy{
		queue.AgentLossPolicyRequeue: parleyv1.AgentLossPolicy_AGENT_LOSS_POLICY_REQUEUE,
		queue.AgentLossPolicyKeep:    parleyv1.AgentLossPolicy_AGENT_LOSS_POLICY_KEEP,
	}
)

// QueueToProto converts a queue with its policy.
func QueueToProto(q *ent.Queue) *parleyv1.Queue {
	policy := &parleyv1.QueuePolicy{
		Strategy:        strategyToProto[q.Strategy],
		Priority:        int32(q.Priority),
		RequiredSkills:  q.RequiredSkills,
		TimeoutPresence: presenceToProto[agent.Presence(q.TimeoutPresence)],
		AutoAccept:      q.AutoAccept,
		AgentLossPolicy: lossToProto[q.AgentLossPolicy],
	}
	if q.MaxWaitMs > 0 {
		policy.MaxWait = durationpb.New(time.Duration(q.MaxWaitMs) * time.Millisecond)
	}
	if q.OverflowQueueID != nil {
		policy.OverflowQueueId = q.OverflowQueueID.String()
	}
	if q.WrapUpMs > 0 {
		policy.WrapUp = durationpb.New(time.Duration(q.WrapUpMs) * time.Millisecond)
	}
	return &parleyv1.Queue{
		Id:           q.ID.String(),
		DisplayName:  q.DisplayName,
		OfferTimeout: durationpb.New(time.Duration(q.OfferTimeoutMs) * time.Millisecond),
		Policy:       policy,
	}
}

// RuleToEngine converts a stored rule for the engine.
func RuleToEngine(r *ent.MatchingRule) (engine.Rule, error) {
	cond := &parleyv1.Condition{}
	if err := protojson.Unmarshal([]byte(r.Condition), cond); err != nil {
		return engine.Rule{}, fmt.Errorf("decode condition of rule %s: %w", r.ID, err)
	}
	return engine.Rule{ID: r.ID.String(), Order: r.Order, QueueID: r.QueueID.String(), Condition: conditionToEngine(cond)}, nil
}

func conditionToEngine(c *parleyv1.Condition) engine.Condition {
	switch k := c.GetKind().(type) {
	case *parleyv1.Condition_FieldIn:
		return engine.Condition{Field: k.FieldIn.GetField(), Values: k.FieldIn.GetValues()}
	case *parleyv1.Condition_All:
		out := engine.Condition{}
		for _, sub := range k.All.GetConditions() {
			out.All = append(out.All, conditionToEngine(sub))
		}
		return out
	case *parleyv1.Condition_Any:
		out := engine.Condition{}
		for _, sub := range k.Any.GetConditions() {
			out.Any = append(out.Any, conditionToEngine(sub))
		}
		return out
	}
	return engine.Condition{}
}

// offerToProto converts an offer; load its conversation (with interaction).
func offerToProto(o *ent.Offer, conv *parleyv1.Conversation, summary string, from *ent.Agent) *parleyv1.Offer {
	out := &parleyv1.Offer{
		Id:           o.ID.String(),
		Conversation: conv,
		ExpireTime:   timestamppb.New(o.ExpiresAt),
		Summary:      summary,
		TransferNote: o.TransferNote,
	}
	if from != nil {
		out.TransferredBy = &parleyv1.Participant{
			Role: parleyv1.ParticipantRole_PARTICIPANT_ROLE_AGENT, Id: from.ID.String(), DisplayName: from.DisplayName,
		}
	}
	return out
}
