// Package retention deletes what Parley keeps only for a while: uploads no
// message references, tokens long expired or revoked, idempotency keys past
// the window in which a client retries, the guest start records behind the
// guest session limits, and sealed guest tokens past the retry window. A
// sweep deletes in small batches, so it never holds the store for long.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/attachment"
	"github.com/parleyhq/parley/ent/gueststart"
	"github.com/parleyhq/parley/ent/idempotencykey"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/ratebucket"
	"github.com/parleyhq/parley/ent/token"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

// Defaults of Policy.
const (
	DefaultAttachments = 24 * time.Hour
	DefaultTokens      = 7 * 24 * time.Hour
	DefaultIdempotency = 24 * time.Hour
	DefaultInterval    = time.Minute
)

// batch bounds the rows one delete statement removes.
const batch = 500

// Policy says how long each kind of record is kept.
type Policy struct {
	// Attachments: an upload no message references is deleted this long
	// after it was uploaded.
	Attachments time.Duration
	// Tokens: a token is deleted this long after it expired or was
	// revoked (until then ListTokens shows it, for audit).
	Tokens time.Duration
	// Idempotency: a retryable write's key and response are kept this long;
	// a retry after that is a new write.
	Idempotency time.Duration
	// GuestStarts: guest start records are kept for the guest session
	// limit's window.
	GuestStarts time.Duration
	// SealedGuestTokens: a guest token sealed for StartGuestChat retries is
	// erased after the retry window.
	SealedGuestTokens time.Duration
}

// Result counts what a sweep deleted.
type Result struct {
	Attachments, Tokens, IdempotencyKeys, GuestStarts, SealedGuestTokens int
	// RateBuckets are the store's rate-limit buckets that had refilled
	// (an absent bucket is a full one).
	RateBuckets int
}

// Sweeper applies a Policy.
type Sweeper struct {
	db     *store.DB
	clk    clock.Clock
	log    *slog.Logger
	policy Policy
}

// NewSweeper returns a sweeper of policy over db.
func NewSweeper(db *store.DB, clk clock.Clock, log *slog.Logger, policy Policy) *Sweeper {
	return &Sweeper{db: db, clk: clk, log: log, policy: policy}
}

// Run sweeps every interval until ctx ends; a failed sweep is logged and
// retried at the next interval.
func (s *Sweeper) Run(ctx context.Context, interval time.Duration) {
	ticker := s.clk.NewTicker(interval)
	defer ticker.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("retention sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// Sweep deletes everything past its retention now.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	now := s.clk.Now()
	var res Result
	var err error
	if res.Attachments, err = sweep(ctx, func() ([]uuid.UUID, error) {
		return s.db.Attachment.Query().
			Where(attachment.Referenced(false), attachment.CreatedAtLT(now.Add(-s.policy.Attachments))).
			Limit(batch).IDs(ctx)
	}, func(ids []uuid.UUID) (int, error) {
		// Re-checked in the delete: a message may have referenced it since.
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.Attachment.Delete().Where(attachment.IDIn(ids...), attachment.Referenced(false)).Exec(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: attachments: %w", err)
	}
	cutoff := now.Add(-s.policy.Tokens)
	if res.Tokens, err = sweep(ctx, func() ([]uuid.UUID, error) {
		return s.db.Token.Query().Where(token.Or(token.ExpiresAtLT(cutoff), token.RevokedAtLT(cutoff))).Limit(batch).IDs(ctx)
	}, func(ids []uuid.UUID) (int, error) {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.Token.Delete().Where(token.IDIn(ids...)).Exec(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: tokens: %w", err)
	}
	if res.IdempotencyKeys, err = sweep(ctx, func() ([]int, error) {
		return s.db.IdempotencyKey.Query().Where(idempotencykey.CreatedAtLT(now.Add(-s.policy.Idempotency))).Limit(batch).IDs(ctx)
	}, func(ids []int) (int, error) {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.IdempotencyKey.Delete().Where(idempotencykey.IDIn(ids...)).Exec(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: idempotency keys: %w", err)
	}
	if res.GuestStarts, err = sweep(ctx, func() ([]int, error) {
		return s.db.GuestStart.Query().Where(gueststart.CreatedAtLT(now.Add(-s.policy.GuestStarts))).Limit(batch).IDs(ctx)
	}, func(ids []int) (int, error) {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.GuestStart.Delete().Where(gueststart.IDIn(ids...)).Exec(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: guest starts: %w", err)
	}
	if res.SealedGuestTokens, err = sweep(ctx, func() ([]uuid.UUID, error) {
		return s.db.Interaction.Query().
			Where(interaction.GuestTokenSealedNotNil(), interaction.CreatedAtLT(now.Add(-s.policy.SealedGuestTokens))).
			Limit(batch).IDs(ctx)
	}, func(ids []uuid.UUID) (int, error) {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.Interaction.Update().Where(interaction.IDIn(ids...)).ClearGuestTokenSealed().Save(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: sealed guest tokens: %w", err)
	}
	if res.RateBuckets, err = sweep(ctx, func() ([]string, error) {
		return s.db.RateBucket.Query().Where(ratebucket.TatLT(now.UnixNano())).Limit(batch).IDs(ctx)
	}, func(ids []string) (int, error) {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return tx.RateBucket.Delete().Where(ratebucket.IDIn(ids...), ratebucket.TatLT(now.UnixNano())).Exec(ctx)
		})
	}); err != nil {
		return res, fmt.Errorf("retention: rate buckets: %w", err)
	}
	return res, nil
}

// sweep finds a batch of ids past retention and acts on them (deletes or
// erases), until a batch comes back empty; it returns how many it acted on.
func sweep[ID any](ctx context.Context, find func() ([]ID, error), act func([]ID) (int, error)) (int, error) {
	total := 0
	for ctx.Err() == nil {
		ids, err := find()
		if err != nil || len(ids) == 0 {
			return total, err
		}
		n, err := act(ids)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil // found but no longer past retention: stop
		}
	}
	return total, ctx.Err()
}
