// Package store opens Parley's database: ent on modernc SQLite (the embedded
// default) with the pragmas Parley relies on checked at startup, and runs
// transactions.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/parleyhq/parley/ent"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// BusyTimeoutMillis is how long a writer waits for SQLite's write lock.
const BusyTimeoutMillis = 10000

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
// foreign keys, a busy timeout, immediate transactions and the given
// synchronous setting, checks that the pragmas are in force, and migrates
// the schema.
func OpenSQLite(ctx context.Context, path string, sync Synchronous) (*ent.Client, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	syncValue, err := sync.pragmaValue()
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMillis))
	q.Add("_pragma", "synchronous("+strings.ToUpper(string(sync))+")")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Readers run concurrently under WAL; writers queue on SQLite's lock,
	// which BEGIN IMMEDIATE takes up front under the busy timeout.
	db.SetMaxOpenConns(8)
	if err := checkPragmas(ctx, db, syncValue); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.SQLite, db)))
	// ent's migration writes to the package-level table descriptions, so
	// two stores opening at once (parallel tests) must take turns.
	migrating.Lock()
	err = client.Schema.Create(ctx)
	migrating.Unlock()
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	return client, nil
}

// migrating serializes schema migrations within the process.
var migrating sync.Mutex

// checkPragmas reads the connection's pragmas back and fails unless every
// one Parley relies on is in force.
func checkPragmas(ctx context.Context, db *sql.DB, syncValue string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	want := map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"busy_timeout": fmt.Sprint(BusyTimeoutMillis),
		"synchronous":  syncValue,
	}
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

// InTx runs fn in a transaction and commits it, or rolls it back if fn
// returns an error or panics. On SQLite the transaction is BEGIN IMMEDIATE,
// so it holds the write lock from its first statement.
func InTx(ctx context.Context, client *ent.Client, fn func(tx *ent.Tx) error) (err error) {
	tx, err := client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("store: rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}
