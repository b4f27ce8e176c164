// Command diff writes the next PostgreSQL migration file: it replays the
// committed migrations on a scratch database, compares the result with the
// ent schema and, if they differ, writes the statements that close the gap
// as a new file in ent/migrate/migrations/postgres (and updates atlas.sum).
// With -check it writes nothing and fails if a migration is missing.
//
//	go run ./ent/migrate/migrations/diff [-check] [-dev URL] NAME
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	atlas "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/parleyhq/parley/ent/migrate"
)

func main() {
	dev := flag.String("dev", envOr("PARLEY_DEV_POSTGRES", "postgres://127.0.0.1:5432/test?sslmode=disable"),
		"a PostgreSQL server to replay the migrations on (a scratch database is created and dropped there)")
	dir := flag.String("dir", "ent/migrate/migrations/postgres", "the migration directory")
	check := flag.Bool("check", false, "write nothing; fail if the schema needs a new migration")
	flag.Parse()
	name := flag.Arg(0)
	if name == "" && !*check {
		fmt.Fprintln(os.Stderr, "usage: diff [-check] [-dev URL] NAME")
		os.Exit(2)
	}
	if err := run(context.Background(), *dev, *dir, name, *check); err != nil {
		fmt.Fprintln(os.Stderr, "diff:", err)
		os.Exit(1)
	}
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// run diffs on a scratch database that it drops afterwards.
func run(ctx context.Context, dev, dirPath, name string, check bool) error {
	scratch := fmt.Sprintf("parley_migrate_%d_%d", os.Getpid(), time.Now().UnixNano())
	admin, err := sql.Open("pgx", dev)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+scratch); err != nil {
		return fmt.Errorf("create scratch database: %w", err)
	}
	defer admin.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+scratch+" WITH (FORCE)")
	u, err := url.Parse(dev)
	if err != nil {
		return fmt.Errorf("parse %s: %w", dev, err)
	}
	u.Path = "/" + scratch
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return fmt.Errorf("open scratch database: %w", err)
	}
	defer db.Close()

	local, err := atlas.NewLocalDir(dirPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", dirPath, err)
	}
	var target atlas.Dir = local
	if check {
		// Diff into a copy, so nothing is written.
		mem := &atlas.MemDir{}
		files, err := local.Files()
		if err != nil {
			return fmt.Errorf("read %s: %w", dirPath, err)
		}
		for _, f := range files {
			if err := mem.WriteFile(f.Name(), f.Bytes()); err != nil {
				return err
			}
		}
		sum, err := local.Checksum()
		if err != nil {
			return fmt.Errorf("checksum %s: %w", dirPath, err)
		}
		if err := atlas.WriteSumFile(mem, sum); err != nil {
			return err
		}
		target, name = mem, "check"
	}
	m, err := schema.NewMigrate(entsql.OpenDB(dialect.Postgres, db),
		schema.WithDir(target),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialect.Postgres),
		schema.WithFormatter(atlas.DefaultFormatter),
	)
	if err != nil {
		return fmt.Errorf("prepare diff: %w", err)
	}
	before, err := target.Files()
	if err != nil {
		return err
	}
	if err := m.NamedDiff(ctx, name, migrate.Tables...); err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	after, err := target.Files()
	if err != nil {
		return err
	}
	if check && len(after) != len(before) {
		return errors.New("the ent schema changed without a migration: run `make migration name=what_changed` and commit the file")
	}
	return nil
}
