package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/storetest"
)

// migrations are the module root's postgres/ and sqlite/ directories.
var migrations = os.DirFS("../..")

func open(t *testing.T, cfg lib.Config) domain.Store {
	t.Helper()
	ctx := context.Background()
	db, err := lib.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		t.Fatalf("outbox: %v", err)
	}
	return sqlstore.New(db)
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) domain.Store {
		return open(t, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "token.db")})
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) domain.Store {
		url, schema := testkit.PostgresSchema(t)
		return open(t, lib.Config{Driver: lib.Postgres, URL: url, Schema: schema})
	})
}
