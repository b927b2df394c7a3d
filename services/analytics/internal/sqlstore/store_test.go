package sqlstore_test

import (
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	astore "github.com/agentidp/agentidp/services/analytics/internal/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/storetest"
	"github.com/agentidp/agentidp/services/analytics/migrations"
)

// open opens cfg and migrates it. Unlike sqlstoretest.OpenConfig it does not
// create the outbox: analytics does not use one.
func open(t *testing.T, cfg sqlstore.Config) (*astore.Store, storetest.Exec) {
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
	exec := func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
	return astore.New(db), exec
}

func sqliteCfg(t *testing.T) sqlstore.Config {
	return sqlstoretest.Config(t, sqlstore.SQLite)
}

func postgresCfg(t *testing.T) sqlstore.Config {
	cfg := sqlstoretest.Config(t, sqlstore.Postgres)
	cfg.MaxConns = 6
	return cfg
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		s, _ := open(t, sqliteCfg(t))
		return s
	})
	storetest.RunAudit(t, func(t *testing.T) (storetest.FullStore, storetest.Exec) {
		return open(t, sqliteCfg(t))
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		s, _ := open(t, postgresCfg(t))
		return s
	})
	storetest.RunAudit(t, func(t *testing.T) (storetest.FullStore, storetest.Exec) {
		return open(t, postgresCfg(t))
	})
}
