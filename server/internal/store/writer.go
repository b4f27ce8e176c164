package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/clock"
)

// WriterOptions tune the SQLite writer.
type WriterOptions struct {
	// QueueLength is how many write transactions may wait for the writer;
	// one more is refused at once as overloaded. 0 means 1024.
	QueueLength int
	// MaxWait is how long a write transaction may wait behind other writes
	// before it is refused as overloaded instead of run (one that an idle
	// writer takes is always run). 0 means 5 s.
	MaxWait time.Duration
	// MaxBatch is how many queued write transactions at most share one
	// commit. 0 means 64; 1 turns grouping off.
	MaxBatch int
	// Clock measures how long a write waited; nil means the real clock.
	Clock clock.Clock
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.QueueLength <= 0 {
		o.QueueLength = 1024
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}

// writer runs every write transaction of one SQLite database, one at a
// time, on its own connection: SQLite allows one writer, and queueing the
// writers in Go (rather than letting them busy-wait on the file lock) makes
// the wait fair, bounded and cheap. Transactions that queued up while one
// ran share the next commit (group commit): each runs in its own savepoint,
// so one that fails is rolled back alone, and all of them are acknowledged
// only after the one commit (and, with synchronous=FULL, its one fsync).
type writer struct {
	db     *sql.DB
	stmts  *statements
	client *ent.Client
	opts   WriterOptions
	queue  chan *writeRequest
	stop   chan struct{}
	done   chan struct{}

	// gate orders queueing against closing: once closed is set, no
	// request enters the queue, so the writer answers every one that did.
	gate   sync.RWMutex
	closed bool

	mu    sync.Mutex
	batch *sql.Tx // the open batch, used only by the writer's goroutine

	commits atomic.Int64 // commits made, for tests and metrics
	busy    atomic.Bool  // a batch is running
}

// writeRequest is one write transaction waiting for or run by the writer.
type writeRequest struct {
	ctx      context.Context
	fn       func(context.Context, *ent.Tx) error
	queued   time.Time
	state    atomic.Int32 // requestQueued, requestTaken or requestAbandoned
	result   chan error   // buffered: the writer never waits on a caller
	panicked any          // a panic in fn, re-raised in the caller
	after    []func()     // run once fn's writes have committed
	undo     []func()     // run if fn's writes did not commit
	// behind: the writer was busy or others were queued when it came, so
	// its wait counts against MaxWait (one that finds the writer idle
	// waits only to be scheduled).
	behind bool
}

const (
	requestQueued int32 = iota
	requestTaken
	requestAbandoned
)

func newWriter(db *sql.DB, opts WriterOptions) *writer {
	w := &writer{
		db:    db,
		stmts: &statements{db: db},
		opts:  opts.withDefaults(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.queue = make(chan *writeRequest, w.opts.QueueLength)
	w.client = ent.NewClient(ent.Driver(&savepointDriver{w: w}))
	go w.run()
	return w
}

// write queues fn and waits for its outcome: nil once it has committed, its
// error if it failed (then nothing of it was written), or an *Overloaded if
// it could not be run in time.
func (w *writer) write(ctx context.Context, fn func(context.Context, *ent.Tx) error) error {
	req := &writeRequest{ctx: ctx, fn: fn, queued: w.opts.Clock.Now(), result: make(chan error, 1)}
	if err := w.enqueue(req); err != nil {
		return err
	}
	select {
	case err := <-req.result:
		return req.outcome(err)
	case <-ctx.Done():
		if req.state.CompareAndSwap(requestQueued, requestAbandoned) {
			return fmt.Errorf("store: write not started: %w", ctx.Err())
		}
		// It runs already: its outcome is known within one batch.
		return req.outcome(<-req.result)
	}
}

// enqueue queues req unless the writer is closed or its queue is full.
func (w *writer) enqueue(req *writeRequest) error {
	w.gate.RLock()
	defer w.gate.RUnlock()
	if w.closed {
		return ErrClosed
	}
	req.behind = w.busy.Load() || len(w.queue) > 0
	select {
	case w.queue <- req:
		return nil
	default:
		return overloaded("the write queue is full")
	}
}

// outcome re-raises a panic of fn in the caller's goroutine.
func (r *writeRequest) outcome(err error) error {
	if r.panicked != nil {
		panic(r.panicked)
	}
	return err
}

// run is the writer's loop: it takes the first queued request, runs it and
// every request queued behind it (up to MaxBatch) in one transaction, and
// commits once.
func (w *writer) run() {
	defer close(w.done)
	for {
		var first *writeRequest
		select {
		case first = <-w.queue:
		case <-w.stop:
			w.refuseQueued()
			return
		}
		w.busy.Store(true)
		w.runBatch(first)
		w.busy.Store(false)
	}
}

// refuseQueued answers every request still queued when the writer stops.
func (w *writer) refuseQueued() {
	for {
		select {
		case req := <-w.queue:
			if req.state.CompareAndSwap(requestQueued, requestTaken) {
				req.result <- ErrClosed
			}
		default:
			return
		}
	}
}

// runBatch runs first and the requests queued behind it in one
// transaction and answers each.
func (w *writer) runBatch(first *writeRequest) {
	var committed []*writeRequest
	tx, err := w.db.BeginTx(context.Background(), nil)
	if err != nil {
		first.answer(fmt.Errorf("store: begin: %w", classify(err)))
		w.answerQueued(err)
		return
	}
	w.mu.Lock()
	w.batch = tx
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.batch = nil
		w.mu.Unlock()
	}()
	next := first
	for next != nil {
		ok, err := w.runOne(next)
		if err != nil {
			// A savepoint could not be released or rolled back: the
			// batch is in an unknown state, so none of it commits.
			_ = tx.Rollback()
			for _, r := range append(committed, next) {
				r.answer(fmt.Errorf("store: write batch abandoned: %w", classify(err)))
			}
			return
		}
		if ok {
			committed = append(committed, next)
		}
		next = nil
		if len(committed) < w.opts.MaxBatch {
			select {
			case next = <-w.queue:
			default:
			}
		}
	}
	if len(committed) == 0 {
		_ = tx.Rollback()
		return
	}
	err = tx.Commit()
	if err == nil {
		w.commits.Add(1)
	} else {
		err = fmt.Errorf("store: commit: %w", classify(err))
	}
	// Idle before answering: a caller's next write, queued once it has
	// its answer, waits behind nothing.
	w.busy.Store(false)
	for _, r := range committed {
		if err == nil {
			for _, f := range r.after {
				f()
			}
		}
		r.answer(err)
	}
}

// answerQueued refuses the requests queued behind a batch that could not
// begin (another process holds the database's write lock past the busy
// timeout, or the file is gone), so they do not wait for their turn only to
// fail the same way.
func (w *writer) answerQueued(cause error) {
	for {
		select {
		case req := <-w.queue:
			if req.state.CompareAndSwap(requestQueued, requestTaken) {
				req.result <- fmt.Errorf("store: begin: %w", classify(cause))
			}
		default:
			return
		}
	}
}

// answer delivers a request's outcome; if its writes did not commit, it
// first runs what OnRollback arranged.
func (r *writeRequest) answer(err error) {
	if err != nil {
		r.rolledBack()
	}
	r.result <- err
}

// rolledBack runs, once, what OnRollback arranged.
func (r *writeRequest) rolledBack() {
	undo := r.undo
	r.undo = nil
	for _, f := range undo {
		f()
	}
}

// runOne runs req in its own savepoint. It reports whether req's writes
// are in the batch (to be answered after the commit); a request that was
// abandoned, waited too long behind other writes or failed is answered at
// once. A non-nil error means the batch itself is broken.
func (w *writer) runOne(req *writeRequest) (bool, error) {
	if !req.state.CompareAndSwap(requestQueued, requestTaken) {
		return false, nil // its caller left before it started
	}
	if waited := w.opts.Clock.Now().Sub(req.queued); waited > w.opts.MaxWait && req.behind {
		req.answer(overloaded(fmt.Sprintf("a write waited %s for the writer", waited.Round(time.Millisecond))))
		return false, nil
	}
	ctx := context.WithValue(context.WithoutCancel(req.ctx), writeKey{}, req)
	tx, err := w.client.Tx(ctx)
	if err != nil {
		req.answer(fmt.Errorf("store: savepoint: %w", classify(err)))
		return false, err
	}
	fnErr := w.call(ctx, tx, req)
	if fnErr == nil {
		if err := tx.Commit(); err != nil {
			req.answer(fmt.Errorf("store: release savepoint: %w", classify(err)))
			return false, err
		}
		return true, nil
	}
	req.after = nil
	if err := tx.Rollback(); err != nil {
		req.answer(errors.Join(fnErr, fmt.Errorf("store: roll back savepoint: %w", err)))
		return false, err
	}
	req.answer(fnErr)
	return false, nil
}

// call runs req's function, turning a panic into an error for the batch
// and keeping it to re-raise in the caller.
func (w *writer) call(ctx context.Context, tx *ent.Tx, req *writeRequest) (err error) {
	defer func() {
		if p := recover(); p != nil {
			req.panicked = p
			err = fmt.Errorf("store: write transaction panicked: %v", p)
		}
	}()
	return req.fn(ctx, tx)
}

// isClosed reports whether the writer was closed.
func (w *writer) isClosed() bool {
	w.gate.RLock()
	defer w.gate.RUnlock()
	return w.closed
}

// close stops the writer after the batch in progress; writes still queued
// are refused with ErrClosed.
func (w *writer) close() {
	w.gate.Lock()
	w.closed = true
	w.gate.Unlock()
	close(w.stop)
	<-w.done
	w.stmts.close()
}

// savepointDriver is the ent driver of the writer's client: each ent
// transaction it begins is a savepoint in the writer's open batch. It runs
// nothing outside a transaction.
type savepointDriver struct{ w *writer }

var errOutsideWrite = errors.New("store: the writer runs statements only inside a write transaction")

// Exec refuses: the writer runs statements only in transactions.
func (d *savepointDriver) Exec(context.Context, string, any, any) error { return errOutsideWrite }

// Query refuses: the writer runs statements only in transactions.
func (d *savepointDriver) Query(context.Context, string, any, any) error { return errOutsideWrite }

// Dialect is SQLite.
func (d *savepointDriver) Dialect() string { return dialect.SQLite }

// Close does nothing: the writer owns the connection.
func (d *savepointDriver) Close() error { return nil }

// Tx opens a savepoint in the writer's open batch.
func (d *savepointDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	w := d.w
	w.mu.Lock()
	batch := w.batch
	w.mu.Unlock()
	if batch == nil {
		return nil, errOutsideWrite
	}
	conn := &batchConn{stmts: w.stmts, tx: batch}
	if _, err := conn.ExecContext(ctx, "SAVEPOINT write"); err != nil {
		return nil, err
	}
	return &entsql.Tx{
		Conn: entsql.Conn{ExecQuerier: conn},
		Tx:   &savepoint{conn: conn},
	}, nil
}

// savepoint ends one write transaction inside the batch. The writer runs
// one at a time, so they can all have the same name (and the same prepared
// statements).
type savepoint struct{ conn *batchConn }

// Commit releases the savepoint: its writes stay in the batch.
func (s *savepoint) Commit() error {
	_, err := s.conn.ExecContext(context.Background(), "RELEASE write")
	return err
}

// Rollback undoes the savepoint's writes and releases it.
func (s *savepoint) Rollback() error {
	if _, err := s.conn.ExecContext(context.Background(), "ROLLBACK TO write"); err != nil {
		return err
	}
	_, err := s.conn.ExecContext(context.Background(), "RELEASE write")
	return err
}

// writeKey marks a context as inside a write transaction; its value is the
// transaction's request.
type writeKey struct{}

// inWrite reports whether ctx is a write transaction's context.
func inWrite(ctx context.Context) bool {
	_, ok := ctx.Value(writeKey{}).(*writeRequest)
	return ok
}

// OnRollback arranges for f to run if the write transaction whose ctx this
// is does not commit (fn failed, or the commit did; on PostgreSQL also
// before each retry of fn). Use it to give back what fn took outside the
// store, such as an in-memory rate-limit token. It panics outside a write
// transaction.
func OnRollback(ctx context.Context, f func()) {
	req, ok := ctx.Value(writeKey{}).(*writeRequest)
	if !ok {
		panic("store.OnRollback outside a write transaction")
	}
	req.undo = append(req.undo, f)
}

// AfterCommit arranges for f to run once the write transaction whose ctx
// this is has committed (before its caller is answered); if the
// transaction fails, f never runs. Use it for what must not happen before
// the writes are visible, such as dropping a cache entry the writes make
// stale. It panics outside a write transaction.
func AfterCommit(ctx context.Context, f func()) {
	req, ok := ctx.Value(writeKey{}).(*writeRequest)
	if !ok {
		panic("store.AfterCommit outside a write transaction")
	}
	req.after = append(req.after, f)
}
