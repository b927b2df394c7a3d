package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Session advisory lock taken around Migrate and EnsureOutbox on PostgreSQL
// (one bigint key per schema).
const migrationLockSQL = "SELECT pg_advisory_lock(hashtext(current_schema()))"
const migrationUnlockSQL = "SELECT pg_advisory_unlock(hashtext(current_schema()))"

type migration struct {
	version string
	sql     string
}

func loadMigrations(fsys fs.FS, d Driver) ([]migration, error) {
	dir := string(d)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read migrations dir %q: %w", dir, err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		if name[0] < '0' || name[0] > '9' {
			return nil, fmt.Errorf("sqlstore: migration %s/%s: name must start with a number (NNNN_name.sql)", dir, name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: read migration %s/%s: %w", dir, name, err)
		}
		out = append(out, migration{version: strings.TrimSuffix(name, ".sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// Migrate applies the migrations under "<driver>/" in migrations (for
// example postgres/0001_init.sql, sqlite/0001_init.sql; with //go:embed use
// fs.Sub to strip the embedding directory) that are not yet recorded in
// schema_migrations, in file-name order, each in its own transaction together
// with its schema_migrations row. Re-running is a no-op. On PostgreSQL the
// whole run holds pg_advisory_lock(hashtext(current_schema())) on a dedicated
// connection, so replicas starting together apply each migration once.
// Migrate logs nothing; failures are returned with the version that failed.
func (db *DB) Migrate(ctx context.Context, migrations fs.FS) error {
	ms, err := loadMigrations(migrations, db.driver)
	if err != nil {
		return err
	}
	return db.withMigrationLock(ctx, func(ex migrator) error {
		if err := ex.exec(ctx, createMigrationsTable(db.driver)); err != nil {
			return fmt.Errorf("sqlstore: create schema_migrations: %w", err)
		}
		applied, err := ex.applied(ctx)
		if err != nil {
			return err
		}
		done := make(map[string]bool, len(applied))
		for _, v := range applied {
			done[v] = true
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if err := ex.apply(ctx, m); err != nil {
				return fmt.Errorf("sqlstore: migration %s: %w", m.version, err)
			}
		}
		return nil
	})
}

// AppliedMigrations returns the versions recorded in schema_migrations, in
// order (empty if the table does not exist yet).
func (db *DB) AppliedMigrations(ctx context.Context) ([]string, error) {
	var exists bool
	var err error
	if db.driver == Postgres {
		err = db.sql.QueryRowContext(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists)
	} else {
		err = db.sql.QueryRowContext(ctx, "SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='schema_migrations'").Scan(&exists)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: applied migrations: %w", err)
	}
	if !exists {
		return nil, nil
	}
	return queryVersions(ctx, db.sql.QueryContext)
}

func queryVersions(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error)) ([]string, error) {
	rows, err := query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: applied migrations: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func createMigrationsTable(d Driver) string {
	if d == Postgres {
		return "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
	}
	return "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
}

// migrator runs DDL for Migrate/EnsureOutbox on the right connection.
type migrator interface {
	exec(ctx context.Context, sql string) error
	applied(ctx context.Context) ([]string, error)
	apply(ctx context.Context, m migration) error
}

func (db *DB) withMigrationLock(ctx context.Context, fn func(migrator) error) error {
	if db.driver != Postgres {
		return fn(sqliteMigrator{db})
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: acquire connection for migrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, migrationLockSQL); err != nil {
		return fmt.Errorf("sqlstore: migration lock: %w", err)
	}
	defer func() {
		// Unlock even if ctx is done; if that fails, drop the connection
		// (closing the session releases the lock).
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, migrationUnlockSQL); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	return fn(pgMigrator{conn})
}

type pgMigrator struct{ conn *pgxpool.Conn }

func (m pgMigrator) exec(ctx context.Context, q string) error {
	_, err := m.conn.Exec(ctx, q)
	return err
}

func (m pgMigrator) applied(ctx context.Context) ([]string, error) {
	rows, err := m.conn.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: applied migrations: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (m pgMigrator) apply(ctx context.Context, mig migration) error {
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		// No arguments: simple protocol, so a file may hold several statements.
		if _, err := tx.Exec(ctx, mig.sql); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", mig.version, time.Now().UTC())
		return err
	})
}

type sqliteMigrator struct{ db *DB }

func (m sqliteMigrator) exec(ctx context.Context, q string) error {
	_, err := m.db.sql.ExecContext(ctx, q)
	return err
}

func (m sqliteMigrator) applied(ctx context.Context) ([]string, error) {
	return queryVersions(ctx, m.db.sql.QueryContext)
}

func (m sqliteMigrator) apply(ctx context.Context, mig migration) error {
	return m.db.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.tx.ExecContext(ctx, mig.sql); err != nil {
			return err
		}
		_, err := tx.tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", mig.version, time.Now().UTC())
		return err
	})
}
