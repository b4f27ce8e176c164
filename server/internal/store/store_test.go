package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/consumer"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

func open(t *testing.T, opts store.Options) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "parley.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// addConsumer is a write transaction that adds one row named name.
func addConsumer(name string) func(context.Context, *ent.Tx) error {
	return func(ctx context.Context, tx *ent.Tx) error {
		return tx.Consumer.Create().SetDisplayName(name).SetEmail(name + "@example.com").Exec(ctx)
	}
}

// holdWriter runs a write transaction that keeps the writer busy until the
// returned release is called, and waits until it runs.
func holdWriter(t *testing.T, db *store.DB) (release func() error) {
	t.Helper()
	running, unblock := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- store.InTx(context.Background(), db, func(ctx context.Context, tx *ent.Tx) error {
			close(running)
			<-unblock
			return addConsumer("holder")(ctx, tx)
		})
	}()
	<-running
	return func() error {
		close(unblock)
		return <-done
	}
}

// queued starts n write transactions behind the current one and returns
// their outcomes once all are answered.
func queued(db *store.DB, n int, fn func(i int) func(context.Context, *ent.Tx) error) func() []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("panic: %v", p)
				}
			}()
			errs[i] = store.InTx(context.Background(), db, fn(i))
		})
	}
	return func() []error {
		wg.Wait()
		return errs
	}
}

func countConsumers(t *testing.T, db *store.DB, names ...string) int {
	t.Helper()
	n, err := db.Consumer.Query().Where(consumer.DisplayNameIn(names...)).Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Transactions queued behind a running one share its successor's commit;
// one that fails or panics is rolled back alone, and its caller gets its
// error or panic.
func TestQueuedWritesShareACommitAndFailAlone(t *testing.T) {
	db := open(t, store.Options{Synchronous: store.SyncFull})
	release := holdWriter(t, db)
	before := db.Commits()
	const n = 40
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	wait := queued(db, n, func(i int) func(context.Context, *ent.Tx) error {
		switch i {
		case 7:
			return func(ctx context.Context, tx *ent.Tx) error {
				if err := addConsumer(names[i])(ctx, tx); err != nil {
					return err
				}
				return errors.New("refused after writing")
			}
		case 11:
			return func(ctx context.Context, tx *ent.Tx) error {
				_ = addConsumer(names[i])(ctx, tx)
				panic("boom")
			}
		}
		return addConsumer(names[i])
	})
	// Let them all queue up (they cannot run: the writer is held).
	for db.Queued() < n {
		time.Sleep(time.Millisecond)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for i, err := range wait() {
		switch {
		case i == 7 && (err == nil || err.Error() != "refused after writing"):
			t.Errorf("failing transaction: %v, want its own error", err)
		case i == 11 && (err == nil || err.Error() != "panic: boom"):
			t.Errorf("panicking transaction: %v, want its panic re-raised in the caller", err)
		case i != 7 && i != 11 && err != nil:
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	if got := countConsumers(t, db, names...); got != n-2 {
		t.Fatalf("%d rows committed, want %d (all but the failed and the panicked one)", got, n-2)
	}
	if countConsumers(t, db, names[7], names[11]) != 0 {
		t.Fatal("a failed transaction's writes were committed")
	}
	if commits := db.Commits() - before; commits > 3 {
		t.Fatalf("%d queued transactions took %d commits; want them grouped", n, commits)
	}
}

// Reads use their own connections: they go on while the writer is held and
// many writes queue behind it.
func TestReadsNeverWaitBehindWrites(t *testing.T) {
	db := open(t, store.Options{})
	release := holdWriter(t, db)
	wait := queued(db, 50, func(i int) func(context.Context, *ent.Tx) error {
		return addConsumer(fmt.Sprintf("w%d", i))
	})
	for db.Queued() < 50 {
		time.Sleep(time.Millisecond)
	}
	for range 100 {
		if _, err := db.Consumer.Query().Count(t.Context()); err != nil {
			t.Fatalf("read while writes queued: %v", err)
		}
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for _, err := range wait() {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Inside a write transaction the transaction is the only handle: the read
// pool refuses to serve it, a nested write is refused rather than
// deadlocking the writer, and the read pool never writes.
func TestTransactionIsTheOnlyHandle(t *testing.T) {
	db := open(t, store.Options{})
	err := store.InTx(t.Context(), db, func(ctx context.Context, tx *ent.Tx) error {
		_, err := db.Consumer.Query().Count(ctx)
		return err
	})
	if err == nil || !errors.Is(err, store.ErrReadInWrite) {
		t.Fatalf("read through the pool inside a write: %v, want ErrReadInWrite", err)
	}
	err = store.InTx(t.Context(), db, func(ctx context.Context, tx *ent.Tx) error {
		return store.InTx(ctx, db, addConsumer("nested"))
	})
	if err == nil {
		t.Fatal("a nested write transaction was accepted")
	}
	if err := db.Consumer.Create().SetDisplayName("x").SetEmail("x").Exec(t.Context()); err == nil {
		t.Fatal("the read pool wrote")
	}
	if countConsumers(t, db, "nested", "x") != 0 {
		t.Fatal("a refused write was committed")
	}
}

// A write that cannot be queued or waits too long is refused as
// overloaded, with a retry hint, and is never run.
func TestOverloadedWritesAreRefusedNotRun(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	db := open(t, store.Options{Writer: store.WriterOptions{QueueLength: 4, MaxWait: time.Second, Clock: clk}})
	release := holdWriter(t, db)
	wait := queued(db, 4, func(i int) func(context.Context, *ent.Tx) error {
		return addConsumer(fmt.Sprintf("late%d", i))
	})
	for db.Queued() < 4 {
		time.Sleep(time.Millisecond)
	}
	err := store.InTx(t.Context(), db, addConsumer("full"))
	if wait, ok := store.IsOverloaded(err); !ok || wait <= 0 {
		t.Fatalf("write to a full queue: %v, want Overloaded with a retry hint", err)
	}
	clk.Advance(2 * time.Second) // the queued writes waited past MaxWait
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for _, err := range wait() {
		if _, ok := store.IsOverloaded(err); !ok {
			t.Fatalf("write that waited past MaxWait: %v, want Overloaded", err)
		}
	}
	if countConsumers(t, db, "full", "late0", "late1", "late2", "late3") != 0 {
		t.Fatal("a refused write was committed")
	}
}

// A caller that leaves while its write is queued leaves nothing written.
func TestAbandonedQueuedWriteIsNotRun(t *testing.T) {
	db := open(t, store.Options{})
	release := holdWriter(t, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- store.InTx(ctx, db, addConsumer("abandoned")) }()
	for db.Queued() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned write: %v, want context.Canceled", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := store.InTx(t.Context(), db, addConsumer("after")); err != nil {
		t.Fatal(err)
	}
	if countConsumers(t, db, "abandoned") != 0 || countConsumers(t, db, "after") != 1 {
		t.Fatal("an abandoned write ran, or the next one did not")
	}
}

// Writes racing the store's Close are each answered, never left waiting:
// those that got in commit, the others are refused with ErrClosed.
func TestWritesRacingCloseAreAnswered(t *testing.T) {
	for range 20 {
		db, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "parley.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wait := queued(db, 50, func(i int) func(context.Context, *ent.Tx) error {
			return addConsumer(fmt.Sprintf("r%d", i))
		})
		db.Close()
		for _, err := range wait() {
			if err != nil && !errors.Is(err, store.ErrClosed) {
				t.Fatalf("write racing Close: %v, want success or ErrClosed", err)
			}
		}
	}
}

// Only waiting behind other writes counts against MaxWait: a write an idle
// writer takes runs, however short MaxWait is (a server started with a
// tiny -sqlite-max-write-wait could not even apply its bootstrap file).
func TestMaxWaitCountsOnlyWaitingBehindWrites(t *testing.T) {
	db := open(t, store.Options{Writer: store.WriterOptions{MaxWait: time.Nanosecond}})
	for i := range 20 {
		if err := store.InTx(t.Context(), db, addConsumer(fmt.Sprint("idle", i))); err != nil {
			t.Fatalf("write %d to an idle writer: %v", i, err)
		}
	}
}
