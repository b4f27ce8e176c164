// Package ratelimit limits how often each caller may make each kind of
// write: a bucket per caller and class, a burst and then a steady rate, so
// one caller running out never affects another. Refusals are
// ResourceExhausted with a RetryInfo detail.
//
// Two kinds of Buckets: Limiter keeps them in memory (golang.org/x/time/rate;
// the SQLite default, one process), Shared keeps them in the store, so
// that every replica on one PostgreSQL database spends from the same
// bucket and a limit is not multiplied by the replica count. For picks the
// one that fits the store.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"golang.org/x/time/rate"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/store"
)

// maxIdleBuckets is how many buckets are kept before the full (idle) ones
// are dropped; a dropped bucket comes back full, which is what it was.
const maxIdleBuckets = 10_000

// Rate is a bucket's shape: Burst writes at once, then PerSecond.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Buckets spends writes from one bucket per key.
type Buckets interface {
	// Take spends one write of key's bucket at now. If there is none, it
	// returns false and how long until there is.
	Take(ctx context.Context, key string, now time.Time) (bool, time.Duration)
	// Reserve is Take for a write that may turn out not to need the spend
	// (a retry of one already done, or one the server could not do): undo
	// gives it back.
	Reserve(ctx context.Context, key string, now time.Time) (undo func(), ok bool, wait time.Duration)
	// Spend spends one write of key's bucket as part of the write
	// transaction tx (ctx is its context): if tx does not commit, nothing
	// was spent. If there is none, it returns false and how long until
	// there is.
	Spend(ctx context.Context, tx *ent.Tx, key string, now time.Time) (bool, time.Duration, error)
}

// Limiter holds one bucket per key for one Rate, in memory.
type Limiter struct {
	rate Rate

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// New returns a limiter of r.
func New(r Rate) *Limiter {
	return &Limiter{rate: r, buckets: make(map[string]*rate.Limiter)}
}

// Take spends one write of key's bucket at now. If there is none, it
// returns false and how long until there is.
func (l *Limiter) Take(ctx context.Context, key string, now time.Time) (bool, time.Duration) {
	_, ok, wait := l.Reserve(ctx, key, now)
	return ok, wait
}

// Reserve is Take for a write that may turn out not to need the spend (a
// retry of one already done, or one the server could not do): undo gives
// it back.
func (l *Limiter) Reserve(_ context.Context, key string, now time.Time) (undo func(), ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= maxIdleBuckets {
			l.dropFull(now)
		}
		b = rate.NewLimiter(rate.Limit(l.rate.PerSecond), l.rate.Burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return nil, false, time.Second
	}
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return nil, false, wait
	}
	// Cancelled as of when it was made: a reservation whose time has
	// passed cannot be cancelled later (rate.Reservation.CancelAt), and
	// the call that gives it back ends after that.
	return func() { r.CancelAt(now) }, true, 0
}

// Spend spends one write of key's bucket for the write transaction whose
// ctx this is, and gives it back if the transaction does not commit.
func (l *Limiter) Spend(ctx context.Context, _ *ent.Tx, key string, now time.Time) (bool, time.Duration, error) {
	undo, ok, wait := l.Reserve(ctx, key, now)
	if ok {
		store.OnRollback(ctx, undo)
	}
	return ok, wait, nil
}

// dropFull forgets buckets that have refilled.
func (l *Limiter) dropFull(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.rate.Burst) {
			delete(l.buckets, k)
		}
	}
}

// Refusal is the error for a write refused by a limit: ResourceExhausted
// with reason, a message saying what to do, and a RetryInfo detail.
func Refusal(reason, what string, wait time.Duration) *connect.Error {
	return apierr.WithRetry(apierr.New(connect.CodeResourceExhausted, reason,
		fmt.Sprintf("%s too fast; try again in %s", what, wait.Round(time.Millisecond))), wait)
}
