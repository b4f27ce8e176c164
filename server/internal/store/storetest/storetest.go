// Package storetest opens stores for tests on the store the run selects:
// a SQLite file by default, or, when PARLEY_TEST_POSTGRES names a
// PostgreSQL server (postgres://host:port/db), a fresh database on it per
// store, so the whole suite runs on either (CI runs both).
//
// A test names its store by a file path, as with SQLite: on PostgreSQL the
// path maps to a database of its own, so a test that stops a server and
// starts another on the same path gets the same data on either store.
// Each database is cloned from a template that holds the migrated schema
// (made once per migration set, under an advisory lock, shared by the test
// processes) and dropped when the test that created it ends.
package storetest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/parleyhq/parley/ent/migrate/migrations"
	"github.com/parleyhq/parley/server/internal/store"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// EnvPostgres names the PostgreSQL server tests run on instead of SQLite.
const EnvPostgres = "PARLEY_TEST_POSTGRES"

// PostgresURL is the PostgreSQL server the run selects, or "" for SQLite.
func PostgresURL() string { return os.Getenv(EnvPostgres) }

// Open opens the store named by path for t (see the package doc), with
// opts; it is closed when t ends unless the test closes it first.
func Open(t testing.TB, path string, opts store.Options) *store.DB {
	t.Helper()
	if opts.MaxConns == 0 {
		opts.MaxConns = MaxConns
	}
	db, err := store.Open(context.Background(), Target(t, path), opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MaxConns is the size of each PostgreSQL pool of a store a test opens
// unless it asks for more: go test runs two packages at once, each with
// two tests at once, some with three replicas, all on one PostgreSQL
// server whose max_connections (100 by default) other programs share.
// One replica then holds at most 2 x MaxConns + 1 (its relay) connections.
const MaxConns = 2

// Target is what parleyd's -db takes for the store named by path: path
// itself on SQLite; on PostgreSQL the URL of path's database, created
// (migrated) on first use and dropped when t ends.
func Target(t testing.TB, path string) string {
	t.Helper()
	server := PostgresURL()
	if server == "" {
		return path
	}
	sum := sha256.Sum256([]byte(path))
	name := "parley_t_" + hex.EncodeToString(sum[:10])
	created, err := ensureDatabase(server, name)
	if err != nil {
		t.Fatalf("PostgreSQL test database: %v", err)
	}
	if created {
		t.Cleanup(func() {
			if err := dropDatabase(server, name); err != nil {
				t.Errorf("drop test database %s: %v", name, err)
			}
		})
	}
	return databaseURL(server, name)
}

// databaseURL is server's URL with its database replaced by name.
func databaseURL(server, name string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server
	}
	u.Path = "/" + name
	return u.String()
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// ensureDatabase creates database name from the migrated template unless
// it exists, and reports whether it created it.
func ensureDatabase(server, name string) (bool, error) {
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(server) })
	if templateErr != nil {
		return false, templateErr
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", server, err)
	}
	defer admin.Close()
	var exists bool
	if err := admin.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := admin.Exec("CREATE DATABASE " + name + " TEMPLATE " + templateName); err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// ensureTemplate makes the template database of the current migrations
// unless another test process already did, and returns its name.
func ensureTemplate(server string) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.Postgres(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(migrations.Postgres(), p)
		h.Write([]byte(p))
		h.Write(data)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	name := "parley_template_" + hex.EncodeToString(h.Sum(nil)[:8])
	ctx := context.Background()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", server, err)
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", server, err)
	}
	defer conn.Close()
	const lock = 0x70_74_65_73_74 // "ptest"
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", lock)
	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for the template: %w", err)
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop a half-built template: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+building); err != nil {
		return "", fmt.Errorf("create the template: %w", err)
	}
	db, err := store.OpenPostgres(ctx, databaseURL(server, building), store.Options{MaxConns: 2})
	if err != nil {
		return "", fmt.Errorf("migrate the template: %w", err)
	}
	db.Close()
	// Renamed only once complete, so a crash mid-way leaves no template
	// that lacks part of the schema.
	if _, err := conn.ExecContext(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", fmt.Errorf("finish the template: %w", err)
	}
	return name, nil
}

// dropDatabase drops database name, ending its connections.
func dropDatabase(server, name string) error {
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return fmt.Errorf("open %s: %w", server, err)
	}
	defer admin.Close()
	if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	return nil
}

// Raw opens the database of the store named by path beside the store, for
// tests that must do what Parley never does (hold locks, corrupt a row):
// foreign keys are not enforced on it. It is closed when t ends.
func Raw(t testing.TB, path string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if server := PostgresURL(); server != "" {
		// session_replication_role=replica skips foreign-key triggers.
		cfg, perr := pgx.ParseConfig(Target(t, path))
		if perr != nil {
			t.Fatal(perr)
		}
		cfg.RuntimeParams["session_replication_role"] = "replica"
		db = stdlib.OpenDB(*cfg)
	} else {
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(0)&_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatalf("open raw database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// HoldWriteLock makes the store named by path refuse writes to the
// conversation id for as long as t runs or until the returned function is
// called: on SQLite another connection takes the database's write lock
// (BEGIN IMMEDIATE); on PostgreSQL another transaction locks the
// conversation's row (SELECT ... FOR UPDATE). Reads go on.
func HoldWriteLock(t testing.TB, path, conversationID string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := Raw(t, path).Conn(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if PostgresURL() != "" {
		_, err = conn.ExecContext(ctx, "BEGIN")
		if err == nil {
			_, err = conn.ExecContext(ctx, "SELECT id FROM conversations WHERE id = $1 FOR UPDATE", conversationID)
		}
	} else {
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	}
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// CutOff makes the PostgreSQL database of the store named by path
// unreachable, as a restart or a network cut would: it refuses new
// connections and ends the open ones. restore lets connections in again
// (it also runs when t ends).
func CutOff(t testing.TB, path string) (restore func()) {
	t.Helper()
	server := PostgresURL()
	if server == "" {
		t.Fatal("storetest.CutOff needs PostgreSQL")
	}
	u, err := url.Parse(Target(t, path))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatalf("refuse connections: %v", err)
	}
	if _, err := admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatalf("end connections: %v", err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true"); err != nil {
				t.Errorf("let connections in again: %v", err)
			}
			admin.Close()
		})
	}
	t.Cleanup(restore)
	return restore
}
