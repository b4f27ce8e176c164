// Package admin serves the admin's part of RoutingService: creating,
// listing and updating queues (with their routing policy), matching rules
// and agents. It checks and stores the configuration that routing reads;
// app serves it beside routing.Service as one RoutingService.
package admin

import (
	"context"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/matchingrule"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/assistant/botconfig"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/encoding/protojson"
)

// Service implements the admin methods of
// parleyv1connect.RoutingServiceHandler.
type Service struct {
	db         *store.DB
	hub        *events.Hub
	dispatcher *routing.Dispatcher
}

// NewService returns the admin's RoutingService methods; changes kick
// dispatcher, so they apply to the next routing pass.
func NewService(db *store.DB, hub *events.Hub, dispatcher *routing.Dispatcher) *Service {
	return &Service{db: db, hub: hub, dispatcher: dispatcher}
}

// DefaultCapacity applies to agents created without one.
const DefaultCapacity = 3

// MinOfferTimeout is the shortest offer timeout a queue may have.
const MinOfferTimeout = time.Second

// QueueOfferTimeout returns the offer timeout of a queue created with
// requested (0 means routing.DefaultOfferTimeout), or InvalidArgument if it is
// shorter than MinOfferTimeout.
func QueueOfferTimeout(requested time.Duration) (time.Duration, error) {
	if requested == 0 {
		return routing.DefaultOfferTimeout, nil
	}
	if requested < MinOfferTimeout {
		return 0, apierr.New(connect.CodeInvalidArgument, "OFFER_TIMEOUT_TOO_SHORT",
			fmt.Sprintf("offer_timeout must be 0 (default %s) or at least %s", routing.DefaultOfferTimeout, MinOfferTimeout))
	}
	return requested, nil
}

var (
	strategyFromProto = map[parleyv1.RoutingStrategy]queue.Strategy{
		parleyv1.RoutingStrategy_ROUTING_STRATEGY_UNSPECIFIED:             queue.StrategyMostAvailable,
		parleyv1.RoutingStrategy_ROUTING_STRATEGY_MOST_AVAILABLE:          queue.StrategyMostAvailable,
		parleyv1.RoutingStrategy_ROUTING_STRATEGY_LEAST_RECENTLY_ASSIGNED: queue.StrategyLeastRecentlyAssigned,
	}
	lossFromProto = map[parleyv1.AgentLossPolicy]queue.AgentLossPolicy{
		parleyv1.AgentLossPolicy_AGENT_LOSS_POLICY_UNSPECIFIED: queue.AgentLossPolicyRequeue,
		parleyv1.AgentLossPolicy_AGENT_LOSS_POLICY_REQUEUE:     queue.AgentLossPolicyRequeue,
		parleyv1.AgentLossPolicy_AGENT_LOSS_POLICY_KEEP:        queue.AgentLossPolicyKeep,
	}
)

// SetQueue writes a queue's name, offer timeout and policy into m, after
// checking what the schema's rules cannot: the overflow queue exists and is
// another queue. self is the queue's own id (uuid.Nil for a new queue).
func SetQueue(ctx context.Context, tx *ent.Tx, m *ent.QueueMutation, self uuid.UUID, name string, offerTimeout time.Duration, p *parleyv1.QueuePolicy) error {
	timeout, err := QueueOfferTimeout(offerTimeout)
	if err != nil {
		return err
	}
	m.SetDisplayName(name)
	m.SetOfferTimeoutMs(timeout.Milliseconds())
	m.SetStrategy(strategyFromProto[p.GetStrategy()])
	m.SetPriority(int(p.GetPriority()))
	m.SetRequiredSkills(append([]string{}, p.GetRequiredSkills()...))
	presence := agent.PresenceAway
	if p.GetTimeoutPresence() != parleyv1.Presence_PRESENCE_UNSPECIFIED {
		presence = routing.PresenceFromProto[p.GetTimeoutPresence()]
	}
	m.SetTimeoutPresence(queue.TimeoutPresence(presence))
	m.SetAutoAccept(p.GetAutoAccept())
	m.SetMaxWaitMs(p.GetMaxWait().AsDuration().Milliseconds())
	m.SetAgentLossPolicy(lossFromProto[p.GetAgentLossPolicy()])
	m.SetWrapUpMs(p.GetWrapUp().AsDuration().Milliseconds())
	m.ClearOverflowQueueID()
	if id := p.GetOverflowQueueId(); id != "" {
		overflow := chatlog.ParseID(id)
		if overflow == self {
			return apierr.New(connect.CodeInvalidArgument, "OVERFLOW_TO_SELF", "overflow_queue_id must name another queue")
		}
		ok, err := tx.Queue.Query().Where(queue.ID(overflow)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("check overflow queue: %w", err)
		}
		if !ok {
			return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("overflow queue %s does not exist", overflow))
		}
		m.SetOverflowQueueID(overflow)
	}
	return nil
}

// queueNameTaken turns a unique-name clash into AlreadyExists.
func queueNameTaken(err error, name string) error {
	if ent.IsConstraintError(err) {
		return apierr.New(connect.CodeAlreadyExists, "QUEUE_EXISTS", fmt.Sprintf("a queue named %q already exists", name))
	}
	return err
}

// CreateQueue adds a queue.
func (s *Service) CreateQueue(ctx context.Context, req *parleyv1.CreateQueueRequest) (*parleyv1.CreateQueueResponse, error) {
	var q *ent.Queue
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		create := tx.Queue.Create()
		if err := SetQueue(ctx, tx, create.Mutation(), uuid.Nil, req.GetDisplayName(), req.GetOfferTimeout().AsDuration(), req.GetPolicy()); err != nil {
			return err
		}
		var err error
		q, err = create.Save(ctx)
		return queueNameTaken(err, req.GetDisplayName())
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	return &parleyv1.CreateQueueResponse{Queue: routing.QueueToProto(q)}, nil
}

// UpdateQueue replaces a queue's settings; waiting chats keep their
// priority until they move, and the next pass routes by the new policy.
func (s *Service) UpdateQueue(ctx context.Context, req *parleyv1.UpdateQueueRequest) (*parleyv1.UpdateQueueResponse, error) {
	id := chatlog.ParseID(req.GetQueueId())
	var q *ent.Queue
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		if err := checkBotQueueRename(ctx, tx, id, req.GetDisplayName()); err != nil {
			return err
		}
		update := tx.Queue.UpdateOneID(id)
		if err := SetQueue(ctx, tx, update.Mutation(), id, req.GetDisplayName(), req.GetOfferTimeout().AsDuration(), req.GetPolicy()); err != nil {
			return err
		}
		var err error
		q, err = update.Save(ctx)
		if ent.IsNotFound(err) {
			return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("queue %s does not exist", id))
		}
		if err != nil {
			return queueNameTaken(err, req.GetDisplayName())
		}
		// Waiting chats take the queue's new priority.
		_, err = tx.Conversation.Update().
			Where(conversation.QueueID(id), conversation.StateEQ(conversation.StateQueued)).
			SetPriority(q.Priority).
			Save(ctx)
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.QueueKey(id.String()), events.RoutingKey)
	s.dispatcher.Kick()
	return &parleyv1.UpdateQueueResponse{Queue: routing.QueueToProto(q)}, nil
}

// ListQueues lists queues by id.
func (s *Service) ListQueues(ctx context.Context, req *parleyv1.ListQueuesRequest) (*parleyv1.ListQueuesResponse, error) {
	page, next, err := routing.QueuePage(ctx, s.db.Client, "queues", req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.ListQueuesResponse{NextPageToken: next}
	for _, q := range page {
		resp.Queues = append(resp.Queues, routing.QueueToProto(q))
	}
	return resp, nil
}

// CreateMatchingRule adds a rule; it applies to the next interaction.
func (s *Service) CreateMatchingRule(ctx context.Context, req *parleyv1.CreateMatchingRuleRequest) (*parleyv1.CreateMatchingRuleResponse, error) {
	out, err := s.saveRule(ctx, uuid.Nil, req.GetDisplayName(), req.GetOrder(), req.GetQueueId(), req.GetCondition())
	if err != nil {
		return nil, err
	}
	return &parleyv1.CreateMatchingRuleResponse{Rule: out}, nil
}

// UpdateMatchingRule replaces a rule; it applies to the next interaction.
func (s *Service) UpdateMatchingRule(ctx context.Context, req *parleyv1.UpdateMatchingRuleRequest) (*parleyv1.UpdateMatchingRuleResponse, error) {
	out, err := s.saveRule(ctx, chatlog.ParseID(req.GetRuleId()), req.GetDisplayName(), req.GetOrder(), req.GetQueueId(), req.GetCondition())
	if err != nil {
		return nil, err
	}
	return &parleyv1.UpdateMatchingRuleResponse{Rule: out}, nil
}

// saveRule creates a rule (id uuid.Nil) or replaces rule id, after
// checking its condition, its queue and that its order is free.
func (s *Service) saveRule(ctx context.Context, id uuid.UUID, name string, order int32, queueID string, condition *parleyv1.Condition) (*parleyv1.MatchingRule, error) {
	if err := CheckCondition(condition); err != nil {
		return nil, err
	}
	qid := chatlog.ParseID(queueID)
	cond, err := protojson.Marshal(condition)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("encode condition: %w", err))
	}
	var r *ent.MatchingRule
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		if id != uuid.Nil {
			exists, err := tx.MatchingRule.Query().Where(matchingrule.ID(id)).Exist(ctx)
			if err != nil {
				return fmt.Errorf("check rule: %w", err)
			}
			if !exists {
				return apierr.New(connect.CodeNotFound, "RULE_NOT_FOUND", fmt.Sprintf("matching rule %s does not exist", id))
			}
		}
		if ok, err := tx.Queue.Query().Where(queue.ID(qid)).Exist(ctx); err != nil || !ok {
			if err != nil {
				return fmt.Errorf("check queue: %w", err)
			}
			return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("queue %s does not exist", qid))
		}
		taken, err := tx.MatchingRule.Query().Where(matchingrule.Order(order), matchingrule.IDNEQ(id)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("check order: %w", err)
		}
		if taken {
			return apierr.New(connect.CodeAlreadyExists, "RULE_ORDER_TAKEN",
				fmt.Sprintf("another rule already has order %d; pick a free one", order))
		}
		if id == uuid.Nil {
			r, err = tx.MatchingRule.Create().SetDisplayName(name).SetOrder(order).SetQueueID(qid).SetCondition(string(cond)).Save(ctx)
		} else {
			r, err = tx.MatchingRule.UpdateOneID(id).SetDisplayName(name).SetOrder(order).SetQueueID(qid).SetCondition(string(cond)).Save(ctx)
		}
		if err != nil {
			return fmt.Errorf("save rule: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.dispatcher.Kick()
	out, err := ruleToProto(r)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return out, nil
}

// ListMatchingRules lists rules in evaluation order.
func (s *Service) ListMatchingRules(ctx context.Context, req *parleyv1.ListMatchingRulesRequest) (*parleyv1.ListMatchingRulesResponse, error) {
	after, err := paging.Decode("rules", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	q := s.db.MatchingRule.Query()
	if after != "" {
		var order int32
		if _, err := fmt.Sscan(after, &order); err != nil {
			return nil, apierr.New(connect.CodeInvalidArgument, "INVALID_PAGE_TOKEN", "page_token is not one this list returned")
		}
		q = q.Where(matchingrule.OrderGT(order))
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := q.Order(ent.Asc(matchingrule.FieldOrder)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list rules: %w", err))
	}
	page, next := paging.Trim(rows, size, "rules", func(r *ent.MatchingRule) string { return fmt.Sprint(r.Order) })
	resp := &parleyv1.ListMatchingRulesResponse{NextPageToken: next}
	for _, r := range page {
		out, err := ruleToProto(r)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Rules = append(resp.Rules, out)
	}
	return resp, nil
}

// DeleteMatchingRule removes a rule.
func (s *Service) DeleteMatchingRule(ctx context.Context, req *parleyv1.DeleteMatchingRuleRequest) (*parleyv1.DeleteMatchingRuleResponse, error) {
	id := chatlog.ParseID(req.GetRuleId())
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		return tx.MatchingRule.DeleteOneID(id).Exec(ctx)
	})
	if ent.IsNotFound(err) {
		return nil, apierr.New(connect.CodeNotFound, "RULE_NOT_FOUND", fmt.Sprintf("matching rule %s does not exist", id))
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("delete rule: %w", err))
	}
	return &parleyv1.DeleteMatchingRuleResponse{}, nil
}

// CreateAgent adds an agent and issues its first token.
func (s *Service) CreateAgent(ctx context.Context, req *parleyv1.CreateAgentRequest) (*parleyv1.CreateAgentResponse, error) {
	capacity := int(req.GetCapacity())
	if capacity == 0 {
		capacity = DefaultCapacity
	}
	channels, err := channelCapacities(req.GetChannelCapacities())
	if err != nil {
		return nil, err
	}
	var a *ent.Agent
	var secret string
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		queueIDs, err := existingQueues(ctx, tx, req.GetQueueIds())
		if err != nil {
			return err
		}
		a, err = tx.Agent.Create().
			SetDisplayName(req.GetDisplayName()).
			SetCapacity(capacity).
			SetSkills(append([]string{}, req.GetSkills()...)).
			SetChannelCapacity(channels).
			AddQueueIDs(queueIDs...).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("create agent: %w", err)
		}
		secret, _, err = auth.IssueStaffToken(ctx, tx, auth.StaffToken{Role: auth.RoleAgent, AgentID: a.ID, Label: "created with agent " + a.DisplayName})
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	a, err = s.db.Agent.Query().Where(agent.ID(a.ID)).WithQueues().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("reload agent: %w", err))
	}
	return &parleyv1.CreateAgentResponse{Agent: routing.AgentToProto(a), Token: secret}, nil
}

// ListAgents lists agents by id.
func (s *Service) ListAgents(ctx context.Context, req *parleyv1.ListAgentsRequest) (*parleyv1.ListAgentsResponse, error) {
	after, err := paging.DecodeID("agents", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := s.db.Agent.Query().Where(agent.IDGT(after)).Order(ent.Asc(agent.FieldID)).WithQueues().Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list agents: %w", err))
	}
	page, next := paging.Trim(rows, size, "agents", func(a *ent.Agent) string { return a.ID.String() })
	resp := &parleyv1.ListAgentsResponse{NextPageToken: next}
	for _, a := range page {
		resp.Agents = append(resp.Agents, routing.AgentToProto(a))
	}
	return resp, nil
}

// existingQueues parses queue ids and checks that each names a queue.
func existingQueues(ctx context.Context, tx *ent.Tx, ids []string) ([]uuid.UUID, error) {
	out := make([]uuid.UUID, len(ids))
	for i, id := range ids {
		out[i] = chatlog.ParseID(id)
	}
	n, err := tx.Queue.Query().Where(queue.IDIn(out...)).Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("check queues: %w", err)
	}
	if n != len(out) {
		return nil, apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", "one of queue_ids does not name a queue")
	}
	return out, nil
}

// UpdateAgent replaces an agent's name, capacities, skills and queues.
// Capacity may not drop below the agent's current load: the load check is
// part of the update, so a racing offer cannot slip past it.
func (s *Service) UpdateAgent(ctx context.Context, req *parleyv1.UpdateAgentRequest) (*parleyv1.UpdateAgentResponse, error) {
	id := chatlog.ParseID(req.GetAgentId())
	capacity := int(req.GetCapacity())
	if capacity == 0 {
		capacity = DefaultCapacity
	}
	channels, err := channelCapacities(req.GetChannelCapacities())
	if err != nil {
		return nil, err
	}
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		exists, err := tx.Agent.Query().Where(agent.ID(id)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("check agent: %w", err)
		}
		if !exists {
			return apierr.New(connect.CodeNotFound, "AGENT_NOT_FOUND", fmt.Sprintf("agent %s does not exist", id))
		}
		queueIDs, err := existingQueues(ctx, tx, req.GetQueueIds())
		if err != nil {
			return err
		}
		n, err := tx.Agent.Update().
			Where(agent.ID(id), agent.LoadLTE(capacity)).
			SetDisplayName(req.GetDisplayName()).
			SetCapacity(capacity).
			SetSkills(append([]string{}, req.GetSkills()...)).
			SetChannelCapacity(channels).
			ClearQueues().
			AddQueueIDs(queueIDs...).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("update agent: %w", err)
		}
		if n == 0 {
			return apierr.New(connect.CodeFailedPrecondition, "CAPACITY_BELOW_LOAD",
				fmt.Sprintf("the agent holds more than %d conversations and offers now; lower capacity after they finish some", capacity))
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.AgentKey(id.String()), events.RoutingKey)
	s.dispatcher.Kick()
	a, err := s.db.Agent.Query().Where(agent.ID(id)).WithQueues().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("reload agent: %w", err))
	}
	return &parleyv1.UpdateAgentResponse{Agent: routing.AgentToProto(a)}, nil
}

// checkBotQueueRename refuses to rename queue id while the virtual agent's
// configuration hands chats off to it by its current name: they would go
// wherever the matching rules send them instead.
func checkBotQueueRename(ctx context.Context, tx *ent.Tx, id uuid.UUID, name string) error {
	cur, err := tx.Queue.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil // UpdateQueue reports it
	}
	if err != nil {
		return fmt.Errorf("load queue %s: %w", id, err)
	}
	if cur.DisplayName == name {
		return nil
	}
	set, err := tx.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return fmt.Errorf("load settings: %w", err)
	}
	named, err := botconfig.QueueNames([]byte(set.BotConfig))
	if err != nil {
		return fmt.Errorf("read the bot configuration's queues: %w", err)
	}
	if slices.Contains(named, cur.DisplayName) {
		return apierr.New(connect.CodeFailedPrecondition, "QUEUE_IN_BOT_CONFIG",
			fmt.Sprintf("the virtual agent hands chats off to queue %q by name; change its configuration (AssistantService.UpdateBotConfig) before renaming the queue", cur.DisplayName))
	}
	return nil
}
