package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Driver names a supported SQL backend.
type Driver string

const (
	// Postgres is PostgreSQL through pgx (production).
	Postgres Driver = "postgres"
	// SQLite is SQLite through modernc.org/sqlite (embedded dev mode).
	SQLite Driver = "sqlite"
)

// Config says which database to open.
type Config struct {
	// Driver is Postgres or SQLite.
	Driver Driver
	// URL is a postgres:// URL (or key=value DSN) for Postgres, or a file
	// path for SQLite (a "file:" URI is accepted too; extra query
	// parameters are kept).
	URL string
	// Schema is the PostgreSQL schema of this service: created if missing
	// and set as search_path on every pooled connection. Empty keeps the
	// server's default search_path. Ignored for SQLite.
	Schema string
	// MaxConns caps the pool. 0 = pgxpool's default on PostgreSQL, 1 on
	// SQLite (single writer; see the package doc before raising it).
	MaxConns int32
}

// DB is an open database: a *sql.DB plus, on PostgreSQL, the pgxpool.Pool
// behind it. Its query methods take '?' placeholders (see Rebind).
type DB struct {
	sql    *sql.DB
	pool   *pgxpool.Pool
	driver Driver
	schema string
}

// Querier is what DB and Tx have in common, so store code can take either.
type Querier interface {
	Driver() Driver
	Rebind(query string) string
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
)

// Open connects to the database described by cfg and checks it with a ping.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	switch cfg.Driver {
	case Postgres:
		return openPostgres(ctx, cfg)
	case SQLite:
		return openSQLite(ctx, cfg)
	default:
		return nil, fmt.Errorf("sqlstore: unknown driver %q", cfg.Driver)
	}
}

func openPostgres(ctx context.Context, cfg Config) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: parse postgres url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	if cfg.Schema != "" {
		if err := createSchema(ctx, pcfg.ConnConfig.Copy(), cfg.Schema); err != nil {
			return nil, err
		}
		if pcfg.ConnConfig.RuntimeParams == nil {
			pcfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		pcfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	prevAfter := pcfg.AfterConnect
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		// Scan timestamptz in UTC so times round-trip identically on both drivers.
		c.TypeMap().RegisterType(&pgtype.Type{
			Name:  "timestamptz",
			OID:   pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		if prevAfter != nil {
			return prevAfter(ctx, c)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sqlstore: ping postgres: %w", err)
	}
	return &DB{sql: stdlib.OpenDBFromPool(pool), pool: pool, driver: Postgres, schema: cfg.Schema}, nil
}

func createSchema(ctx context.Context, cc *pgx.ConnConfig, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("sqlstore: connect postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P06") {
		err = nil // created concurrently by another replica
	}
	if err != nil {
		return fmt.Errorf("sqlstore: create schema %q: %w", schema, err)
	}
	return nil
}

// SQLiteDSN returns the modernc.org/sqlite DSN Open uses for a file path.
func SQLiteDSN(path string) string {
	base, rawQuery, _ := strings.Cut(path, "?")
	q, _ := url.ParseQuery(rawQuery)
	set := func(k, v string) {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	set("_txlock", "immediate")
	set("_timezone", "UTC")
	set("_time_format", "sqlite")
	if !strings.HasPrefix(base, "file:") {
		// A plain path becomes a URI: SQLite would decode %XX in it and
		// end it at '#' (a directory named "a#1" would open "a").
		base = "file:" + strings.NewReplacer("%", "%25", "#", "%23").Replace(base)
	}
	return base + "?" + q.Encode()
}

func openSQLite(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.URL == "" {
		return nil, errors.New("sqlstore: sqlite needs a file path in Config.URL")
	}
	db, err := sql.Open("sqlite", SQLiteDSN(cfg.URL))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	n := int(cfg.MaxConns)
	if n <= 0 {
		n = 1
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite %s: %w", cfg.URL, err)
	}
	return &DB{sql: db, driver: SQLite}, nil
}

// SQL returns the underlying *sql.DB (queries through it are NOT rebound).
func (db *DB) SQL() *sql.DB { return db.sql }

// Pool returns the pgx pool on PostgreSQL, nil on SQLite.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Driver returns the backend in use.
func (db *DB) Driver() Driver { return db.driver }

// Schema returns Config.Schema on PostgreSQL ("" on SQLite).
func (db *DB) Schema() string { return db.schema }

// Rebind converts '?' placeholders to $1..$n on PostgreSQL (see the package
// function Rebind); on SQLite it returns query unchanged.
func (db *DB) Rebind(query string) string { return Rebind(db.driver, query) }

// ExecContext runs a statement after rebinding its placeholders.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := db.sql.ExecContext(ctx, db.Rebind(query), args...)
	return res, classify(err)
}

// QueryContext runs a query after rebinding its placeholders.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.sql.QueryContext(ctx, db.Rebind(query), args...)
	return rows, classify(err)
}

// QueryRowContext runs a single-row query after rebinding its placeholders.
// Its error surfaces at Scan, unclassified: IsUnavailable still recognises
// it, and libs/httpx maps a network failure in the chain to 503 itself.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return db.sql.QueryRowContext(ctx, db.Rebind(query), args...)
}

// Ping checks the connection.
func (db *DB) Ping(ctx context.Context) error { return classify(db.sql.PingContext(ctx)) }

// Close closes the *sql.DB and, on PostgreSQL, the pool.
func (db *DB) Close() error {
	err := db.sql.Close()
	if db.pool != nil {
		db.pool.Close()
	}
	return err
}

// Tx is a transaction whose query methods rebind '?' placeholders.
type Tx struct {
	tx *sql.Tx
	db *DB
}

// SQL returns the underlying *sql.Tx (queries through it are NOT rebound).
func (tx *Tx) SQL() *sql.Tx { return tx.tx }

// Driver returns the backend in use.
func (tx *Tx) Driver() Driver { return tx.db.driver }

// Rebind is DB.Rebind.
func (tx *Tx) Rebind(query string) string { return tx.db.Rebind(query) }

// ExecContext runs a statement in the transaction after rebinding.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := tx.tx.ExecContext(ctx, tx.Rebind(query), args...)
	return res, classify(err)
}

// QueryContext runs a query in the transaction after rebinding.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := tx.tx.QueryContext(ctx, tx.Rebind(query), args...)
	return rows, classify(err)
}

// QueryRowContext runs a single-row query in the transaction after rebinding.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.Rebind(query), args...)
}

// InTx runs fn in a transaction: committed when fn returns nil, rolled back
// when fn returns an error (that error is returned, unwrapped) or panics (the
// panic is re-raised after the rollback).
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	return db.InTxOpts(ctx, nil, fn)
}

// InTxOpts is InTx with explicit *sql.TxOptions (isolation level, read-only).
func (db *DB) InTxOpts(ctx context.Context, opts *sql.TxOptions, fn func(tx *Tx) error) (err error) {
	stx, err := db.sql.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", classify(err))
	}
	tx := &Tx{tx: stx, db: db}
	committed := false
	defer func() {
		if !committed {
			_ = stx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := stx.Commit(); err != nil {
		committed = true // nothing left to roll back
		return fmt.Errorf("sqlstore: commit: %w", classify(err))
	}
	committed = true
	return nil
}

// IsUniqueViolation reports whether err (or an error it wraps) is a unique or
// primary-key constraint violation on either driver.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true
		}
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}
