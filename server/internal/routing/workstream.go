package routing

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// WatchWork streams the caller's offers and held conversations. Each wake-up
// re-reads the agent's state from the store and sends the difference from
// what the stream already told, so a missed wake-up cannot lose an item.
func (s *Service) WatchWork(ctx context.Context, _ *parleyv1.WatchWorkRequest, stream parleyv1connect.RoutingServiceWatchWorkServerStream) error {
	p := auth.FromContext(ctx)
	key := events.AgentKey(p.AgentID.String())
	told := NewWork()
	// Its timers are armed before the stream opens, so a client that has
	// the headers knows the stream is waiting on them (tests advance a
	// fake clock then).
	beat := s.clk.NewTicker(s.heartbeat)
	defer beat.Stop()
	// A revoked or expired token ends the stream before anything more is
	// sent, and with it this replica's lease on the agent.
	guard := auth.NewGuard(s.db, s.hub, s.clk, p)
	defer guard.Stop()
	// Open the stream at once, so the client knows it is watching even
	// while there is no work.
	if err := stream.SendHeaders(); err != nil {
		return err
	}
	// While this stream is open, this replica keeps the agent's lease; once
	// it ends, the agent has the grace period to come back.
	const resume = "open WatchWork again: it resends every pending offer and held conversation"
	if err := s.dispatcher.StreamOpened(ctx, p.AgentID); err != nil {
		if ctx.Err() != nil {
			return apierr.StreamEnded(ctx, resume)
		}
		return apierr.Internal(err)
	}
	defer s.dispatcher.StreamClosed(p.AgentID)
	for {
		wake := s.hub.Wait(key)
		err := guard.Check(ctx)
		if err == nil {
			err = s.sendWorkChanges(ctx, guard, p.AgentID, told, stream)
		}
		if err != nil {
			if ctx.Err() != nil {
				// It failed because the stream is ending.
				return apierr.StreamEnded(ctx, resume)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return apierr.StreamEnded(ctx, resume)
		case <-wake:
		case <-guard.Changed():
		case <-guard.Expired():
		case <-beat.C():
			if err := guard.Check(ctx); err != nil {
				return err
			}
			hb := &parleyv1.Heartbeat{SendTime: timestamppb.New(s.clk.Now())}
			if err := stream.Send(&parleyv1.WatchWorkResponse{Item: &parleyv1.WatchWorkResponse_Heartbeat{Heartbeat: hb}}); err != nil {
				return err
			}
			// The loop then re-reads the agent's work: a safety poll.
		}
	}
}

// sendWorkChanges sends what changed in the agent's work since the stream
// last told it, checking before each item that the stream's credential
// still holds.
func (s *Service) sendWorkChanges(ctx context.Context, guard *auth.Guard, agentID uuid.UUID, told *Work, stream parleyv1connect.RoutingServiceWatchWorkServerStream) error {
	items, err := s.WorkChanges(ctx, agentID, told)
	if err != nil {
		return err
	}
	for _, item := range items {
		if err := guard.Still(ctx); err != nil {
			return err
		}
		if err := stream.Send(item); err != nil {
			return err
		}
	}
	return nil
}

// Work is what an agent's work stream has told the agent: its open offers
// and the conversations it holds. WorkChanges keeps it.
type Work struct {
	offers map[uuid.UUID]bool
	held   map[uuid.UUID]bool
}

// NewWork returns the work of a stream that told nothing yet.
func NewWork() *Work {
	return &Work{offers: map[uuid.UUID]bool{}, held: map[uuid.UUID]bool{}}
}

// Forget makes the stream's next WorkChanges tell conversation id as
// assigned again if the agent still holds it, and never as released: the
// stream told its release itself.
func (w *Work) Forget(id uuid.UUID) {
	delete(w.held, id)
}

// WorkChanges reads the agent's work from the store and returns what
// changed since told, which it updates, in the order to send: new offers
// (oldest first), closed offers, newly held conversations, released ones.
func (s *Service) WorkChanges(ctx context.Context, agentID uuid.UUID, told *Work) ([]*parleyv1.WatchWorkResponse, error) {
	var items []*parleyv1.WatchWorkResponse
	offers, err := s.db.Offer.Query().
		Where(offer.AgentID(agentID), offer.StateEQ(offer.StatePending)).
		Order(ent.Asc(offer.FieldCreatedAt)).
		All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load offers of %s: %w", agentID, err))
	}
	pending := map[uuid.UUID]bool{}
	for _, o := range offers {
		pending[o.ID] = true
		if told.offers[o.ID] {
			continue
		}
		msg, err := s.offerMessage(ctx, o)
		if err != nil {
			return nil, err
		}
		items = append(items, &parleyv1.WatchWorkResponse{Item: &parleyv1.WatchWorkResponse_Offer{Offer: msg}})
		told.offers[o.ID] = true
	}
	for id := range told.offers {
		if pending[id] {
			continue
		}
		o, err := s.db.Offer.Get(ctx, id)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("load offer %s: %w", id, err))
		}
		closed := &parleyv1.OfferClosed{OfferId: id.String(), ConversationId: o.ConversationID.String(), Outcome: string(o.State)}
		items = append(items, &parleyv1.WatchWorkResponse{Item: &parleyv1.WatchWorkResponse_OfferClosed{OfferClosed: closed}})
		delete(told.offers, id)
	}
	convs, err := s.db.Conversation.Query().
		Where(conversation.AgentID(agentID), conversation.StateEQ(conversation.StateAssigned)).
		WithInteraction().
		All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversations of %s: %w", agentID, err))
	}
	holding := map[uuid.UUID]bool{}
	for _, c := range convs {
		holding[c.ID] = true
		if told.held[c.ID] {
			continue
		}
		items = append(items, &parleyv1.WatchWorkResponse{Item: &parleyv1.WatchWorkResponse_Assigned{Assigned: chatlog.ToProto(c)}})
		told.held[c.ID] = true
	}
	for id := range told.held {
		if holding[id] {
			continue
		}
		c, err := s.db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("load conversation %s: %w", id, err))
		}
		items = append(items, &parleyv1.WatchWorkResponse{Item: &parleyv1.WatchWorkResponse_Released{Released: chatlog.ToProto(c)}})
		delete(told.held, id)
	}
	return items, nil
}

// offerMessage builds the offer an agent sees: the conversation with its
// interaction, a summary and, for transfers, who is handing it over.
func (s *Service) offerMessage(ctx context.Context, o *ent.Offer) (*parleyv1.Offer, error) {
	c, err := s.db.Conversation.Query().Where(conversation.ID(o.ConversationID)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation %s: %w", o.ConversationID, err))
	}
	messages, err := s.db.Event.Query().
		Where(event.ConversationID(c.ID), event.Kind("message_posted")).
		Count(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("count messages of %s: %w", c.ID, err))
	}
	var from *ent.Agent
	if o.TransferFromAgentID != nil {
		if from, err = s.db.Agent.Get(ctx, *o.TransferFromAgentID); err != nil {
			return nil, apierr.Internal(fmt.Errorf("load transferring agent: %w", err))
		}
	}
	handoff, err := chatlog.LoadSummary(ctx, s.db.Client, c.ID)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	out := offerToProto(o, chatlog.ToProto(c), summarize(c.Edges.Interaction, messages), from)
	out.HandoffSummary = handoff
	return out, nil
}

// summarize tells an agent in one line what the customer wants.
func summarize(in *ent.Interaction, messages int) string {
	s := fmt.Sprintf("%s <%s> via %s about %s; %d message(s) so far", in.Name, in.Email, in.Channel, in.IssueType, messages)
	if in.FirstMessage != "" {
		s += fmt.Sprintf(". First message: %q", in.FirstMessage)
	}
	return s
}
