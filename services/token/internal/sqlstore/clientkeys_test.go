package sqlstore_test

import (
	"testing"

	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/storetest"
)

func TestClientKeysSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunClientKeys(t, func(t *testing.T) domain.Store { return open(t, lib.SQLite) })
}

func TestClientKeysPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunClientKeys(t, func(t *testing.T) domain.Store { return open(t, lib.Postgres) })
}
