package routing

import (
	"context"
	"fmt"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/paging"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// queueStatus reads one queue's live state.
func queueStatus(ctx context.Context, db *ent.Client, q *ent.Queue) (*parleyv1.QueueStatus, error) {
	out := &parleyv1.QueueStatus{Queue: QueueToProto(q)}
	waiting := db.Conversation.Query().Where(conversation.QueueID(q.ID), conversation.StateEQ(conversation.StateQueued))
	n, err := waiting.Clone().Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("count waiting in %s: %w", q.ID, err)
	}
	out.Waiting = int32(n)
	if n > 0 {
		oldest, err := waiting.Clone().Order(ent.Asc(conversation.FieldQueuedAt)).First(ctx)
		if err != nil {
			return nil, fmt.Errorf("find oldest waiting in %s: %w", q.ID, err)
		}
		out.OldestQueueTime = timestamppb.New(*oldest.QueuedAt)
	}
	members, err := db.Agent.Query().Where(agent.HasQueuesWith(queue.ID(q.ID))).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load members of %s: %w", q.ID, err)
	}
	for _, a := range members {
		for _, c := range Channels {
			if presenceOn(a, c) == agent.PresenceAvailable {
				out.AvailableAgents++
				out.FreeCapacity += int32(max(0, a.Capacity-a.Load))
				break
			}
		}
	}
	return out, nil
}

// ListQueueStatuses lists queues with their waiting counts, oldest waits
// and available agents.
func (s *Service) ListQueueStatuses(ctx context.Context, req *parleyv1.ListQueueStatusesRequest) (*parleyv1.ListQueueStatusesResponse, error) {
	page, next, err := QueuePage(ctx, s.db.Client, "queue-statuses", req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.ListQueueStatusesResponse{NextPageToken: next}
	for _, q := range page {
		st, err := queueStatus(ctx, s.db.Client, q)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Statuses = append(resp.Statuses, st)
	}
	return resp, nil
}

// WatchQueueStatuses sends every queue's status and every agent, then each
// one again whenever it changes. Each wake-up re-reads the store and sends
// the difference from what the stream already told.
func (s *Service) WatchQueueStatuses(ctx context.Context, _ *parleyv1.WatchQueueStatusesRequest, stream parleyv1connect.RoutingServiceWatchQueueStatusesServerStream) error {
	// Timers first, so a client that has the headers knows they are armed.
	beat := s.clk.NewTicker(s.heartbeat)
	defer beat.Stop()
	guard := auth.NewGuard(s.db, s.hub, s.clk, auth.FromContext(ctx))
	defer guard.Stop()
	if err := stream.SendHeaders(); err != nil {
		return err
	}
	sent := map[string]proto.Message{}
	const resume = "open WatchQueueStatuses again: it resends every queue and agent"
	for {
		wake := s.hub.Wait(events.RoutingKey)
		err := guard.Check(ctx)
		if err == nil {
			err = s.sendStatusChanges(ctx, guard, sent, stream)
		}
		if err != nil {
			if ctx.Err() != nil {
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
			if err := stream.Send(&parleyv1.WatchQueueStatusesResponse{Item: &parleyv1.WatchQueueStatusesResponse_Heartbeat{Heartbeat: hb}}); err != nil {
				return err
			}
		}
	}
}

// sendStatusChanges sends the queues and agents whose status changed since
// the stream last told them, checking before each item that the stream's
// credential still holds.
func (s *Service) sendStatusChanges(ctx context.Context, guard *auth.Guard, sent map[string]proto.Message, stream parleyv1connect.RoutingServiceWatchQueueStatusesServerStream) error {
	send := func(item *parleyv1.WatchQueueStatusesResponse) error {
		if err := guard.Still(ctx); err != nil {
			return err
		}
		return stream.Send(item)
	}
	queues, err := s.db.Queue.Query().Order(ent.Asc(queue.FieldID)).All(ctx)
	if err != nil {
		return apierr.Internal(fmt.Errorf("load queues: %w", err))
	}
	for _, q := range queues {
		st, err := queueStatus(ctx, s.db.Client, q)
		if err != nil {
			return apierr.Internal(err)
		}
		key := "queue/" + q.ID.String()
		if prev, ok := sent[key]; ok && proto.Equal(prev, st) {
			continue
		}
		if err := send(&parleyv1.WatchQueueStatusesResponse{Item: &parleyv1.WatchQueueStatusesResponse_QueueStatus{QueueStatus: st}}); err != nil {
			return err
		}
		sent[key] = st
	}
	agents, err := s.db.Agent.Query().Order(ent.Asc(agent.FieldID)).WithQueues().All(ctx)
	if err != nil {
		return apierr.Internal(fmt.Errorf("load agents: %w", err))
	}
	for _, a := range agents {
		out := AgentToProto(a)
		key := "agent/" + a.ID.String()
		if prev, ok := sent[key]; ok && proto.Equal(prev, out) {
			continue
		}
		if err := send(&parleyv1.WatchQueueStatusesResponse{Item: &parleyv1.WatchQueueStatusesResponse_Agent{Agent: out}}); err != nil {
			return err
		}
		sent[key] = out
	}
	return nil
}

// QueuePage reads one page of queues in id order for a List method whose
// page tokens are of kind, and returns the token of the next page.
func QueuePage(ctx context.Context, db *ent.Client, kind, token string, pageSize int32) ([]*ent.Queue, string, error) {
	after, err := paging.DecodeID(kind, token)
	if err != nil {
		return nil, "", err
	}
	size := paging.Size(pageSize, 100, 500)
	rows, err := db.Queue.Query().Where(queue.IDGT(after)).Order(ent.Asc(queue.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, "", apierr.Internal(fmt.Errorf("list queues: %w", err))
	}
	page, next := paging.Trim(rows, size, kind, func(q *ent.Queue) string { return q.ID.String() })
	return page, next, nil
}
