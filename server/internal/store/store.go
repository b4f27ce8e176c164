// Package store opens Parley's database, ent on modernc SQLite (the
// embedded default) with the pragmas Parley relies on checked at startup,
// and runs its transactions: reads on a pool of read-only connections that
// never wait behind a write, every write on one writer that serializes
// them in Go and groups the queued ones into one commit (see InTx), and an
// overloaded writer refuses with Overloaded instead of making callers wait.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/parleyhq/parley/ent"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DefaultBusyTimeout is how long the writer waits for SQLite's write lock
// when another process holds it.
const DefaultBusyTimeout = 10 * time.Second

// Synchronous is SQLite's synchronous setting, which decides which crashes
// a committed transaction (and so an acknowledgement) survives. In WAL
// mode:
//   - SyncNormal: a commit survives the process crashing or being killed
//     (it is in the WAL, which the OS holds), but the last commits before
//     a power loss or OS crash may be rolled back. The database is never
//     corrupted. This is the default: commits need no fsync.
//   - SyncFull: the WAL is fsynced at every commit, so a commit also
//     survives power loss and OS crashes, at the cost of one fsync per
//     write.
type Synchronous string

// The synchronous settings parleyd offers.
const (
	SyncNormal Synchronous = "normal"
	SyncFull   Synchronous = "full"
)

// pragmaValue is what PRAGMA synchronous reads back.
func (s Synchronous) pragmaValue() (string, error) {
	switch s {
	case SyncNormal:
		return "1", nil
	case SyncFull:
		return "2", nil
	}
	return "", fmt.Errorf("store: synchronous %q is not one of normal, full", string(s))
}

// DB is Parley's database. Reads go through the embedded client, whose
// pool of read-only connections never waits behind a write (WAL readers
// see the last commit). Writes go through InTx, and only through it.
type DB struct {
	*ent.Client
	read   *readPool
	writer *writer

	closing  sync.Once
	closeErr error
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
}

// OpenSQLite opens (creating if needed) the SQLite file at path with WAL,
// foreign keys and a busy timeout, checks that the pragmas are in force,
// and migrates the schema. Writes run on one connection, serialized and
// grouped by the writer; reads run on a pool of query_only connections that
// keeps its connections open (each one parses a statement once).
func OpenSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	if opts.Synchronous == "" {
		opts.Synchronous = SyncNormal
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	syncValue, err := opts.Synchronous.pragmaValue()
	if err != nil {
		return nil, err
	}
	wdb, err := openPool(ctx, path, opts, syncValue, false, 2)
	if err != nil {
		return nil, err
	}
	// ent's migration writes to the package-level table descriptions, so
	// two stores opening at once (parallel tests) must take turns.
	migrating.Lock()
	err = ent.NewClient(ent.Driver(entsql.OpenDB(dialect.SQLite, wdb))).Schema.Create(ctx)
	migrating.Unlock()
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	readers := opts.ReadConnections
	if readers <= 0 {
		readers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	rdb, err := openPool(ctx, path, opts, syncValue, true, readers)
	if err != nil {
		wdb.Close()
		return nil, err
	}
	read := &readPool{statements{db: rdb}}
	return &DB{
		Client: ent.NewClient(ent.Driver(entsql.NewDriver(dialect.SQLite, entsql.Conn{ExecQuerier: read}))),
		read:   read,
		writer: newWriter(wdb, opts.Writer),
	}, nil
}

// openPool opens a pool of n connections to path that it keeps open, with
// the pragmas Parley relies on, and checks them. Read pools are query_only;
// the write pool takes the write lock at BEGIN (BEGIN IMMEDIATE), so a
// transaction never fails half-way to upgrade its lock. The writer uses
// one of its two connections for transactions and the other to prepare
// statements while a transaction holds the first.
func openPool(ctx context.Context, path string, opts Options, syncValue string, readOnly bool, n int) (*sql.DB, error) {
	busy := opts.BusyTimeout.Milliseconds()
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy))
	q.Add("_pragma", "synchronous("+strings.ToUpper(string(opts.Synchronous))+")")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	want := map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"busy_timeout": fmt.Sprint(busy),
		"synchronous":  syncValue,
	}
	if readOnly {
		want["query_only"] = "1"
	}
	if err := checkPragmas(ctx, db, want); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return db, nil
}

// migrating serializes schema migrations within the process.
var migrating sync.Mutex

// checkPragmas reads the connection's pragmas back and fails unless every
// one Parley relies on is in force.
func checkPragmas(ctx context.Context, db *sql.DB, want map[string]string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	for pragma, expected := range want {
		var got string
		if err := conn.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			return fmt.Errorf("read pragma %s: %w", pragma, err)
		}
		if strings.ToLower(got) != expected {
			return fmt.Errorf("pragma %s is %q, want %q", pragma, got, expected)
		}
	}
	return nil
}

// Close stops the writer (writes still queued are refused with ErrClosed)
// and closes both pools.
func (db *DB) Close() error {
	db.closing.Do(func() {
		db.writer.close()
		db.read.close()
		db.closeErr = errors.Join(db.writer.db.Close(), db.read.db.Close())
	})
	return db.closeErr
}

// Queued is how many write transactions wait for the writer.
func (db *DB) Queued() int { return len(db.writer.queue) }

// Commits is how many commits the writer has made; with group commit it is
// at most the number of write transactions.
func (db *DB) Commits() int64 { return db.writer.commits.Load() }

// InTx runs fn as one write transaction and returns once it has committed,
// or with fn's error (and nothing of fn written) if fn fails or panics
// (the panic is re-raised in the caller). fn runs on the writer, after the
// writes queued before it, with the transaction as its only handle: its
// ctx is marked so that the read pool (db's client) refuses to serve it,
// and it is not canceled with the caller's (a started write finishes).
// fn must not block on anything but the store: every other write waits for
// it. An overloaded store refuses with ErrOverloaded.
func InTx(ctx context.Context, db *DB, fn func(ctx context.Context, tx *ent.Tx) error) error {
	return db.writer.write(ctx, fn)
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
