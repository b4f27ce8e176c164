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

// IssueAgentToken stores a new token for an agent and returns its secret.
func IssueAgentToken(ctx context.Context, tx *ent.Tx, agentID uuid.UUID) (string, error) {
	secret := newSecret(staffTokenPrefix)
	if err := StoreStaffToken(ctx, tx, secret, RoleAgent, agentID); err != nil {
		return "", err
	}
	return secret, nil
}

// StoreStaffToken stores the hash of a given agent or admin secret (used by
// the bootstrap file, whose tokens are chosen by the operator).
func StoreStaffToken(ctx context.Context, tx *ent.Tx, secret string, role Role, agentID uuid.UUID) error {
	create := tx.Token.Create().SetHash(Hash(secret)).SetRole(token.Role(role))
	if role == RoleAgent {
		create.SetAgentID(agentID)
	}
	if err := create.Exec(ctx); err != nil {
		return fmt.Errorf("store %s token: %w", role, err)
	}
	return nil
}

// RevokeGuestTokens revokes every guest token of a conversation.
func RevokeGuestTokens(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, now time.Time) error {
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
	return p, nil
}
