package auth

import (
	"context"
	"log/slog"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/store"
)

// NewInterceptor returns the server interceptor that authenticates the
// bearer token in the Authorization header (a Parley token, or a customer
// JWT that customers verifies) and enforces Policies before any request
// payload is read.
//
// A resolved principal is cached (see CacheTTL and NoteRevocation).
func NewInterceptor(db *store.DB, clk clock.Clock, log *slog.Logger, customers *identity.Verifier) connect.ServerInterceptor {
	cache := newPrincipals()
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
			secret, ok := bearer(header)
			if !ok {
				return apierr.New(connect.CodeUnauthenticated, "MALFORMED_TOKEN",
					"malformed Authorization header: want \"Bearer <token>\"")
			}
			now := clk.Now()
			p, err := cache.resolve(secret, now, func() (*Principal, error) {
				if identity.LooksLikeJWT(secret) {
					return resolveCustomer(ctx, db, customers, secret)
				}
				return resolve(ctx, db.Client, secret, now)
			})
			if err == errBadToken {
				return apierr.New(connect.CodeUnauthenticated, "INVALID_TOKEN",
					"the token is unknown, expired or revoked")
			}
			if err != nil {
				return apierr.Internal(err)
			}
			if !policy.Allows(p.Role) {
				return apierr.New(connect.CodePermissionDenied, "ROLE_NOT_ALLOWED",
					article(string(p.Role))+" may not call "+spec.Procedure)
			}
			return next(WithPrincipal(ctx, p), spec, stream)
		}
	}
}

// bearer returns the token of a "Bearer" Authorization header. The scheme
// is case-insensitive (RFC 9110, section 11.1) and one or more spaces may
// follow it.
func bearer(header string) (string, bool) {
	scheme, rest, found := strings.Cut(header, " ")
	secret := strings.TrimSpace(rest)
	if !found || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", false
	}
	return secret, true
}

// article prefixes word (a role's name) with "a" or "an".
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}
