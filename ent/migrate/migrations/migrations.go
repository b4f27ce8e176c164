// Package migrations holds Parley's versioned schema migrations, one
// directory per dialect, as Atlas migration directories (SQL files plus an
// atlas.sum checksum file). PostgreSQL applies them at startup (see
// server/internal/store); the embedded SQLite default migrates
// automatically instead.
//
// The files are generated, never written by hand: after changing a schema
// in ent/schema, run `go generate ./ent` and then
//
//	make migration name=what_changed
//
// which runs ./diff against a scratch database on the PostgreSQL server
// named by PARLEY_DEV_POSTGRES (default postgres://127.0.0.1:5432/test),
// and commit the new file. CI fails when the schema and the migrations
// disagree.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres
var files embed.FS

// Postgres is the PostgreSQL migration directory.
func Postgres() fs.FS {
	sub, err := fs.Sub(files, "postgres")
	if err != nil {
		panic(err) // the directory is embedded: cannot fail
	}
	return sub
}
