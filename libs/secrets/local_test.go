package secrets_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/secretstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
)

var testKEK = bytes.Repeat([]byte{0x42}, secrets.KEKSize)

func openSQLite(t *testing.T) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "secrets.db"),
	})
	if err != nil {
		t.Fatalf("sqlstore.Open(sqlite) error = %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(t *testing.T) *sqlstore.DB {
	t.Helper()
	url, schema := testkit.PostgresSchema(t)
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: 8,
	})
	if err != nil {
		t.Fatalf("sqlstore.Open(postgres) error = %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newLocal(t *testing.T, db *sqlstore.DB) *secrets.Local {
	t.Helper()
	l, err := secrets.NewLocal(db, testKEK)
	if err != nil {
		t.Fatalf("NewLocal() error = %v", err)
	}
	for range 2 { // idempotent
		if err := l.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate() error = %v", err)
		}
	}
	return l
}

func TestLocalSQLite(t *testing.T) {
	t.Parallel()
	secretstest.Run(t, func(t *testing.T) secrets.Store { return newLocal(t, openSQLite(t)) })
}

func TestLocalPostgres(t *testing.T) {
	t.Parallel()
	testkit.PostgresURL(t) // skip (or fail under CI) before starting subtests
	secretstest.Run(t, func(t *testing.T) secrets.Store { return newLocal(t, openPostgres(t)) })
}

func TestNewLocalKEKSize(t *testing.T) {
	t.Parallel()
	db := openSQLite(t)
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := secrets.NewLocal(db, make([]byte, n)); err == nil {
			t.Errorf("NewLocal(%d-byte KEK) error = nil; want an error", n)
		}
	}
	if _, err := secrets.NewLocal(nil, testKEK); err == nil {
		t.Errorf("NewLocal(nil db) error = nil; want an error")
	}
}

// TestLocalSealing checks the sealed rows themselves, on both drivers.
func TestLocalSealing(t *testing.T) {
	t.Parallel()
	drivers := []struct {
		name string
		open func(t *testing.T) *sqlstore.DB
	}{
		{"sqlite", openSQLite},
		{"postgres", openPostgres},
	}
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const value = "ed25519-private-key-material"

			setup := func(t *testing.T) (*sqlstore.DB, *secrets.Local) {
				db := d.open(t)
				l := newLocal(t, db)
				if _, err := l.Put(ctx, "did/keys/a", map[string]string{"key": value}); err != nil {
					t.Fatalf("Put() error = %v", err)
				}
				return db, l
			}
			checkFails := func(t *testing.T, l *secrets.Local, path string, version int) {
				t.Helper()
				_, err := l.GetVersion(ctx, path, version)
				if err == nil || errors.Is(err, secrets.ErrNotFound) {
					t.Fatalf("GetVersion(%q, %d) error = %v; want an open failure", path, version, err)
				}
				if strings.Contains(err.Error(), value) {
					t.Errorf("error %q leaks the value", err)
				}
			}

			t.Run("not plaintext", func(t *testing.T) {
				db, _ := setup(t)
				var sealed, nonce []byte
				if err := db.QueryRowContext(ctx, "SELECT sealed, nonce FROM secret_versions WHERE path = ?", "did/keys/a").Scan(&sealed, &nonce); err != nil {
					t.Fatalf("select error = %v", err)
				}
				if bytes.Contains(sealed, []byte(value)) || len(nonce) != 12 {
					t.Errorf("sealed row holds the plaintext or nonce is %d bytes; want ciphertext and 12", len(nonce))
				}
			})
			t.Run("distinct nonces", func(t *testing.T) {
				db, l := setup(t)
				if _, err := l.Put(ctx, "did/keys/a", map[string]string{"key": value}); err != nil {
					t.Fatalf("Put() error = %v", err)
				}
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(DISTINCT nonce) FROM secret_versions").Scan(&n); err != nil || n != 2 {
					t.Errorf("distinct nonces = %d, %v; want 2", n, err)
				}
			})
			t.Run("tampered", func(t *testing.T) {
				db, l := setup(t)
				var sealed []byte
				if err := db.QueryRowContext(ctx, "SELECT sealed FROM secret_versions WHERE path = ?", "did/keys/a").Scan(&sealed); err != nil {
					t.Fatalf("select error = %v", err)
				}
				sealed[len(sealed)/2] ^= 0x01
				if _, err := db.ExecContext(ctx, "UPDATE secret_versions SET sealed = ? WHERE path = ?", sealed, "did/keys/a"); err != nil {
					t.Fatalf("update error = %v", err)
				}
				checkFails(t, l, "did/keys/a", 1)
				if _, err := l.Get(ctx, "did/keys/a"); err == nil {
					t.Errorf("Get(tampered) error = nil; want an error")
				}
			})
			t.Run("moved to another path", func(t *testing.T) {
				db, l := setup(t)
				if _, err := db.ExecContext(ctx, `INSERT INTO secret_versions (path, version, sealed, nonce, created_at)
					SELECT ?, version, sealed, nonce, created_at FROM secret_versions WHERE path = ?`, "did/keys/b", "did/keys/a"); err != nil {
					t.Fatalf("copy row error = %v", err)
				}
				checkFails(t, l, "did/keys/b", 1)
				if got, err := l.Get(ctx, "did/keys/a"); err != nil || got.Data["key"] != value {
					t.Errorf("Get(original) = %v; want it still opens", err)
				}
			})
			t.Run("moved to another version", func(t *testing.T) {
				db, l := setup(t)
				if _, err := db.ExecContext(ctx, `INSERT INTO secret_versions (path, version, sealed, nonce, created_at)
					SELECT path, 2, sealed, nonce, created_at FROM secret_versions WHERE path = ?`, "did/keys/a"); err != nil {
					t.Fatalf("copy row error = %v", err)
				}
				checkFails(t, l, "did/keys/a", 2)
			})
			t.Run("wrong KEK", func(t *testing.T) {
				db, _ := setup(t)
				other, err := secrets.NewLocal(db, bytes.Repeat([]byte{0x07}, secrets.KEKSize))
				if err != nil {
					t.Fatalf("NewLocal() error = %v", err)
				}
				checkFails(t, other, "did/keys/a", 1)
			})
		})
	}
}
