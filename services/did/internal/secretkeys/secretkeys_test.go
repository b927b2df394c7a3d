package secretkeys_test

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
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/agentidp/agentidp/services/did/internal/secretkeys"
	"github.com/agentidp/agentidp/services/did/internal/storetest"
)

func local(t *testing.T, cfg sqlstore.Config) (*secretkeys.Store, *sqlstore.DB) {
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
	return secretkeys.New(l), db
}

func sqliteConfig(t *testing.T) sqlstore.Config {
	return sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "did.db")}
}

func vault(t *testing.T) (*secretkeys.Store, *vaulttest.Server) {
	t.Helper()
	srv := vaulttest.Start(t)
	v, err := secrets.NewVault(secrets.VaultConfig{Address: srv.URL, Token: srv.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	return secretkeys.New(v), srv
}

func TestLocalSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunKeys(t, func(t *testing.T) domain.KeyStore { s, _ := local(t, sqliteConfig(t)); return s })
}

func TestLocalPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunKeys(t, func(t *testing.T) domain.KeyStore {
		url, schema := testkit.PostgresSchema(t)
		s, _ := local(t, sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 4})
		return s
	})
}

func TestVault(t *testing.T) {
	t.Parallel()
	storetest.RunKeys(t, func(t *testing.T) domain.KeyStore { s, _ := vault(t); return s })
}

// TestLocalIsSealed: the DER never reaches the database in clear (nor as
// its base64).
func TestLocalIsSealed(t *testing.T) {
	t.Parallel()
	s, db := local(t, sqliteConfig(t))
	ctx := context.Background()
	der := []byte("-----private key der bytes-----")
	if err := s.Put(ctx, domain.KeyRef("instance", "k1"), der); err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	if err := db.QueryRowContext(ctx, "SELECT sealed FROM secret_versions WHERE path = ?", "did/keys/instance/k1").Scan(&sealed); err != nil {
		t.Fatalf("no secret_versions row at did/keys/instance/k1: %v", err)
	}
	if bytes.Contains(sealed, der) || bytes.Contains(sealed, []byte("LS0tLS1wcml2")) {
		t.Error("the key is stored in clear")
	}
}

// TestVaultErrors: a sealed Vault is not a missing key; a value that is not
// base64 is reported without quoting it.
func TestVaultErrors(t *testing.T) {
	t.Parallel()
	s, srv := vault(t)
	ctx := context.Background()
	ref := domain.KeyRef("instance", "k1")
	if err := s.Put(ctx, ref, []byte("der")); err != nil {
		t.Fatal(err)
	}
	srv.SetSealed(true)
	if _, err := s.Get(ctx, ref); err == nil || errors.Is(err, domain.ErrNotFound) || !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Get(sealed) = %v; want ErrUnavailable, not ErrNotFound", err)
	}
	srv.SetSealed(false)
	v, _ := secrets.NewVault(secrets.VaultConfig{Address: srv.URL, Token: srv.RootToken})
	if _, err := v.Put(ctx, ref, map[string]string{secretkeys.DataKey: "not base64 !!secret!!"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ref); err == nil || bytes.Contains([]byte(err.Error()), []byte("!!secret!!")) {
		t.Errorf("Get(malformed) = %v; want an error that does not quote the value", err)
	}
	if err := s.Put(ctx, ref, nil); err == nil {
		t.Error("Put(empty key) = nil; want an error")
	}
}
