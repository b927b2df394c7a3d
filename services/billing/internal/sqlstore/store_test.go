package sqlstore_test

import (
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	billingstore "github.com/agentidp/agentidp/services/billing/internal/sqlstore"
	"github.com/agentidp/agentidp/services/billing/internal/storetest"
	"github.com/agentidp/agentidp/services/billing/migrations"
)

func harness(t *testing.T, d sqlstore.Driver) storetest.Harness {
	t.Helper()
	cfg := sqlstoretest.Config(t, d)
	if d == sqlstore.Postgres {
		cfg.MaxConns = 8
	}
	db := sqlstoretest.OpenConfig(t, cfg, migrations.FS)
	return storetest.Harness{
		Store: billingstore.New(db),
		OutboxCount: func(t *testing.T) int {
			t.Helper()
			var n int
			if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM outbox").Scan(&n); err != nil {
				t.Fatalf("count outbox: %v", err)
			}
			return n
		},
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, sqlstore.SQLite) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, sqlstore.Postgres) })
}
