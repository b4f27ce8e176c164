package routing

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/paging"
)

// ListAgentDirectory lists the agents a conversation may be transferred to
// (every agent but the caller), by id, with their presence and free
// capacity on the requested channel (or overall) and their queues. Free
// capacity is room, the measure reserveCapacity applies to a transfer.
func (s *Service) ListAgentDirectory(ctx context.Context, req *parleyv1.ListAgentDirectoryRequest) (*parleyv1.ListAgentDirectoryResponse, error) {
	p := auth.FromContext(ctx)
	channel := ""
	if req.GetChannel() != parleyv1.Channel_CHANNEL_UNSPECIFIED {
		channel = string(chatlog.ChannelFromProto(req.GetChannel()))
	}
	scope := "agent-directory/" + channel
	after, err := paging.DecodeID(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	query := s.db.Agent.Query().Where(agent.IDGT(after))
	if p.Role == auth.RoleAgent {
		query.Where(agent.IDNEQ(p.AgentID))
	}
	rows, err := query.Order(ent.Asc(agent.FieldID)).WithQueues().Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list agent directory: %w", err))
	}
	page, next := paging.Trim(rows, size, scope, func(a *ent.Agent) string { return a.ID.String() })
	// Work per channel matters only where the channel has its own limit.
	var limited []uuid.UUID
	for _, a := range page {
		if _, ok := a.ChannelCapacity[channel]; ok && channel != "" {
			limited = append(limited, a.ID)
		}
	}
	var loads map[uuid.UUID]map[string]int
	if len(limited) > 0 {
		if loads, err = channelLoads(ctx, s.db.Client, limited); err != nil {
			return nil, apierr.Internal(err)
		}
	}
	resp := &parleyv1.ListAgentDirectoryResponse{NextPageToken: next}
	for _, a := range page {
		resp.Agents = append(resp.Agents, directoryEntryToProto(a, channel, room(a, loads[a.ID], channel)))
	}
	return resp, nil
}
