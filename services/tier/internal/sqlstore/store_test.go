package sqlstore_test

import (
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	tierstore "github.com/agentidp/agentidp/services/tier/internal/sqlstore"
	"github.com/agentidp/agentidp/services/tier/internal/storetest"
	"github.com/agentidp/agentidp/services/tier/migrations"
)

func harness(t *testing.T, d sqlstore.Driver) storetest.Harness {
	t.Helper()
	db := sqlstoretest.Open(t, d, migrations.FS)
	return storetest.Harness{
		Store:  tierstore.New(db),
		Outbox: func(t *testing.T) []string { return sqlstoretest.OutboxIDs(t, db) },
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
