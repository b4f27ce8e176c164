package store

import (
	"errors"
	"time"

	"modernc.org/sqlite"
)

// RetryAfter is the wait an overloaded store suggests before a retry.
const RetryAfter = time.Second

// ErrClosed refuses writes to a store that is closing.
var ErrClosed = errors.New("store: closed")

// Overloaded is the error of a write the store could not take in time: its
// queue was full, it waited longer than the writer's MaxWait, or another
// process held the database's write lock past the busy timeout. Nothing of
// the write was done; it may be retried after RetryAfter.
type Overloaded struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *Overloaded) Error() string { return "store: overloaded: " + e.Reason }

func overloaded(reason string) error {
	return &Overloaded{Reason: reason, RetryAfter: RetryAfter}
}

// IsOverloaded reports whether err is (or wraps) an overloaded store's
// refusal, and how long to wait before a retry.
func IsOverloaded(err error) (time.Duration, bool) {
	if o, ok := errors.AsType[*Overloaded](err); ok {
		return o.RetryAfter, true
	}
	return 0, false
}

// classify turns SQLite's busy and locked errors (another process holds
// the database past the busy timeout) into Overloaded, keeping the cause.
func classify(err error) error {
	if serr, ok := errors.AsType[*sqlite.Error](err); ok {
		switch serr.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return errors.Join(overloaded("the database is locked by another process"), err)
		}
	}
	return err
}
