// Package cases serves CaseService: the agent's "Create Case for Guest" and
// "Create Consumer and Case for Guest" actions, reading a case with its
// conversation's transcript, listing cases and updating their state, short
// description and assignee.
package cases

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
)

// Service implements parleyv1connect.CaseServiceHandler.
type Service struct {
	db  *store.DB
	hub *events.Hub
	clk clock.Clock
}

var _ parleyv1connect.CaseServiceHandler = (*Service)(nil)

// NewService returns the CaseService handler.
func NewService(db *store.DB, hub *events.Hub, clk clock.Clock) *Service {
	return &Service{db: db, hub: hub, clk: clk}
}

// CreateCaseForGuest opens a case linked to the conversation. A retry
// with the same request_id returns the first call's response.
func (s *Service) CreateCaseForGuest(ctx context.Context, req *parleyv1.CreateCaseForGuestRequest) (*parleyv1.CreateCaseForGuestResponse, error) {
	return create(ctx, s, parleyv1connect.CaseServiceCreateCaseForGuestProcedure, req, false,
		func(c *parleyv1.Case, _ *parleyv1.Consumer) *parleyv1.CreateCaseForGuestResponse {
			return &parleyv1.CreateCaseForGuestResponse{Case: c}
		})
}

// CreateConsumerAndCaseForGuest creates a consumer record from the pre-chat
// form and a case for it. A retry with the same request_id returns the
// first call's response.
func (s *Service) CreateConsumerAndCaseForGuest(ctx context.Context, req *parleyv1.CreateConsumerAndCaseForGuestRequest) (*parleyv1.CreateConsumerAndCaseForGuestResponse, error) {
	return create(ctx, s, parleyv1connect.CaseServiceCreateConsumerAndCaseForGuestProcedure, req, true,
		func(c *parleyv1.Case, consumer *parleyv1.Consumer) *parleyv1.CreateConsumerAndCaseForGuestResponse {
			return &parleyv1.CreateConsumerAndCaseForGuestResponse{Consumer: consumer, Case: c}
		})
}

// caseRequest is what both case actions ask for.
type caseRequest interface {
	proto.Message
	GetConversationId() string
	GetRequestId() string
	GetShortDescription() string
}

// create runs both actions, idempotent per caller and request id
// (idempotency.Do): it opens the case (with a consumer record when
// withConsumer) and answers with respond's response.
func create[R proto.Message](ctx context.Context, s *Service, procedure string, req caseRequest, withConsumer bool,
	respond func(*parleyv1.Case, *parleyv1.Consumer) R) (R, error) {
	var zero R
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Post)
	if err != nil {
		return zero, err
	}
	description := describe(conv.Edges.Interaction, req.GetShortDescription())
	now := s.clk.Now()
	key := idempotency.Key{Caller: p.Caller(), Procedure: procedure, ID: req.GetRequestId(), Now: now}
	resp, replayed, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (R, error) {
		c, consumer, err := open(ctx, tx, p.AgentID, conv, description, withConsumer, now)
		if err != nil {
			return zero, err
		}
		return respond(CaseToProto(c), ConsumerToProto(consumer)), nil
	})
	if err != nil {
		return zero, err
	}
	if !replayed {
		s.hub.Notify(events.ConversationKey(id.String()))
	}
	return resp, nil
}

// describe is a case's short description: the agent's, or one made from
// the pre-chat form.
func describe(in *ent.Interaction, description string) string {
	if description != "" {
		return description
	}
	description = fmt.Sprintf("Guest chat about %s", in.IssueType)
	if in.FirstMessage != "" {
		description += ": " + in.FirstMessage
	}
	if r := []rune(description); len(r) > 500 {
		description = string(r[:500])
	}
	return description
}

// open creates agentID's case on conv (loaded with its interaction) inside
// tx, and logs the link. The case is for the signed-in customer of conv,
// if it has one, or, withConsumer, for a new consumer record made from the
// pre-chat form.
func open(ctx context.Context, tx *ent.Tx, agentID uuid.UUID, conv *ent.Conversation, description string, withConsumer bool, now time.Time) (*ent.ServiceCase, *ent.Consumer, error) {
	id, in := conv.ID, conv.Edges.Interaction
	number, err := NextNumber(ctx, tx)
	if err != nil {
		return nil, nil, err
	}
	create := tx.ServiceCase.Create().
		SetCreatedAt(now).
		SetUpdatedAt(now).
		SetNumber(number).
		SetShortDescription(description).
		SetConversationID(id).
		SetOpenedByAgentID(agentID).
		SetNillableConsumerID(conv.ConsumerID)
	linked := &parleyv1.CaseLinked{}
	var consumer *ent.Consumer
	if withConsumer {
		if consumer, err = tx.Consumer.Create().SetCreatedAt(now).SetDisplayName(in.Name).SetEmail(in.Email).Save(ctx); err != nil {
			return nil, nil, fmt.Errorf("create consumer: %w", err)
		}
		create.SetConsumerID(consumer.ID)
		linked.ConsumerId = consumer.ID.String()
	}
	c, err := create.Save(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("create case: %w", err)
	}
	linked.CaseId, linked.CaseNumber = c.ID.String(), c.Number
	agent, err := tx.Agent.Get(ctx, agentID)
	if err != nil {
		return nil, nil, fmt.Errorf("load agent: %w", err)
	}
	if _, err := chatlog.Append(ctx, tx, id, now, chatlog.Entry{Sender: chatlog.AgentSender(agent), Payload: linked}); err != nil {
		return nil, nil, err
	}
	return c, consumer, nil
}

// GetCase returns a case with its conversation's messages, to those who
// may read the case (readable). An agent who reads the case's conversation
// only because it held it once reads the transcript up to when it left
// (chatlog.HistoryEnd), unless the case is assigned to it.
func (s *Service) GetCase(ctx context.Context, req *parleyv1.GetCaseRequest) (*parleyv1.GetCaseResponse, error) {
	p := auth.FromContext(ctx)
	visible, err := readable(p)
	if err != nil {
		return nil, err
	}
	id := chatlog.ParseID(req.GetCaseId())
	c, err := s.db.ServiceCase.Query().Where(servicecase.ID(id)).Where(visible...).WithConsumer().WithConversation().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound(id.String())
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load case: %w", err))
	}
	conv := c.Edges.Conversation
	end := conv.LastSeq
	if c.AssignedAgentID == nil || *c.AssignedAgentID != p.AgentID {
		if end, _, err = chatlog.HistoryEnd(ctx, s.db.Client, p, conv); err != nil {
			return nil, err
		}
	}
	msgs, err := s.db.Event.Query().
		Where(event.ConversationID(c.ConversationID), event.Kind("message_posted"), event.SeqLTE(end)).
		Order(ent.Asc(event.FieldSeq)).
		All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load transcript: %w", err))
	}
	resp := &parleyv1.GetCaseResponse{Case: CaseToProto(c), Consumer: ConsumerToProto(c.Edges.Consumer)}
	for _, m := range msgs {
		out, err := chatlog.EventToProto(m, "")
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Transcript = append(resp.Transcript, out)
	}
	return resp, nil
}

// NextNumber takes the next case number (CS0001001, ...) inside tx, so
// numbers have no gaps or clashes.
func NextNumber(ctx context.Context, tx *ent.Tx) (string, error) {
	set, err := tx.Setting.UpdateOneID(schema.SettingsID).AddNextCaseNumber(1).Save(ctx)
	if err != nil {
		return "", fmt.Errorf("number case: %w", err)
	}
	return fmt.Sprintf("CS%07d", set.NextCaseNumber-1), nil
}
