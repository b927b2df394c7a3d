package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	billingstore "github.com/agentidp/agentidp/services/billing/internal/sqlstore"
	"github.com/agentidp/agentidp/services/billing/internal/storetest"
	"github.com/agentidp/agentidp/services/billing/migrations"
)

func harness(t *testing.T, cfg sqlstore.Config) storetest.Harness {
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
	return storetest.Harness{
		Store: billingstore.New(db),
		OutboxCount: func(t *testing.T) int {
			t.Helper()
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox").Scan(&n); err != nil {
				t.Fatalf("count outbox: %v", err)
			}
			return n
		},
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		return harness(t, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "billing.db")})
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		url, schema := testkit.PostgresSchema(t)
		return harness(t, sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 8})
	})
}
