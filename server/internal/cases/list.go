package cases

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/paging"
)

// Page sizes of ListCases.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// ListCases pages through the cases the caller may read (readable) that
// match every filter of the request, newest first. The rule and the filters
// are one query.
func (s *Service) ListCases(ctx context.Context, req *parleyv1.ListCasesRequest) (*parleyv1.ListCasesResponse, error) {
	where, err := readable(auth.FromContext(ctx))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		value string
		where func(uuid.UUID) predicate.ServiceCase
	}{
		{req.GetConsumerId(), servicecase.ConsumerID},
		{req.GetConversationId(), servicecase.ConversationID},
		{req.GetAssignedAgentId(), servicecase.AssignedAgentID},
	} {
		if f.value != "" {
			// The request validator admits only UUIDs here.
			where = append(where, f.where(uuid.MustParse(f.value)))
		}
	}
	if len(req.GetStates()) > 0 {
		states := make([]servicecase.State, 0, len(req.GetStates()))
		for _, st := range req.GetStates() {
			// The request validator admits only defined states.
			states = append(states, storeStates[st])
		}
		where = append(where, servicecase.StateIn(states...))
	}
	scope := listScope(req)
	before, err := paging.DecodeID(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if before != uuid.Nil {
		where = append(where, servicecase.IDLT(before))
	}
	size := paging.Size(req.GetPageSize(), defaultPageSize, maxPageSize)
	rows, err := s.db.ServiceCase.Query().Where(where...).Order(ent.Desc(servicecase.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list cases: %w", err))
	}
	page, next := paging.Trim(rows, size, scope, func(c *ent.ServiceCase) string { return c.ID.String() })
	resp := &parleyv1.ListCasesResponse{NextPageToken: next, Cases: make([]*parleyv1.Case, 0, len(page))}
	for _, c := range page {
		resp.Cases = append(resp.Cases, CaseToProto(c))
	}
	return resp, nil
}

// listScope binds a page token to the filters of the request it came from:
// a digest, so the token stays short whatever the filters.
func listScope(req *parleyv1.ListCasesRequest) string {
	states := make([]string, 0, len(req.GetStates()))
	for _, st := range req.GetStates() {
		states = append(states, st.String())
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{
		strings.ToLower(req.GetConsumerId()), strings.ToLower(req.GetConversationId()), strings.ToLower(req.GetAssignedAgentId()),
		strings.Join(states, ","),
	}, "/")))
	return "cases/" + hex.EncodeToString(sum[:8])
}
