package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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

// IsUnavailable reports whether err is (or wraps) the database being out
// of reach: PostgreSQL refusing or dropping connections (a restart, a
// failover, a network cut, an administrator ending sessions), so that the
// call may succeed if retried shortly. A write cut off this way may or may
// not have committed: its retry must carry the same idempotency key.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if pg, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pg.Code, "08"): // connection exception
			return true
		case pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03": // admin or crash shutdown, cannot connect now
			return true
		}
		return false
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	// A connection pgx found closed, or lost mid-reply.
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
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
