package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxPrepared bounds how many distinct statements a pool keeps prepared.
// ent builds the same text for the same query shape, so the hot path needs
// a few dozen; shapes that vary (an IN list of varying length) beyond the
// bound run unprepared rather than grow the cache.
const maxPrepared = 1024

// statements prepares each distinct statement text once per pool and keeps
// it, so SQLite parses a hot statement once per connection instead of on
// every call. database/sql prepares a cached statement lazily on each pooled
// connection it runs on and re-prepares it if a connection is replaced.
type statements struct {
	db    *sql.DB
	stmts sync.Map // statement text -> *sql.Stmt
	count atomic.Int64
}

// prepared returns the prepared statement for query, or nil if the cache is
// full (the caller then runs query unprepared).
func (s *statements) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	if s.count.Load() >= maxPrepared {
		return nil, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	s.count.Add(1)
	return st, nil
}

// close closes every prepared statement.
func (s *statements) close() {
	s.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
}

// ErrReadInWrite is returned by the read pool when it is used from inside
// a write transaction: the transaction is the only handle such code may use
// (it sees the transaction's own writes, and no second connection is ever
// held while the write lock is).
var ErrReadInWrite = errors.New("store: the read pool was used inside a write transaction; use the transaction (tx) instead")

// readPool runs ent's statements on the read connections, prepared once,
// and refuses to run inside a write transaction.
type readPool struct {
	statements
}

// ExecContext runs a statement that returns no rows. The read pool's
// connections are query_only, so a write through them fails.
func (p *readPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.statement(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return p.db.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

// QueryContext runs a query.
func (p *readPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.statement(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return p.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// statement is query prepared (nil when the cache is full), unless ctx is
// a write transaction's, which the read pool refuses.
func (p *readPool) statement(ctx context.Context, query string) (*sql.Stmt, error) {
	if inWrite(ctx) {
		return nil, ErrReadInWrite
	}
	st, err := p.prepared(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("store: prepare: %w", classify(err))
	}
	return st, nil
}

// batchConn runs a write transaction's statements inside the writer's
// current batch, with the writer's prepared statements. A statement runs
// to completion even if its caller has gone: interrupting SQLite inside an
// explicit transaction may roll back the whole transaction, which holds
// other callers' writes too.
type batchConn struct {
	stmts *statements
	tx    *sql.Tx
}

// ExecContext runs a statement that returns no rows.
func (c *batchConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := c.stmts.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.tx.ExecContext(ctx, query, args...)
	}
	return c.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// QueryContext runs a query.
func (c *batchConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := c.stmts.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.tx.QueryContext(ctx, query, args...)
	}
	return c.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}
