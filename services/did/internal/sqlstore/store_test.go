package sqlstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/agentidp/agentidp/services/did/internal/sealedkeys"
	didstore "github.com/agentidp/agentidp/services/did/internal/sqlstore"
	"github.com/agentidp/agentidp/services/did/internal/storetest"
	"github.com/agentidp/agentidp/services/did/migrations"
)

func harness(t *testing.T, db *sqlstore.DB) storetest.Harness {
	return storetest.Harness{
		Store:  didstore.New(db),
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

// TestSealedKeys runs the local key store on both databases: round trip,
// idempotent Put, missing ref, wrong key-encryption key.
func TestSealedKeys(t *testing.T) {
	t.Parallel()
	for name, newDB := range map[string]func(*testing.T) *sqlstore.DB{"sqlite": sqliteDB, "postgres": postgresDB} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := newDB(t)
			kek := bytes.Repeat([]byte{7}, 32)
			s, err := sealedkeys.New(db, kek)
			if err != nil {
				t.Fatal(err)
			}
			secret := []byte("private key der")
			if err := s.Put(ctx, "did/a/k1", secret); err != nil {
				t.Fatalf("Put = %v", err)
			}
			if err := s.Put(ctx, "did/a/k1", secret); err != nil {
				t.Errorf("Put(again) = %v; want nil", err)
			}
			got, err := s.Get(ctx, "did/a/k1")
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("Get = %q, %v; want %q", got, err, secret)
			}
			var ct []byte
			if err := db.QueryRowContext(ctx, "SELECT ciphertext FROM did_sealed_keys WHERE ref = ?", "did/a/k1").Scan(&ct); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(ct, secret) {
				t.Errorf("Got(ciphertext) contains the plaintext; want it sealed")
			}
			if _, err := s.Get(ctx, "did/a/missing"); !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("Get(missing) = %v; want ErrNotFound", err)
			}
			other, _ := sealedkeys.New(db, bytes.Repeat([]byte{8}, 32))
			if _, err := other.Get(ctx, "did/a/k1"); err == nil {
				t.Errorf("Get(wrong kek) = nil error; want failure")
			}
			if _, err := sealedkeys.New(db, []byte("short")); err == nil {
				t.Errorf("New(short kek) = nil error; want failure")
			}
		})
	}
}
