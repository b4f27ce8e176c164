// Package store opens Parley's database and runs its transactions, on one
// of two stores behind one API:
//
//   - SQLite (modernc, the embedded default): the pragmas Parley relies on
//     are checked at startup; reads go to a pool of read-only connections
//     that never wait behind a write; every write goes to one writer that
//     serializes them in Go and groups the queued ones into one commit, and
//     an overloaded writer refuses with Overloaded instead of making callers
//     wait.
//   - PostgreSQL (pgx), for several parleyd replicas on one database: the
//     schema comes from versioned migrations applied under an advisory lock;
//     every write is a serializable transaction, retried when it loses a
//     race with another, so code that checks and then writes inside InTx is
//     as correct as under SQLite's single writer.
package store

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleyhq/parley/ent"
)

// DefaultBusyTimeout is how long the writer waits for SQLite's write lock
// when another process holds it.
const DefaultBusyTimeout = 10 * time.Second

// DB is Parley's database. Reads go through the embedded client, which
// refuses to run inside a write transaction. Writes go through InTx, and
// only through it.
type DB struct {
	*ent.Client
	engine  engine
	dialect string

	closing  sync.Once
	closeErr error

	observeWrite atomic.Pointer[func(time.Duration)]
}

// engine runs a store's write transactions.
type engine interface {
	// write runs fn as one transaction and returns once it committed.
	write(ctx context.Context, fn func(context.Context, *ent.Tx) error) error
	// queued is how many writes wait to run.
	queued() int
	// commits is how many commits were made.
	commits() int64
	// ping checks that the database answers.
	ping(ctx context.Context) error
	// close stops the engine and closes its connections.
	close() error
}

// Open opens the store that target names: a postgres:// or postgresql://
// URL selects PostgreSQL, anything else is a SQLite file's path.
func Open(ctx context.Context, target string, opts Options) (*DB, error) {
	if IsPostgres(target) {
		return OpenPostgres(ctx, target, opts)
	}
	return OpenSQLite(ctx, target, opts)
}

// IsPostgres reports whether target is a PostgreSQL URL.
func IsPostgres(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// Options tune how a database is opened.
type Options struct {
	// Synchronous is SQLite's synchronous setting; "" means SyncNormal.
	Synchronous Synchronous
	// Writer tunes the writer's queue and group commit.
	Writer WriterOptions
	// ReadConnections is the size of the read pool; 0 means twice the
	// number of CPUs, at least 4.
	ReadConnections int
	// BusyTimeout is how long the writer waits for SQLite's write lock
	// while another process (a second parleyd, a backup tool) holds it,
	// before its writes are refused as overloaded; 0 means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxConns is the size of each of PostgreSQL's two connection pools
	// (reads, writes); 0 means DefaultMaxConns. Each replica holds up to
	// twice this many connections (plus two for its notifier), so keep
	// replicas x (2 x MaxConns + 2) under the server's max_connections.
	MaxConns int
	// LockTimeout is how long a PostgreSQL write waits for a row lock
	// another transaction holds before it is refused as overloaded; 0
	// means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Redact is target fit for a log: a PostgreSQL URL without its password.
func Redact(target string) string {
	if !IsPostgres(target) {
		return target
	}
	u, err := url.Parse(target)
	if err != nil {
		return "a PostgreSQL URL that does not parse"
	}
	return u.Redacted()
}

// Close stops the store (SQLite writes still queued are refused with
// ErrClosed) and closes its connections.
func (db *DB) Close() error {
	db.closing.Do(func() { db.closeErr = db.engine.close() })
	return db.closeErr
}

// Dialect is the store's SQL dialect: "sqlite3" or "postgres" (ent's
// dialect names).
func (db *DB) Dialect() string { return db.dialect }

// Queued is how many write transactions wait to run.
func (db *DB) Queued() int { return db.engine.queued() }

// Commits is how many commits the store has made; with SQLite's group
// commit it is at most the number of write transactions.
func (db *DB) Commits() int64 { return db.engine.commits() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.engine.ping(ctx) }

// InTx runs fn as one write transaction and returns once it has committed,
// or with fn's error (and nothing of fn written) if fn fails or panics
// (the panic is re-raised in the caller). fn gets the transaction as its
// only handle: its ctx is marked so that the read client (db's) refuses to
// serve it, and it is not canceled with the caller's (a started write
// finishes). On SQLite fn runs on the writer, after the writes queued
// before it, so it must not block on anything but the store. On PostgreSQL
// fn runs in a serializable transaction that is retried from the start
// when it loses a race with another, so fn must have no effect outside tx
// but through AfterCommit. An overloaded store refuses with Overloaded.
func InTx(ctx context.Context, db *DB, fn func(ctx context.Context, tx *ent.Tx) error) error {
	if inWrite(ctx) {
		return errors.New("store: a write transaction cannot start another; use the transaction (tx) it was given")
	}
	observe := db.observeWrite.Load()
	if observe == nil {
		return db.engine.write(ctx, fn)
	}
	start := time.Now()
	err := db.engine.write(ctx, fn)
	(*observe)(time.Since(start))
	return err
}

// ObserveWrites has f told how long each write transaction (InTx) took,
// from its call to its answer: waiting for the writer or a connection,
// row-lock waits and retries included.
func (db *DB) ObserveWrites(f func(time.Duration)) { db.observeWrite.Store(&f) }

// Exclusive runs fn while no other replica runs an Exclusive section of
// the same key: on PostgreSQL it holds an advisory lock on key for fn's
// duration (waiting for it as long as ctx allows); on SQLite, whose
// database serves one process, it just runs fn. Use it for background work
// that every replica does and that is wasted when two do it at once (a
// routing pass); correctness never rests on it, as every write re-checks
// what it decides on.
func Exclusive(ctx context.Context, db *DB, key string, fn func() error) error {
	pg, ok := db.engine.(*pgEngine)
	if !ok {
		return fn()
	}
	release, err := pg.exclusive(ctx, key)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// readCommittedKey marks a context whose PostgreSQL writes run at READ
// COMMITTED.
type readCommittedKey struct{}

// ReadCommitted returns a context whose write transactions run at READ
// COMMITTED instead of SERIALIZABLE on PostgreSQL (SQLite's single writer
// is serial either way), so they are never aborted for a conflict that
// only serializability sees. Use it only for a transaction whose every
// check is atomic in the statement that depends on it (a conditional
// update that re-reads the row it locks, an upsert, a unique constraint)
// or made under a Serialize key that every conflicting writer also takes:
// the hot send path is the case (chatlog.AppendPost checks the state in
// its UPDATE).
func ReadCommitted(ctx context.Context) context.Context {
	return context.WithValue(ctx, readCommittedKey{}, true)
}

func readCommitted(ctx context.Context) bool {
	rc, _ := ctx.Value(readCommittedKey{}).(bool)
	return rc
}

// serialKey holds a context's Serialize keys.
type serialKey struct{}

// Serialize returns a context whose write transactions (InTx) take turns
// with every other transaction serialized on one of keys: on PostgreSQL
// they take an advisory lock per key before they begin, so transactions
// that contend on the same rows (a conversation's sends, the guest-start
// count) wait for each other instead of failing serialization and being
// retried. It changes nothing for correctness (every write is
// serializable anyway) and nothing on SQLite (whose writer runs one
// transaction at a time). Keys name what is contended, such as
// "guest-starts".
func Serialize(ctx context.Context, keys ...string) context.Context {
	keys = append(slices.Clone(serialKeys(ctx)), keys...)
	slices.Sort(keys) // one order, so two transactions never deadlock
	return context.WithValue(ctx, serialKey{}, slices.Compact(keys))
}

func serialKeys(ctx context.Context) []string {
	keys, _ := ctx.Value(serialKey{}).([]string)
	return keys
}

// Write runs fn as one write transaction, as InTx does, and returns its
// result once it has committed.
func Write[T any](ctx context.Context, db *DB, fn func(ctx context.Context, tx *ent.Tx) (T, error)) (T, error) {
	var out T
	err := InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		var err error
		out, err = fn(ctx, tx)
		return err
	})
	return out, err
}
