package sqlstoretest_test

import (
	"context"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
)

var migrations = fstest.MapFS{
	"postgres/0001_init.sql": {Data: []byte("CREATE TABLE items (id TEXT PRIMARY KEY);")},
	"sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE items (id TEXT PRIMARY KEY);")},
}

func TestDrivers(t *testing.T) {
	got := sqlstoretest.Drivers()
	want := []sqlstore.Driver{sqlstore.SQLite, sqlstore.Postgres}
	if !slices.Equal(got, want) {
		t.Errorf("Drivers() = %v; want %v", got, want)
	}
}

// TestOpen opens, migrates and fills the outbox on each driver.
func TestOpen(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Drivers() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := sqlstoretest.Open(t, d, migrations)
			if db.Driver() != d {
				t.Errorf("Driver() = %q; want %q", db.Driver(), d)
			}
			if d == sqlstore.Postgres && db.Schema() == "" {
				t.Error("Schema() = \"\"; want a fresh schema")
			}
			applied, err := db.AppliedMigrations(ctx)
			if err != nil || !slices.Equal(applied, []string{"0001_init"}) {
				t.Errorf("AppliedMigrations() = %v, %v; want [0001_init]", applied, err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO items (id) VALUES (?)", "a"); err != nil {
				t.Fatalf("insert into migrated table: %v", err)
			}
			if got := sqlstoretest.OutboxIDs(t, db); len(got) != 0 {
				t.Errorf("OutboxIDs(empty) = %v; want none", got)
			}
			err = db.InTx(ctx, func(tx *sqlstore.Tx) error {
				return tx.AddOutbox(ctx,
					sqlstore.OutboxMessage{ID: "m1", Subject: "s", Data: []byte("1")},
					sqlstore.OutboxMessage{ID: "m2", Subject: "s", Data: []byte("2")})
			})
			if err != nil {
				t.Fatalf("AddOutbox: %v", err)
			}
			if got, want := sqlstoretest.OutboxIDs(t, db), []string{"m1", "m2"}; !slices.Equal(got, want) {
				t.Errorf("OutboxIDs() = %v; want %v", got, want)
			}
		})
	}
}

// TestConfigIsolated checks that two databases of one driver do not share
// tables.
func TestConfigIsolated(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Drivers() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a := sqlstoretest.Open(t, d, migrations)
			cfg := sqlstoretest.Config(t, d)
			if cfg.Driver != d {
				t.Errorf("Config(%q).Driver = %q", d, cfg.Driver)
			}
			b := sqlstoretest.OpenConfig(t, cfg, migrations)
			if _, err := a.ExecContext(ctx, "INSERT INTO items (id) VALUES (?)", "only-a"); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := b.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil || n != 0 {
				t.Errorf("COUNT(*) in the other database = %d, %v; want 0", n, err)
			}
		})
	}
}
