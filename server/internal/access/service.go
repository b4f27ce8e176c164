// Package access serves AccessService: staff tokens (issue, revoke, list)
// and the sites that embed the messenger, whose origins CORS answers.
package access

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/site"
	"github.com/parleyhq/parley/ent/token"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/origin"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/store"
)

// Service implements parleyv1connect.AccessServiceHandler.
type Service struct {
	db      *store.DB
	hub     *events.Hub
	clk     clock.Clock
	origins *Origins
}

var _ parleyv1connect.AccessServiceHandler = (*Service)(nil)

// NewService returns the service; origins is told when sites change (and
// other replicas through hub's ConfigKey), and hub wakes the streams of a
// revoked token so that they end.
func NewService(db *store.DB, hub *events.Hub, clk clock.Clock, origins *Origins) *Service {
	return &Service{db: db, hub: hub, clk: clk, origins: origins}
}

// IssueToken stores a new staff token and returns its secret once.
func (s *Service) IssueToken(ctx context.Context, req *parleyv1.IssueTokenRequest) (*parleyv1.IssueTokenResponse, error) {
	t := auth.StaffToken{Role: roleFromProto[req.GetRole()], Label: req.GetLabel()}
	if req.GetTtl() != nil {
		t.Expires = s.clk.Now().Add(req.GetTtl().AsDuration())
	}
	var secret string
	var row *ent.Token
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		if t.Role == auth.RoleAgent {
			t.AgentID = uuid.MustParse(req.GetAgentId())
			exists, err := tx.Agent.Query().Where(agent.ID(t.AgentID)).Exist(ctx)
			if err != nil {
				return fmt.Errorf("check agent: %w", err)
			}
			if !exists {
				return apierr.New(connect.CodeNotFound, "AGENT_NOT_FOUND",
					fmt.Sprintf("agent %s does not exist; create it with RoutingService.CreateAgent", t.AgentID))
			}
		}
		var err error
		secret, row, err = auth.IssueStaffToken(ctx, tx, t)
		return err
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	return &parleyv1.IssueTokenResponse{Token: secret, Info: tokenToProto(row)}, nil
}

// RevokeToken revokes a token; revoking it again changes nothing.
func (s *Service) RevokeToken(ctx context.Context, req *parleyv1.RevokeTokenRequest) (*parleyv1.RevokeTokenResponse, error) {
	id := uuid.MustParse(req.GetTokenId())
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		auth.NoteRevocation(ctx)
		return tx.Token.Update().
			Where(token.ID(id), token.RevokedAtIsNil()).
			SetRevokedAt(s.clk.Now()).
			Exec(ctx)
	})
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("revoke token %s: %w", id, err))
	}
	// Streams opened with the token re-check it and end.
	s.hub.Notify(events.TokenKey(id.String()))
	row, err := s.db.Token.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, apierr.New(connect.CodeNotFound, "TOKEN_NOT_FOUND", fmt.Sprintf("token %s does not exist", id))
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load token %s: %w", id, err))
	}
	return &parleyv1.RevokeTokenResponse{Info: tokenToProto(row)}, nil
}

// ListTokens lists staff tokens, newest first (ids are time-ordered).
func (s *Service) ListTokens(ctx context.Context, req *parleyv1.ListTokensRequest) (*parleyv1.ListTokensResponse, error) {
	before, err := paging.DecodeID("tokens", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	q := s.db.Token.Query().Where(token.RoleNEQ(token.RoleGuest))
	if before != uuid.Nil {
		q.Where(token.IDLT(before))
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := q.Order(ent.Desc(token.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list tokens: %w", err))
	}
	page, next := paging.Trim(rows, size, "tokens", func(t *ent.Token) string { return t.ID.String() })
	resp := &parleyv1.ListTokensResponse{NextPageToken: next}
	for _, t := range page {
		resp.Tokens = append(resp.Tokens, tokenToProto(t))
	}
	return resp, nil
}

// CreateSite registers a messenger site.
func (s *Service) CreateSite(ctx context.Context, req *parleyv1.CreateSiteRequest) (*parleyv1.CreateSiteResponse, error) {
	in := req.GetSite()
	if in.GetId() != "" {
		return nil, apierr.New(connect.CodeInvalidArgument, "SITE_ID_SET", "site.id is chosen by Parley; leave it empty")
	}
	if err := checkOrigins(in.GetAllowedOrigins()); err != nil {
		return nil, err
	}
	row, err := store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (*ent.Site, error) {
		return tx.Site.Create().
			SetDisplayName(in.GetDisplayName()).
			SetAllowedOrigins(in.GetAllowedOrigins()).
			SetMaxGuestSessionsPerHour(int(in.GetMaxGuestSessionsPerHour())).
			SetBot(siteBotFromProto(in.GetBot())).
			Save(ctx)
	})
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("create site: %w", err))
	}
	s.origins.Invalidate()
	s.hub.Notify(events.ConfigKey)
	return &parleyv1.CreateSiteResponse{Site: siteToProto(row)}, nil
}

// UpdateSite replaces a site's fields.
func (s *Service) UpdateSite(ctx context.Context, req *parleyv1.UpdateSiteRequest) (*parleyv1.UpdateSiteResponse, error) {
	in := req.GetSite()
	if in.GetId() == "" {
		return nil, apierr.New(connect.CodeInvalidArgument, "SITE_ID_MISSING", "site.id must name the site to update")
	}
	if err := checkOrigins(in.GetAllowedOrigins()); err != nil {
		return nil, err
	}
	id := uuid.MustParse(in.GetId())
	row, err := store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (*ent.Site, error) {
		return tx.Site.UpdateOneID(id).
			SetDisplayName(in.GetDisplayName()).
			SetAllowedOrigins(in.GetAllowedOrigins()).
			SetMaxGuestSessionsPerHour(int(in.GetMaxGuestSessionsPerHour())).
			SetBot(siteBotFromProto(in.GetBot())).
			Save(ctx)
	})
	if ent.IsNotFound(err) {
		return nil, apierr.New(connect.CodeNotFound, "SITE_NOT_FOUND", fmt.Sprintf("site %s does not exist", id))
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("update site %s: %w", id, err))
	}
	s.origins.Invalidate()
	s.hub.Notify(events.ConfigKey)
	return &parleyv1.UpdateSiteResponse{Site: siteToProto(row)}, nil
}

// ListSites lists sites by id.
func (s *Service) ListSites(ctx context.Context, req *parleyv1.ListSitesRequest) (*parleyv1.ListSitesResponse, error) {
	after, err := paging.DecodeID("sites", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), 100, 500)
	rows, err := s.db.Site.Query().Where(site.IDGT(after)).Order(ent.Asc(site.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list sites: %w", err))
	}
	page, next := paging.Trim(rows, size, "sites", func(s *ent.Site) string { return s.ID.String() })
	resp := &parleyv1.ListSitesResponse{NextPageToken: next}
	for _, row := range page {
		resp.Sites = append(resp.Sites, siteToProto(row))
	}
	return resp, nil
}

// checkOrigins refuses a site origin that no browser sends (a default
// port, a trailing dot, an empty label): it could never match.
func checkOrigins(origins []string) error {
	for i, o := range origins {
		if err := origin.Check(o); err != nil {
			return apierr.New(connect.CodeInvalidArgument, "ORIGIN_NOT_AS_BROWSERS_SEND",
				fmt.Sprintf("site.allowed_origins[%d]: %v", i, err))
		}
	}
	return nil
}
