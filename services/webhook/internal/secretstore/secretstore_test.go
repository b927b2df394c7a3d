package secretstore_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	"github.com/agentidp/agentidp/services/webhook/internal/secretstore"
	"github.com/agentidp/agentidp/services/webhook/internal/storetest"
)

func local(t *testing.T, cfg sqlstore.Config) *secretstore.Store {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { db.Close() })
	l, err := secrets.NewLocal(db, bytes.Repeat([]byte{7}, secrets.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return secretstore.New(l)
}

func vault(t *testing.T) (*secretstore.Store, *vaulttest.Server) {
	t.Helper()
	srv := vaulttest.Start(t)
	v, err := secrets.NewVault(secrets.VaultConfig{Address: srv.URL, Token: srv.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	return secretstore.New(v), srv
}

func TestLocalSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunSecrets(t, func(t *testing.T) hook.SecretStore {
		return local(t, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "webhook.db")})
	})
}

func TestLocalPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunSecrets(t, func(t *testing.T) hook.SecretStore {
		url, schema := testkit.PostgresSchema(t)
		return local(t, sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 4})
	})
}

func TestVault(t *testing.T) {
	t.Parallel()
	storetest.RunSecrets(t, func(t *testing.T) hook.SecretStore {
		s, _ := vault(t)
		return s
	})
}

// TestVaultUnavailableIsNotNotFound: a sealed Vault must not look like a
// missing secret (the dispatcher retries after the lease instead of
// treating the endpoint as broken), and the error never carries the value.
func TestVaultUnavailableIsNotNotFound(t *testing.T) {
	t.Parallel()
	s, srv := vault(t)
	ctx := context.Background()
	path := hook.SecretPathPrefix + "wh_sealed"
	if _, err := s.Put(ctx, path, map[string]string{"current": "whsec_value"}); err != nil {
		t.Fatal(err)
	}
	srv.SetSealed(true)
	_, err := s.Get(ctx, path)
	if err == nil || errors.Is(err, hook.ErrSecretNotFound) || !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Get(sealed) = %v; want ErrUnavailable, not ErrSecretNotFound", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping(sealed) = nil; want an error")
	}
	srv.SetSealed(false)
	if got, err := s.Get(ctx, path); err != nil || got["current"] != "whsec_value" {
		t.Errorf("Get(unsealed) = %v, %v; want the secret", got, err)
	}
}
