// Package sqlstoretest holds the test setup shared by the services' SQL
// store tests: a fresh, isolated, migrated database per test on SQLite
// (a file in t.TempDir()) or PostgreSQL (a fresh schema from
// testkit.PostgresSchema), closed at cleanup, and a reader of the outbox.
//
//	for _, d := range sqlstoretest.Drivers() {
//		t.Run(string(d), func(t *testing.T) {
//			db := sqlstoretest.Open(t, d, migrations.FS)
//			…
//		})
//	}
//
// It is for tests only. sqlstore's own in-package tests do not import it
// (it imports sqlstore).
package sqlstoretest

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
)

// PostgresMaxConns is the pool size Config gives a PostgreSQL database.
const PostgresMaxConns = 4

// Drivers returns the drivers a store test runs on: SQLite, then PostgreSQL.
func Drivers() []sqlstore.Driver {
	return []sqlstore.Driver{sqlstore.SQLite, sqlstore.Postgres}
}

// Config returns the configuration of a fresh, empty database for d: a
// SQLite file in t.TempDir(), or a new PostgreSQL schema (dropped at
// cleanup; the test is skipped, or fails under CI=true, when PostgreSQL is
// unreachable) with MaxConns PostgresMaxConns. Callers may adjust it (e.g.
// MaxConns) before OpenConfig.
func Config(t testing.TB, d sqlstore.Driver) sqlstore.Config {
	t.Helper()
	switch d {
	case sqlstore.SQLite:
		return sqlstore.Config{Driver: d, URL: filepath.Join(t.TempDir(), "test.db")}
	case sqlstore.Postgres:
		url, schema := testkit.PostgresSchema(t)
		return sqlstore.Config{Driver: d, URL: url, Schema: schema, MaxConns: PostgresMaxConns}
	default:
		t.Fatalf("sqlstoretest: unknown driver %q", d)
		return sqlstore.Config{}
	}
}

// OpenConfig opens cfg, applies migrations (the postgres/ and sqlite/
// directories of a service, see sqlstore.DB.Migrate), ensures the outbox
// table and closes the database at cleanup. Any failure is fatal.
func OpenConfig(t testing.TB, cfg sqlstore.Config, migrations fs.FS) *sqlstore.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		t.Fatalf("outbox: %v", err)
	}
	return db
}

// Open is OpenConfig(t, Config(t, d), migrations): a fresh database of
// driver d, migrated, with the outbox, closed at cleanup.
func Open(t testing.TB, d sqlstore.Driver, migrations fs.FS) *sqlstore.DB {
	t.Helper()
	return OpenConfig(t, Config(t, d), migrations)
}

// OutboxIDs returns the ids of the outbox messages in q, in insertion order
// (SELECT id FROM outbox ORDER BY seq). Any failure is fatal.
func OutboxIDs(t testing.TB, q sqlstore.Querier) []string {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), "SELECT id FROM outbox ORDER BY seq")
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return ids
}
