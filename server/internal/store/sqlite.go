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

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/parleyhq/parley/ent"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

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
		Client:  ent.NewClient(ent.Driver(entsql.NewDriver(dialect.SQLite, entsql.Conn{ExecQuerier: read}))),
		engine:  &sqliteEngine{read: read, writer: newWriter(wdb, opts.Writer)},
		dialect: dialect.SQLite,
	}, nil
}

// sqliteEngine is SQLite's: one writer and a read pool.
type sqliteEngine struct {
	read   *readPool
	writer *writer
}

func (e *sqliteEngine) write(ctx context.Context, fn func(context.Context, *ent.Tx) error) error {
	return e.writer.write(ctx, fn)
}

func (e *sqliteEngine) queued() int    { return len(e.writer.queue) }
func (e *sqliteEngine) commits() int64 { return e.writer.commits.Load() }

func (e *sqliteEngine) ping(ctx context.Context) error {
	if err := e.read.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if e.writer.isClosed() {
		return ErrClosed
	}
	return nil
}

// close stops the writer (writes still queued are refused with ErrClosed)
// and closes both pools.
func (e *sqliteEngine) close() error {
	e.writer.close()
	e.read.close()
	return errors.Join(e.writer.db.Close(), e.read.db.Close())
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
