// Package auth resolves bearer tokens to principals, enforces which kinds of
// caller may call each RPC (in one interceptor), and answers the
// resource-level questions handlers ask.
package auth

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Role is the kind of caller.
type Role string

// The roles a principal can have.
const (
	RoleGuest Role = "guest"
	// RoleCustomer is a signed-in customer, verified by a JWT.
	RoleCustomer Role = "customer"
	RoleAgent    Role = "agent"
	// RoleSupervisor reads every conversation and the queues' waiting
	// work, and may close conversations; it does not post.
	RoleSupervisor Role = "supervisor"
	RoleAdmin      Role = "admin"
)

// Principal is an authenticated caller.
type Principal struct {
	Role Role
	// TokenID identifies the token the caller presented.
	TokenID uuid.UUID
	// AgentID is set for agents.
	AgentID uuid.UUID
	// ConversationID is the one conversation a guest may use.
	ConversationID uuid.UUID
	// ConsumerID is a customer's consumer record.
	ConsumerID uuid.UUID
	// Tier is a customer's service tier, from their token.
	Tier string
	// Expires is when the credential stops working; zero never.
	Expires time.Time
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller, or nil for an anonymous call.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Staff reports whether p works for the company (an agent, a supervisor or
// an admin) rather than being its customer.
func (p *Principal) Staff() bool {
	return p.Role == RoleAgent || p.Role == RoleSupervisor || p.Role == RoleAdmin
}

// Caller names the principal for idempotency keys and rate limits: the
// conversation for a guest (every token of one guest is one caller), the
// agent for an agent, the token for a supervisor or an admin.
func (p *Principal) Caller() string {
	switch p.Role {
	case RoleGuest:
		return "guest:" + p.ConversationID.String()
	case RoleCustomer:
		return "customer:" + p.ConsumerID.String()
	case RoleAgent:
		return "agent:" + p.AgentID.String()
	}
	return string(p.Role) + ":" + p.TokenID.String()
}
