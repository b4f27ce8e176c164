package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/parleyhq/parley/ent"
)

// DefaultMaxConns is the default size of each of a replica's PostgreSQL pools.
const DefaultMaxConns = 12

// DefaultLockTimeout is how long a PostgreSQL write waits for a row lock
// before it is refused as overloaded.
const DefaultLockTimeout = 5 * time.Second

// maxAttempts bounds how often a serializable write is tried when it keeps
// losing races; past it the write is refused as overloaded.
const maxAttempts = 30

// OpenPostgres connects to the PostgreSQL database at dsn (a postgres://
// URL), applies the migrations it lacks (under an advisory lock, so
// replicas starting together take turns) and returns the store. Every
// write runs as a serializable transaction, retried on a serialization
// failure or deadlock; a write that waits longer than opts.LockTimeout for
// a row lock, or keeps losing races, is refused as overloaded.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: parse PostgreSQL URL: %w", err)
	}
	lockTimeout := opts.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["lock_timeout"] = fmt.Sprint(lockTimeout.Milliseconds())
	cfg.RuntimeParams["application_name"] = "parleyd"
	// A sequential scan makes a serializable transaction lock the whole
	// table for conflict detection (so it conflicts with every writer of
	// it); PostgreSQL's manual suggests a low random_page_cost to favour
	// index scans, which lock only what they read.
	cfg.RuntimeParams["random_page_cost"] = "1.1"
	n := opts.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	// Two pools: a write that waits for a row lock holds its connection,
	// and reads must never wait for one behind such writes.
	wdb, rdb := openPGPool(cfg, n), openPGPool(cfg, n)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("store: connect to PostgreSQL at %s: %w", redact(cfg), err)
	}
	if err := migratePostgres(ctx, wdb); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, err
	}
	wait := opts.Writer.MaxWait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	return &DB{
		Client:  ent.NewClient(ent.Driver(entsql.NewDriver(dialect.Postgres, entsql.Conn{ExecQuerier: pgReads{rdb}}))),
		engine:  &pgEngine{db: wdb, reads: rdb, connWait: wait},
		dialect: dialect.Postgres,
	}, nil
}

// openPGPool opens a pool of up to n connections that it keeps open.
func openPGPool(cfg *pgx.ConnConfig, n int) *sql.DB {
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db
}

// redact names the server of cfg without its password.
func redact(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// pgReads runs the read client's statements on the pool and refuses to
// run inside a write transaction, as SQLite's read pool does.
type pgReads struct{ db *sql.DB }

// ExecContext runs a statement that returns no rows.
func (p pgReads) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if inWrite(ctx) {
		return nil, ErrReadInWrite
	}
	return p.db.ExecContext(ctx, query, args...)
}

// QueryContext runs a query.
func (p pgReads) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if inWrite(ctx) {
		return nil, ErrReadInWrite
	}
	return p.db.QueryContext(ctx, query, args...)
}

// pgEngine runs PostgreSQL's write transactions: each on a pooled
// connection, serializable, retried from the start when it loses a race.
type pgEngine struct {
	db       *sql.DB       // the write pool
	reads    *sql.DB       // the read pool, closed with the engine
	connWait time.Duration // how long a write waits for a pooled connection
	waiting  atomic.Int64
	done     atomic.Int64
}

func (e *pgEngine) queued() int    { return int(e.waiting.Load()) }
func (e *pgEngine) commits() int64 { return e.done.Load() }

func (e *pgEngine) ping(ctx context.Context) error {
	if err := e.reads.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (e *pgEngine) close() error { return errors.Join(e.db.Close(), e.reads.Close()) }

// write runs fn until it commits, fails for a reason of its own, or has
// lost maxAttempts races.
func (e *pgEngine) write(ctx context.Context, fn func(context.Context, *ent.Tx) error) error {
	backoff := time.Millisecond
	abortedAttempts := 0
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: write not started: %w", err)
		}
		err := e.attempt(ctx, fn)
		if aborted(err) {
			// A statement failed and fn went on (ent swallows an error
			// reported after a row it read back): the likeliest cause is
			// a lost race, so a few retries; a cause that is not transient
			// fails every time and is answered as it is.
			abortedAttempts++
			if abortedAttempts > maxAbortedAttempts {
				return err
			}
		} else if err == nil || !retryable(err) {
			return classifyPG(err)
		}
		if attempt == maxAttempts {
			return errors.Join(overloaded(fmt.Sprintf("a write lost %d races with concurrent writes", attempt)), err)
		}
		// Jittered exponential backoff, so the losers of one race do not
		// meet again at once.
		t := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: write not retried: %w", ctx.Err())
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// attempt runs fn once in a serializable transaction on its own pooled
// connection, and commits.
func (e *pgEngine) attempt(ctx context.Context, fn func(context.Context, *ent.Tx) error) (err error) {
	e.waiting.Add(1)
	waitCtx, cancel := context.WithTimeout(ctx, e.connWait)
	conn, err := e.db.Conn(waitCtx)
	cancel()
	e.waiting.Add(-1)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return overloaded(fmt.Sprintf("no database connection was free within %s", e.connWait))
		}
		return fmt.Errorf("store: connect: %w", err)
	}
	defer conn.Close()
	if keys := serialKeys(ctx); len(keys) > 0 {
		// Session-level locks taken before BEGIN: the transaction's
		// snapshot is taken once the lock is held, so it sees every write
		// of the previous holder and never conflicts with it.
		unlock, err := lockKeys(ctx, conn, keys)
		if err != nil {
			return err
		}
		defer unlock()
	}
	// A started write runs to completion: canceling it half-way would only
	// make its caller's retry slower.
	req := &writeRequest{}
	wctx := context.WithValue(context.WithoutCancel(ctx), writeKey{}, req)
	isolation := sql.LevelSerializable
	if readCommitted(ctx) {
		isolation = sql.LevelReadCommitted
	}
	sqlTx, err := conn.BeginTx(wctx, &sql.TxOptions{Isolation: isolation})
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	tx, err := ent.NewClient(ent.Driver(&txDriver{tx: sqlTx})).Tx(wctx)
	if err != nil {
		_ = sqlTx.Rollback()
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = sqlTx.Rollback()
			req.rolledBack()
			panic(p)
		}
		if err != nil {
			req.rolledBack()
		}
	}()
	if err := fn(wctx, tx); err != nil {
		if rerr := sqlTx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) && !errors.Is(rerr, driver.ErrBadConn) {
			return errors.Join(err, fmt.Errorf("store: roll back: %w", rerr))
		}
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	e.done.Add(1)
	for _, f := range req.after {
		f()
	}
	return nil
}

// lockKeys takes the advisory locks of keys, in order, and returns the
// function that releases them.
func lockKeys(ctx context.Context, conn *sql.Conn, keys []string) (func(), error) {
	unlock := func() {
		// If this fails the connection is broken, and its locks end with
		// its session.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock_all()")
	}
	for _, k := range keys {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", k); err != nil {
			unlock()
			return nil, classifyPG(fmt.Errorf("store: lock %s: %w", k, err))
		}
	}
	return unlock, nil
}

// exclusive takes key's advisory lock on a connection of its own, waiting
// without lock_timeout (an exclusive section may be long), and returns the
// function that releases it and the connection.
func (e *pgEngine) exclusive(ctx context.Context, key string) (func(), error) {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = 0"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: exclusive %s: %w", key, err)
	}
	unlock, err := lockKeys(ctx, conn, []string{key})
	if err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // drop it: its settings changed
		conn.Close()
		return nil, err
	}
	return func() {
		unlock()
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "RESET lock_timeout"); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// maxAbortedAttempts bounds the retries of a write whose transaction was
// found aborted by an error that fn did not return.
const maxAbortedAttempts = 3

// aborted reports whether err is a statement refused, or a commit turned
// into a rollback, because the transaction had already failed
// (in_failed_sql_transaction): an earlier error was lost on the way to
// fn's caller.
func aborted(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "25P02" || errors.Is(err, pgx.ErrTxCommitRollback)
}

// retryable reports whether err is a transaction losing a race: a
// serialization failure or a deadlock. Retrying it from the start
// re-reads what the winner wrote.
func retryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	return false
}

// classifyPG turns PostgreSQL's refusals for load (a row lock held past
// lock_timeout, too many connections) into Overloaded, keeping the cause.
func classifyPG(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "55P03": // lock_not_available
			return errors.Join(overloaded("a write waited too long for a row another write holds"), err)
		case "53300": // too_many_connections
			return errors.Join(overloaded("the database has no connection to spare"), err)
		}
	}
	return err
}

// txDriver is the ent driver of one write transaction: its only
// transaction is tx, already begun.
type txDriver struct{ tx *sql.Tx }

var errOutsideTx = errors.New("store: statements run only inside the write transaction")

// Exec refuses: statements run in the transaction.
func (d *txDriver) Exec(context.Context, string, any, any) error { return errOutsideTx }

// Query refuses: statements run in the transaction.
func (d *txDriver) Query(context.Context, string, any, any) error { return errOutsideTx }

// Dialect is PostgreSQL.
func (d *txDriver) Dialect() string { return dialect.Postgres }

// Close does nothing: the engine owns the connection.
func (d *txDriver) Close() error { return nil }

// Tx hands out the begun transaction.
func (d *txDriver) Tx(context.Context) (dialect.Tx, error) {
	return &entsql.Tx{Conn: entsql.Conn{ExecQuerier: d.tx}, Tx: d.tx}, nil
}
