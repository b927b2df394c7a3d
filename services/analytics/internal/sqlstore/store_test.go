package sqlstore_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	astore "github.com/agentidp/agentidp/services/analytics/internal/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/storetest"
	"github.com/agentidp/agentidp/services/analytics/migrations"
	"github.com/jackc/pgx/v5"
)

// openDB opens cfg and migrates it (only up to storetest.LegacyMigration
// when legacy). Unlike sqlstoretest.OpenConfig it does not create the
// outbox: analytics does not use one.
func openDB(t *testing.T, cfg sqlstore.Config, legacy bool) storetest.AuditDB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { db.Close() })
	schema := fs.FS(migrations.FS)
	if legacy {
		schema = migrationsUpTo(t, storetest.LegacyMigration)
	}
	if err := db.Migrate(ctx, schema); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return storetest.AuditDB{
		Exec: attacker(t, cfg),
		Open: func(keys *audit.Keyring) storetest.FullStore {
			if err := db.Migrate(ctx, migrations.FS); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			return astore.New(db, keys)
		},
	}
}

// migrationsUpTo returns the migrations whose version is at most last.
func migrationsUpTo(t *testing.T, last string) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(migrations.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".sql") || path.Base(p)[:len(last)] > last {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, p)
		out[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attacker returns an Exec on a connection of its own to cfg's database,
// bypassing the store: pgx on PostgreSQL, database/sql on SQLite.
func attacker(t *testing.T, cfg sqlstore.Config) storetest.Exec {
	t.Helper()
	ctx := context.Background()
	if cfg.Driver == sqlstore.Postgres {
		conn, err := pgx.Connect(ctx, cfg.URL)
		if err != nil {
			t.Fatalf("attacker connect: %v", err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{cfg.Schema}.Sanitize()); err != nil {
			t.Fatalf("attacker search_path: %v", err)
		}
		return func(t *testing.T, q string, args ...any) {
			t.Helper()
			if _, err := conn.Exec(ctx, sqlstore.Rebind(sqlstore.Postgres, q), args...); err != nil {
				t.Fatalf("exec %q: %v", q, err)
			}
		}
	}
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(cfg.URL))
	if err != nil {
		t.Fatalf("attacker open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

func sqliteCfg(t *testing.T) sqlstore.Config {
	return sqlstoretest.Config(t, sqlstore.SQLite)
}

func postgresCfg(t *testing.T) sqlstore.Config {
	cfg := sqlstoretest.Config(t, sqlstore.Postgres)
	cfg.MaxConns = 6
	return cfg
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		return openDB(t, sqliteCfg(t), false).Open(storetest.Keys)
	})
	storetest.RunAudit(t, func(t *testing.T, legacy bool) storetest.AuditDB {
		return openDB(t, sqliteCfg(t), legacy)
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) counting.Store {
		return openDB(t, postgresCfg(t), false).Open(storetest.Keys)
	})
	storetest.RunAudit(t, func(t *testing.T, legacy bool) storetest.AuditDB {
		return openDB(t, postgresCfg(t), legacy)
	})
}

var backends = map[string]func(*testing.T) sqlstore.Config{"SQLite": sqliteCfg, "Postgres": postgresCfg}

// attack runs one attack of the suite on every backend.
func attack(t *testing.T, fn func(*testing.T, storetest.NewAuditDB)) {
	t.Parallel()
	for name, cfg := range backends {
		t.Run(name, func(t *testing.T) {
			fn(t, func(t *testing.T, legacy bool) storetest.AuditDB { return openDB(t, cfg(t), legacy) })
		})
	}
}

// TestAttackAuditRewriteWithDatabaseAccess is the attack of issue 12: a
// database writer rewrites a record, every later hash (the unkeyed
// algorithm) and the head; verify reports the record.
func TestAttackAuditRewriteWithDatabaseAccess(t *testing.T) { attack(t, storetest.AttackRewrite) }

// TestAttackAuditKeyMismatch: records verify only under the key they name.
func TestAttackAuditKeyMismatch(t *testing.T) { attack(t, storetest.AttackKeyMismatch) }

// TestAttackAuditUpgradedChainRewrite: a chain written by the unkeyed code
// is anchored at the upgrade, and rewriting its old records afterwards is
// reported.
func TestAttackAuditUpgradedChainRewrite(t *testing.T) { attack(t, storetest.AttackUpgradedRewrite) }
