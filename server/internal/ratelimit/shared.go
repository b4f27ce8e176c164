package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/ratebucket"
	"github.com/parleyhq/parley/server/internal/store"
)

// For returns the buckets of r named name on db: in the store on
// PostgreSQL, where several replicas share them, in memory on SQLite.
func For(db *store.DB, name string, r Rate, log *slog.Logger) Buckets {
	if db.Dialect() == "postgres" {
		return NewShared(db, name, r, log)
	}
	return New(r)
}

// Shared keeps one bucket per key in the store (ent RateBucket), as the
// generic cell rate algorithm does: a bucket is the theoretical arrival
// time (TAT) of the next write; a write at now is allowed if
// max(TAT, now) + interval - now <= burst x interval, and then moves the
// TAT to max(TAT, now) + interval. One statement checks and spends, so
// replicas spending from one bucket at once never overspend it.
//
// If the store cannot be reached, a replica falls back to a bucket of its
// own in memory (the limit then holds per replica) rather than refuse
// every write.
type Shared struct {
	db       *store.DB
	name     string
	interval time.Duration // between two writes at the steady rate
	limit    time.Duration // burst x interval
	local    *Limiter
	log      *slog.Logger
}

// NewShared returns the buckets of r named name, kept in db.
func NewShared(db *store.DB, name string, r Rate, log *slog.Logger) *Shared {
	interval := time.Duration(float64(time.Second) / r.PerSecond)
	return &Shared{
		db: db, name: name, interval: interval, limit: time.Duration(r.Burst) * interval,
		local: New(r), log: log,
	}
}

// take spends one write if the bucket has it, and returns the TAT it
// leaves (or, refused, the TAT it found).
var take = "INSERT INTO " + ratebucket.Table + " AS b (id, tat) VALUES ($1, $2::bigint + $3::bigint) " +
	"ON CONFLICT (id) DO UPDATE SET tat = GREATEST(b.tat, $2::bigint) + $3::bigint " +
	"WHERE GREATEST(b.tat, $2::bigint) + $3::bigint - $2::bigint <= $4::bigint RETURNING tat"

// Spend spends one write of key's bucket inside tx: one statement checks
// and spends; if tx does not commit, nothing was spent.
func (s *Shared) Spend(ctx context.Context, tx *ent.Tx, key string, now time.Time) (bool, time.Duration, error) {
	id := s.name + "/" + key
	n := now.UnixNano()
	rows, err := tx.QueryContext(ctx, take, id, n, int64(s.interval), int64(s.limit))
	if err != nil {
		return false, 0, fmt.Errorf("spend from bucket %s: %w", id, err)
	}
	defer rows.Close()
	if rows.Next() {
		return true, 0, rows.Close()
	}
	if err := rows.Err(); err != nil {
		return false, 0, fmt.Errorf("spend from bucket %s: %w", id, err)
	}
	rows.Close()
	found, err := tx.RateBucket.Get(ctx, id)
	if err != nil {
		return false, 0, fmt.Errorf("read bucket %s: %w", id, err)
	}
	return false, time.Duration(max(found.Tat, n)+int64(s.interval)-n) - s.limit, nil
}

// Take spends one write of key's bucket at now.
func (s *Shared) Take(ctx context.Context, key string, now time.Time) (bool, time.Duration) {
	_, ok, wait := s.Reserve(ctx, key, now)
	return ok, wait
}

// Reserve spends one write of key's bucket at now, in a transaction of
// its own; undo gives it back.
func (s *Shared) Reserve(ctx context.Context, key string, now time.Time) (undo func(), ok bool, wait time.Duration) {
	id := s.name + "/" + key
	// The bucket's row is the only thing read or written, by one upsert
	// that checks and spends: READ COMMITTED is enough (it waits for the
	// row's lock and re-reads it, never aborts).
	err := store.InTx(store.ReadCommitted(ctx), s.db, func(ctx context.Context, tx *ent.Tx) error {
		var err error
		ok, wait, err = s.Spend(ctx, tx, key, now)
		return err
	})
	if err != nil {
		s.log.Warn("rate limit: the store's buckets cannot be reached; limiting per replica", "bucket", id, "err", err)
		return s.local.Reserve(ctx, key, now)
	}
	if !ok {
		return nil, false, wait
	}
	return func() {
		err := store.InTx(store.ReadCommitted(context.WithoutCancel(ctx)), s.db, func(ctx context.Context, tx *ent.Tx) error {
			return tx.RateBucket.UpdateOneID(id).AddTat(-int64(s.interval)).Exec(ctx)
		})
		if err != nil {
			s.log.Warn("rate limit: could not give a write back", "bucket", id, "err", err)
		}
	}, true, 0
}
