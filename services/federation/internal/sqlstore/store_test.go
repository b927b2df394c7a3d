package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	fedstore "github.com/agentidp/agentidp/services/federation/internal/sqlstore"
	"github.com/agentidp/agentidp/services/federation/internal/storetest"
	"github.com/agentidp/agentidp/services/federation/migrations"
)

func open(t *testing.T, cfg sqlstore.Config) *sqlstore.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, migrations.FS); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		t.Fatalf("outbox: %v", err)
	}
	return db
}

func harness(t *testing.T, db *sqlstore.DB) storetest.Harness {
	return storetest.Harness{
		Store: fedstore.New(db),
		Outbox: func(t *testing.T) []string {
			t.Helper()
			rows, err := db.QueryContext(context.Background(), "SELECT id FROM outbox ORDER BY seq")
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
			return ids
		},
	}
}

func sqliteDB(t *testing.T) *sqlstore.DB {
	return open(t, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "federation.db")})
}

func postgresDB(t *testing.T) *sqlstore.DB {
	url, schema := testkit.PostgresSchema(t)
	return open(t, sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 4})
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, sqliteDB(t)) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, postgresDB(t)) })
}
