package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"

	atlas "ariga.io/atlas/sql/migrate"
	"github.com/parleyhq/parley/ent/migrate/migrations"
)

// migrationLock is the advisory lock key replicas take while migrating,
// so that several starting together apply each migration once.
const migrationLock = 0x70_61_72_6c_65_79 // "parley"

// revisionsTable records the migrations applied to a PostgreSQL database.
const revisionsTable = "parley_schema_revisions"

// migratePostgres applies the committed migrations db lacks, each in its
// own transaction with its revision row, under an advisory lock. It
// refuses a database migrated by a newer parleyd (a revision it does not
// know), and a migration directory whose checksums do not match.
func migratePostgres(ctx context.Context, db *sql.DB) error {
	dir, err := migrationDir(migrations.Postgres())
	if err != nil {
		return err
	}
	files, err := dir.Files()
	if err != nil {
		return fmt.Errorf("store: read migrations: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("store: migrate: take the migration lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+revisionsTable+
		" (version text PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("store: migrate: create %s: %w", revisionsTable, err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(files))
	for _, f := range files {
		known[f.Version()] = true
	}
	for v := range applied {
		if !known[v] {
			return fmt.Errorf("store: the database has migration %s, which this parleyd does not know: it was migrated by a newer parleyd; run that version", v)
		}
	}
	for _, f := range files {
		if applied[f.Version()] {
			continue
		}
		if err := applyMigration(ctx, conn, f); err != nil {
			return err
		}
	}
	return nil
}

// migrationDir loads the embedded directory into an Atlas directory and
// checks it against its atlas.sum.
func migrationDir(src fs.FS) (atlas.Dir, error) {
	dir := &atlas.MemDir{}
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	for _, e := range entries {
		data, err := fs.ReadFile(src, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", e.Name(), err)
		}
		if err := dir.WriteFile(e.Name(), data); err != nil {
			return nil, fmt.Errorf("store: load migration %s: %w", e.Name(), err)
		}
	}
	if err := atlas.Validate(dir); err != nil {
		return nil, fmt.Errorf("store: the migrations do not match their atlas.sum: %w", err)
	}
	return dir, nil
}

// appliedVersions reads the versions recorded as applied.
func appliedVersions(ctx context.Context, conn *sql.Conn) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, "SELECT version FROM "+revisionsTable)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: read %s: %w", revisionsTable, err)
	}
	defer rows.Close()
	applied := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("store: migrate: read %s: %w", revisionsTable, err)
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// applyMigration runs one migration file and records it, in one
// transaction (PostgreSQL's DDL is transactional).
func applyMigration(ctx context.Context, conn *sql.Conn, f atlas.File) (err error) {
	stmts, err := f.Stmts()
	if err != nil {
		return fmt.Errorf("store: migration %s: %w", f.Name(), err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migration %s: begin: %w", f.Name(), err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	for i, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store: migration %s, statement %d: %w", f.Name(), i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+revisionsTable+" (version, description) VALUES ($1, $2)",
		f.Version(), f.Desc()); err != nil {
		return fmt.Errorf("store: migration %s: record it: %w", f.Name(), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migration %s: commit: %w", f.Name(), err)
	}
	return nil
}
