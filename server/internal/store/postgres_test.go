package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// postgres returns the test server's URL, or skips: these tests are about
// PostgreSQL's engine (CI runs the suite on both stores).
func postgres(t *testing.T) string {
	t.Helper()
	server := storetest.PostgresURL()
	if server == "" {
		t.Skipf("PostgreSQL engine test; set %s (CI does)", storetest.EnvPostgres)
	}
	return server
}

// emptyDatabase creates a database with no schema and returns its URL.
func emptyDatabase(t *testing.T, server string) string {
	t.Helper()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("parley_empty_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", server)
		if err == nil {
			admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			admin.Close()
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestReplicasStartingTogetherMigrateOnce: five stores open one empty
// database at once; each migration is applied once (the advisory lock),
// every store works, and a database that holds a migration this build
// does not know (a newer parleyd's) is refused with a message that says so.
func TestReplicasStartingTogetherMigrateOnce(t *testing.T) {
	dsn := emptyDatabase(t, postgres(t))
	ctx := t.Context()
	dbs := make([]*store.DB, 5)
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = store.OpenPostgres(ctx, dsn, store.Options{MaxConns: 2}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var applied, distinct int
	if err := raw.QueryRow("SELECT count(*), count(DISTINCT version) FROM parley_schema_revisions").Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied == 0 || applied != distinct {
		t.Fatalf("%d migration records for %d versions; want each version once", applied, distinct)
	}
	for i, db := range dbs {
		if _, err := db.Agent.Query().Count(ctx); err != nil {
			t.Fatalf("replica %d cannot read: %v", i, err)
		}
	}

	if _, err := raw.Exec("INSERT INTO parley_schema_revisions (version, description) VALUES ('99990101000000', 'from the future')"); err != nil {
		t.Fatal(err)
	}
	_, err = store.OpenPostgres(ctx, dsn, store.Options{MaxConns: 2})
	if err == nil || !strings.Contains(err.Error(), "newer parleyd") {
		t.Fatalf("opening a database migrated by a newer parleyd: %v, want a refusal naming it", err)
	}
}

// TestSerializableWritesLoseNoUpdate: 24 writers each read a counter and
// write it back plus one, at once, on two stores (two replicas). Every
// write is serializable and retried when it loses a race, so the counter
// ends at 24: no update is lost, and each writer's AfterCommit runs once
// while OnRollback ran for every lost attempt.
func TestSerializableWritesLoseNoUpdate(t *testing.T) {
	postgres(t)
	path := filepath.Join(t.TempDir(), "parley.db")
	a := storetest.Open(t, path, store.Options{MaxConns: 8})
	b := storetest.Open(t, path, store.Options{MaxConns: 8})
	ctx := t.Context()
	const key = "test/counter"
	if err := store.InTx(ctx, a, func(ctx context.Context, tx *ent.Tx) error {
		return tx.RateBucket.Create().SetID(key).SetTat(0).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	const writers = 24
	var committed, rolledBack atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Go(func() {
			errs[i] = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
				store.OnRollback(ctx, func() { rolledBack.Add(1) })
				store.AfterCommit(ctx, func() { committed.Add(1) })
				c, err := tx.RateBucket.Get(ctx, key)
				if err != nil {
					return err
				}
				return tx.RateBucket.UpdateOneID(key).SetTat(c.Tat + 1).Exec(ctx)
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	c, err := a.RateBucket.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tat != writers || committed.Load() != writers {
		t.Fatalf("counter %d after %d writers (%d commits noted): an update was lost", c.Tat, writers, committed.Load())
	}
	t.Logf("%d attempts lost a race and were retried", rolledBack.Load())
}

// TestExclusiveSectionsTakeTurns: two stores (two replicas) run Exclusive
// sections of one key at once: they never overlap; other keys do not wait.
func TestExclusiveSectionsTakeTurns(t *testing.T) {
	postgres(t)
	path := filepath.Join(t.TempDir(), "parley.db")
	dbs := []*store.DB{storetest.Open(t, path, store.Options{MaxConns: 2}), storetest.Open(t, path, store.Options{MaxConns: 2})}
	ctx := t.Context()
	var inside, overlaps atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			err := store.Exclusive(ctx, dbs[i%2], "test-section", func() error {
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
				inside.Add(-1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d sections overlapped", overlaps.Load())
	}
	// A section of another key runs while one of the first is held.
	held, release := make(chan struct{}), make(chan struct{})
	go store.Exclusive(ctx, dbs[0], "test-section", func() error { close(held); <-release; return nil })
	<-held
	done := make(chan error, 1)
	go func() { done <- store.Exclusive(ctx, dbs[1], "another-section", func() error { return nil }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a section of another key waited for the first")
	}
	close(release)
}

// TestPanicInPostgresWriteRollsBack: a panic in a write rolls it back and
// is re-raised in the caller; the store keeps working.
func TestPanicInPostgresWriteRollsBack(t *testing.T) {
	postgres(t)
	db := storetest.Open(t, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	ctx := t.Context()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was not re-raised")
			}
		}()
		_ = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
			if err := tx.RateBucket.Create().SetID("test/panic").SetTat(1).Exec(ctx); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if _, err := db.RateBucket.Get(ctx, "test/panic"); !ent.IsNotFound(err) {
		t.Fatalf("the panicking write left its row: %v", err)
	}
	err := store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		_, err := db.RateBucket.Get(ctx, "test/panic") // the read client, inside a write
		return err
	})
	if !errors.Is(err, store.ErrReadInWrite) {
		t.Fatalf("the read client inside a write: %v, want ErrReadInWrite", err)
	}
}
