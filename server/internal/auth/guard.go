package auth

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/token"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/store"
)

// Reasons a stream's credential stopped holding.
const (
	ReasonTokenRevoked = "TOKEN_REVOKED"
	ReasonTokenExpired = "TOKEN_EXPIRED"
)

// Guard keeps checking the credential of an open stream: the interceptor
// checked it once, when the stream opened, but a token can be revoked and
// any credential expires while the stream runs. A stream calls Check when
// it wakes (which reads the store, so a revocation on any replica counts),
// Still before every item it sends (free unless a revocation notice came
// on this replica or the expiry passed), and selects on Changed and
// Expired to wake at once when the credential may have stopped holding.
type Guard struct {
	db      *store.DB
	hub     *events.Hub
	clk     clock.Clock
	p       *Principal
	expiry  clock.Timer
	changed <-chan struct{}
}

// NewGuard returns the guard of a stream opened by p. Stop it when the
// stream ends.
func NewGuard(db *store.DB, hub *events.Hub, clk clock.Clock, p *Principal) *Guard {
	g := &Guard{db: db, hub: hub, clk: clk, p: p}
	if !p.Expires.IsZero() {
		g.expiry = clk.NewTimer(max(p.Expires.Sub(clk.Now()), 0))
	}
	g.arm()
	return g
}

// Stop releases the guard's timer.
func (g *Guard) Stop() {
	if g.expiry != nil {
		g.expiry.Stop()
	}
}

// arm takes the next revocation notice of the stream's token on this
// replica (a customer JWT is never revoked, only expires).
func (g *Guard) arm() {
	if g.p.Role != RoleCustomer {
		g.changed = g.hub.Wait(events.TokenKey(g.p.TokenID.String()))
	}
}

// Changed returns a channel that is closed at the next revocation of the
// stream's token on this replica after the last Check. Revocations on
// other replicas are seen by the next Check.
func (g *Guard) Changed() <-chan struct{} {
	return g.changed
}

// Expired returns a channel that fires when the credential expires (nil
// for one that never does). The stream then calls Check, which decides by
// the server's clock.
func (g *Guard) Expired() <-chan time.Time {
	if g.expiry == nil {
		return nil
	}
	return g.expiry.C()
}

// Still is Check if a revocation notice came on this replica or the
// credential's expiry passed since the last Check, and nil otherwise: cheap
// enough to call before every item a stream sends.
func (g *Guard) Still(ctx context.Context) error {
	if !g.p.Expires.IsZero() && !g.clk.Now().Before(g.p.Expires) {
		return g.Check(ctx)
	}
	select {
	case <-g.changed:
		return g.Check(ctx)
	default:
		return nil
	}
}

// Check fails with Unauthenticated (reason TOKEN_EXPIRED or TOKEN_REVOKED)
// unless the stream's credential still holds now: not past its expiry and,
// for a Parley token, not revoked (read from the store, so a revocation on
// any replica counts).
func (g *Guard) Check(ctx context.Context) error {
	g.arm() // before the read, so a revocation after it is noticed
	if !g.p.Expires.IsZero() && !g.clk.Now().Before(g.p.Expires) {
		return apierr.New(connect.CodeUnauthenticated, ReasonTokenExpired,
			"your credential expired while the stream was open; get a fresh one and open the stream again")
	}
	if g.p.Role == RoleCustomer {
		return nil
	}
	t, err := g.db.Token.Query().Where(token.ID(g.p.TokenID)).Select(token.FieldRevokedAt).Only(ctx)
	if err != nil && !ent.IsNotFound(err) {
		return apierr.Internal(fmt.Errorf("re-check token: %w", err))
	}
	if ent.IsNotFound(err) || t.RevokedAt != nil {
		return apierr.New(connect.CodeUnauthenticated, ReasonTokenRevoked,
			"your token was revoked while the stream was open")
	}
	return nil
}
