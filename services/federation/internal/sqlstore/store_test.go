package sqlstore_test

import (
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	fedstore "github.com/agentidp/agentidp/services/federation/internal/sqlstore"
	"github.com/agentidp/agentidp/services/federation/internal/storetest"
	"github.com/agentidp/agentidp/services/federation/migrations"
)

func harness(t *testing.T, db *sqlstore.DB) storetest.Harness {
	return storetest.Harness{
		Store:  fedstore.New(db),
		Outbox: func(t *testing.T) []string { return sqlstoretest.OutboxIDs(t, db) },
	}
}

func sqliteDB(t *testing.T) *sqlstore.DB {
	return sqlstoretest.Open(t, sqlstore.SQLite, migrations.FS)
}

func postgresDB(t *testing.T) *sqlstore.DB {
	return sqlstoretest.Open(t, sqlstore.Postgres, migrations.FS)
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, sqliteDB(t)) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness { return harness(t, postgresDB(t)) })
}
