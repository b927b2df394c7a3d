package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	astore "github.com/agentidp/agentidp/services/analytics/internal/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/storetest"
	"github.com/agentidp/agentidp/services/analytics/migrations"
)

func open(t *testing.T, cfg sqlstore.Config) counting.Store {
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
	return astore.New(db)
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		return open(t, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "analytics.db")})
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		url, schema := testkit.PostgresSchema(t)
		return open(t, sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 4})
	})
}
