package routing

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Backoff of a failing row: the first retry after rowBackoff, then twice as
// long each time, at most maxRowBackoff.
const (
	rowBackoff    = time.Second
	maxRowBackoff = 5 * time.Minute
)

// failures remembers the rows (a conversation, an offer, an agent, or a
// whole step) whose last attempt failed, so that one bad row is retried
// with backoff and logged once per attempt, while every other row goes on.
type failures struct {
	mu   sync.Mutex
	rows map[string]*strike
}

// strike is a failing row's count of failures in a row and when it may be
// tried again.
type strike struct {
	count   int
	retryAt time.Time
}

func newFailures() *failures {
	return &failures{rows: map[string]*strike{}}
}

// waiting reports whether key is backing off at now.
func (f *failures) waiting(key string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.rows[key]
	return ok && now.Before(s.retryAt)
}

// fail records a failure of key at now and returns how long it backs off.
func (f *failures) fail(key string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.rows[key]
	if !ok {
		s = &strike{}
		f.rows[key] = s
	}
	s.count++
	wait := rowBackoff << min(s.count-1, 20)
	wait = min(wait, maxRowBackoff)
	s.retryAt = now.Add(wait)
	return wait
}

// succeed forgets key's failures.
func (f *failures) succeed(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rows, key)
}

// isolate runs fn for the row named key, unless the row is backing off
// after a failure. A failure or a panic of fn is logged once with the row
// and its next retry, and puts the row on backoff; it is returned, but
// callers go on with the next row. A call cut short because ctx ended is
// neither logged nor counted.
func (d *Dispatcher) isolate(ctx context.Context, key string, fn func() error) error {
	now := d.clk.Now()
	if d.failures.waiting(key, now) {
		return nil
	}
	err := recovered(fn)
	switch {
	case err == nil:
		d.failures.succeed(key)
	case ctx.Err() == nil:
		wait := d.failures.fail(key, now)
		d.log.Error("routing: a row failed; the others go on", "row", key, "err", err, "retry_in", wait)
	}
	return err
}

// recovered runs fn and turns a panic into an error carrying its stack.
func recovered(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return fn()
}

// errRowBroken marks a row the dispatcher cannot use as stored.
var errRowBroken = errors.New("row is broken")
