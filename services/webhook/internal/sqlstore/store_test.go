package sqlstore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/internal/storetest"
	"github.com/agentidp/agentidp/services/webhook/migrations"
)

func harness(t *testing.T, d sqlstore.Driver) storetest.Harness {
	t.Helper()
	db := sqlstoretest.Open(t, d, migrations.FS)
	secrets, err := whstore.NewSealedSecrets(db, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Harness{
		Store:   whstore.New(db),
		Secrets: secrets,
		Outbox: func(t *testing.T) []string {
			t.Helper()
			rows, err := db.QueryContext(context.Background(), "SELECT subject FROM outbox ORDER BY seq")
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
			return out
		},
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

func TestSealedSecretsWrongKey(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.Open(t, sqlstore.SQLite, migrations.FS)
	ctx := context.Background()
	a, _ := whstore.NewSealedSecrets(db, bytes.Repeat([]byte{1}, 32))
	b, _ := whstore.NewSealedSecrets(db, bytes.Repeat([]byte{2}, 32))
	if _, err := a.Put(ctx, "webhooks/x", map[string]string{"current": "whsec_secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "webhooks/x"); err == nil {
		t.Error("Get with another key = nil error; want a failure to unseal")
	}
	var raw []byte
	if err := db.QueryRowContext(ctx, "SELECT ciphertext FROM webhook_secrets").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("whsec_secret")) {
		t.Error("the secret is stored in clear")
	}
	if _, err := whstore.NewSealedSecrets(db, []byte("short")); err == nil {
		t.Error("NewSealedSecrets(short key) = nil error")
	}
}
