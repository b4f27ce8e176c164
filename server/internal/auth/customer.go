package auth

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/consumer"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/store"
)

// resolveCustomer verifies a customer JWT and returns the principal of
// the one consumer record its issuer and subject map to, creating the
// record on the customer's first call. Records made from guests' typed
// forms have no issuer or subject, so they never match.
func resolveCustomer(ctx context.Context, db *store.DB, v *identity.Verifier, raw string) (*Principal, error) {
	claims, err := v.Verify(raw)
	if err != nil {
		return nil, errBadToken
	}
	id, err := consumerOf(ctx, db, claims)
	if ent.IsConstraintError(err) {
		// Two first calls raced; the other created the record.
		id, err = consumerOf(ctx, db, claims)
	}
	if err != nil {
		return nil, err
	}
	return &Principal{Role: RoleCustomer, ConsumerID: id, Tier: claims.Tier, Expires: claims.Expires}, nil
}

func consumerOf(ctx context.Context, db *store.DB, c identity.Claims) (uuid.UUID, error) {
	found, err := db.Consumer.Query().Where(consumer.Issuer(c.Issuer), consumer.Subject(c.Subject)).Only(ctx)
	if err == nil {
		return found.ID, nil
	}
	if !ent.IsNotFound(err) {
		return uuid.UUID{}, fmt.Errorf("look up customer: %w", err)
	}
	var id uuid.UUID
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		created, err := tx.Consumer.Create().
			SetIssuer(c.Issuer).
			SetSubject(c.Subject).
			SetDisplayName(c.Name).
			SetEmail(c.Email).
			SetVerified(true).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("create customer record: %w", err)
		}
		id = created.ID
		return nil
	})
	return id, err
}
