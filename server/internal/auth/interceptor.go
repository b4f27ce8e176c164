package auth

import (
	"context"
	"log/slog"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/clock"
)

// NewInterceptor returns the server interceptor that authenticates the
// bearer token in the Authorization header and enforces Policies before any
// request payload is read.
func NewInterceptor(db *ent.Client, clk clock.Clock, log *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			policy, ok := Policies[spec.Procedure]
			if !ok {
				log.Error("procedure has no authorization policy; refusing", "procedure", spec.Procedure)
				return apierr.New(connect.CodePermissionDenied, "NO_POLICY", "this method is not open to any caller")
			}
			info, _ := connect.CallInfoForServerContext(ctx)
			header := ""
			if info != nil {
				header = info.RequestHeader().Get("Authorization")
			}
			if header == "" {
				if policy.Public {
					return next(ctx, spec, stream)
				}
				return apierr.New(connect.CodeUnauthenticated, "MISSING_TOKEN",
					"missing credentials: send \"Authorization: Bearer <token>\"")
			}
			secret, found := strings.CutPrefix(header, "Bearer ")
			if !found || strings.TrimSpace(secret) == "" {
				return apierr.New(connect.CodeUnauthenticated, "MALFORMED_TOKEN",
					"malformed Authorization header: want \"Bearer <token>\"")
			}
			p, err := resolve(ctx, db, strings.TrimSpace(secret), clk.Now())
			if err == errBadToken {
				return apierr.New(connect.CodeUnauthenticated, "INVALID_TOKEN",
					"the token is unknown, expired or revoked")
			}
			if err != nil {
				return apierr.Internal(err)
			}
			if !policy.Allows(p.Role) {
				return apierr.New(connect.CodePermissionDenied, "ROLE_NOT_ALLOWED",
					"a "+string(p.Role)+" may not call "+spec.Procedure)
			}
			return next(WithPrincipal(ctx, p), spec, stream)
		}
	}
}
