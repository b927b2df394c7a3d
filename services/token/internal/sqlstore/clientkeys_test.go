package sqlstore_test

import (
	"path/filepath"
	"testing"

	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/storetest"
)

func TestClientKeysSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunClientKeys(t, func(t *testing.T) domain.Store {
		return open(t, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "token.db")})
	})
}

func TestClientKeysPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunClientKeys(t, func(t *testing.T) domain.Store {
		url, schema := testkit.PostgresSchema(t)
		return open(t, lib.Config{Driver: lib.Postgres, URL: url, Schema: schema})
	})
}
