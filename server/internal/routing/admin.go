package routing

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/matchingrule"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	convpkg "github.com/parleyhq/parley/server/internal/conversation"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultCapacity applies to agents created without one.
const DefaultCapacity = 3

// MinOfferTimeout is the shortest offer timeout a queue may have.
const MinOfferTimeout = time.Second

// QueueOfferTimeout returns the offer timeout of a queue created with
// requested (0 means DefaultOfferTimeout), or InvalidArgument if it is
// shorter than MinOfferTimeout.
func QueueOfferTimeout(requested time.Duration) (time.Duration, error) {
	if requested == 0 {
		return DefaultOfferTimeout, nil
	}
	if requested < MinOfferTimeout {
		return 0, apierr.New(connect.CodeInvalidArgument, "OFFER_TIMEOUT_TOO_SHORT",
			fmt.Sprintf("offer_timeout must be 0 (default %s) or at least %s", DefaultOfferTimeout, MinOfferTimeout))
	}
	return requested, nil
}

// CreateQueue adds a queue.
func (s *Service) CreateQueue(ctx context.Context, req *parleyv1.CreateQueueRequest) (*parleyv1.CreateQueueResponse, error) {
	timeout, err := QueueOfferTimeout(req.GetOfferTimeout().AsDuration())
	if err != nil {
		return nil, err
	}
	q, err := s.db.Queue.Create().SetDisplayName(req.GetDisplayName()).SetOfferTimeoutMs(timeout.Milliseconds()).Save(ctx)
	if ent.IsConstraintError(err) {
		return nil, apierr.New(connect.CodeAlreadyExists, "QUEUE_EXISTS",
			fmt.Sprintf("a queue named %q already exists", req.GetDisplayName()))
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("create queue: %w", err))
	}
	return &parleyv1.CreateQueueResponse{Queue: queueToProto(q)}, nil
}

// ListQueues lists queues by id.
func (s *Service) ListQueues(ctx context.Context, req *parleyv1.ListQueuesRequest) (*parleyv1.ListQueuesResponse, error) {
	after, err := paging.DecodeID("queues", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := s.db.Queue.Query().Where(queue.IDGT(after)).Order(ent.Asc(queue.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list queues: %w", err))
	}
	page, next := paging.Trim(rows, size, "queues", func(q *ent.Queue) string { return q.ID.String() })
	resp := &parleyv1.ListQueuesResponse{NextPageToken: next}
	for _, q := range page {
		resp.Queues = append(resp.Queues, queueToProto(q))
	}
	return resp, nil
}

// CreateMatchingRule adds a rule; it applies to the next interaction.
func (s *Service) CreateMatchingRule(ctx context.Context, req *parleyv1.CreateMatchingRuleRequest) (*parleyv1.CreateMatchingRuleResponse, error) {
	if err := CheckCondition(req.GetCondition()); err != nil {
		return nil, err
	}
	queueID := convpkg.ParseID(req.GetQueueId())
	cond, err := protojson.Marshal(req.GetCondition())
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("encode condition: %w", err))
	}
	var r *ent.MatchingRule
	err = store.InTx(ctx, s.db, func(tx *ent.Tx) error {
		if ok, err := tx.Queue.Query().Where(queue.ID(queueID)).Exist(ctx); err != nil || !ok {
			if err != nil {
				return fmt.Errorf("check queue: %w", err)
			}
			return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("queue %s does not exist", queueID))
		}
		taken, err := tx.MatchingRule.Query().Where(matchingrule.Order(req.GetOrder())).Exist(ctx)
		if err != nil {
			return fmt.Errorf("check order: %w", err)
		}
		if taken {
			return apierr.New(connect.CodeAlreadyExists, "RULE_ORDER_TAKEN",
				fmt.Sprintf("another rule already has order %d; pick a free one", req.GetOrder()))
		}
		r, err = tx.MatchingRule.Create().
			SetDisplayName(req.GetDisplayName()).
			SetOrder(req.GetOrder()).
			SetQueueID(queueID).
			SetCondition(string(cond)).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("create rule: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	out, err := ruleToProto(r)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &parleyv1.CreateMatchingRuleResponse{Rule: out}, nil
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
	id := convpkg.ParseID(req.GetRuleId())
	err := s.db.MatchingRule.DeleteOneID(id).Exec(ctx)
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
	queueIDs := make([]uuid.UUID, len(req.GetQueueIds()))
	for i, id := range req.GetQueueIds() {
		queueIDs[i] = convpkg.ParseID(id)
	}
	var a *ent.Agent
	var secret string
	err := store.InTx(ctx, s.db, func(tx *ent.Tx) error {
		n, err := tx.Queue.Query().Where(queue.IDIn(queueIDs...)).Count(ctx)
		if err != nil {
			return fmt.Errorf("check queues: %w", err)
		}
		if n != len(queueIDs) {
			return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", "one of queue_ids does not name a queue")
		}
		a, err = tx.Agent.Create().
			SetDisplayName(req.GetDisplayName()).
			SetCapacity(capacity).
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
	return &parleyv1.CreateAgentResponse{Agent: agentToProto(a), Token: secret}, nil
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
		resp.Agents = append(resp.Agents, agentToProto(a))
	}
	return resp, nil
}
