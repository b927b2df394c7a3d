package sqlstore_test

import (
	"os"
	"testing"

	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/storetest"
)

// migrations are the module root's postgres/ and sqlite/ directories.
var migrations = os.DirFS("../..")

// open returns a store on a fresh database of driver d. PostgreSQL keeps
// pgxpool's default pool size (MaxConns 0), as these tests always have.
func open(t *testing.T, d lib.Driver) domain.Store {
	t.Helper()
	cfg := sqlstoretest.Config(t, d)
	cfg.MaxConns = 0
	return sqlstore.New(sqlstoretest.OpenConfig(t, cfg, migrations))
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) domain.Store { return open(t, lib.SQLite) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) domain.Store { return open(t, lib.Postgres) })
}
