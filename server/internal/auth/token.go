package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/token"
)

// Token prefixes tell a reader what a leaked string is without a lookup.
const (
	guestTokenPrefix = "pg_"
	staffTokenPrefix = "ps_"
)

// Hash returns the stored form of a token.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

func newSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// IssueGuestToken stores a new guest token scoped to conversationID and
// returns its secret, which is never stored.
func IssueGuestToken(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, expires time.Time) (string, error) {
	secret := newSecret(guestTokenPrefix)
	err := tx.Token.Create().
		SetHash(Hash(secret)).
		SetRole(token.RoleGuest).
		SetConversationID(conversationID).
		SetExpiresAt(expires).
		Exec(ctx)
	if err != nil {
		return "", fmt.Errorf("store guest token: %w", err)
	}
	return secret, nil
}

// GuestTokenLive reports whether a guest token secret is still live (not
// revoked, not expired) for conversationID, reading through tx.
func GuestTokenLive(ctx context.Context, tx *ent.Tx, secret string, conversationID uuid.UUID, now time.Time) (bool, error) {
	t, err := tx.Token.Query().Where(token.Hash(Hash(secret))).Only(ctx)
	if ent.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up guest token: %w", err)
	}
	live := t.Role == token.RoleGuest && t.RevokedAt == nil &&
		t.ConversationID != nil && *t.ConversationID == conversationID &&
		(t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
	return live, nil
}

// StaffToken describes a staff token to issue or store.
type StaffToken struct {
	Role Role
	// AgentID is the agent an agent token acts as.
	AgentID uuid.UUID
	// Label says who holds the token.
	Label string
	// Expires is when the token stops working; zero never.
	Expires time.Time
}

// NewStaffSecret returns a fresh random staff token secret.
func NewStaffSecret() string {
	return newSecret(staffTokenPrefix)
}

// IssueStaffToken stores a new token and returns its secret (never stored)
// and its record.
func IssueStaffToken(ctx context.Context, tx *ent.Tx, t StaffToken) (string, *ent.Token, error) {
	secret := NewStaffSecret()
	row, err := StoreStaffToken(ctx, tx, secret, t)
	return secret, row, err
}

// StoreStaffToken stores the hash of a given staff secret (the bootstrap
// file's and the environment's tokens are chosen by the operator).
func StoreStaffToken(ctx context.Context, tx *ent.Tx, secret string, t StaffToken) (*ent.Token, error) {
	create := tx.Token.Create().SetHash(Hash(secret)).SetRole(token.Role(t.Role)).SetLabel(t.Label)
	if t.Role == RoleAgent {
		create.SetAgentID(t.AgentID)
	}
	if !t.Expires.IsZero() {
		create.SetExpiresAt(t.Expires)
	}
	row, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("store %s token: %w", t.Role, err)
	}
	return row, nil
}

// RevokeGuestTokens revokes every guest token of a conversation.
func RevokeGuestTokens(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, now time.Time) error {
	NoteRevocation(ctx)
	_, err := tx.Token.Update().
		Where(token.ConversationID(conversationID), token.RevokedAtIsNil()).
		SetRevokedAt(now).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("revoke guest tokens: %w", err)
	}
	return nil
}

// errBadToken is returned for any token that does not authenticate; callers
// learn nothing about why.
var errBadToken = errors.New("token is unknown, expired or revoked")

// resolve returns the principal of a presented secret.
func resolve(ctx context.Context, db *ent.Client, secret string, now time.Time) (*Principal, error) {
	t, err := db.Token.Query().Where(token.Hash(Hash(secret))).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return nil, errBadToken
	}
	p := &Principal{Role: Role(t.Role), TokenID: t.ID}
	if t.AgentID != nil {
		p.AgentID = *t.AgentID
	}
	if t.ConversationID != nil {
		p.ConversationID = *t.ConversationID
	}
	if t.ExpiresAt != nil {
		p.Expires = *t.ExpiresAt
	}
	return p, nil
}

// GuestTokenHeader carries a guest token beside another credential:
// a signed-in customer claiming its guest conversation sends the guest
// token here, never in a request body or URL.
const GuestTokenHeader = "Parley-Guest-Token"
