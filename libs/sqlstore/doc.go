// Package sqlstore holds the relational-store helpers shared by every
// AgentIdP service: one SQL implementation of a service's store runs on both
// PostgreSQL (production, via pgx) and SQLite (embedded dev mode, via the
// pure-Go modernc.org/sqlite driver).
//
// # Opening
//
//	db, err := sqlstore.Open(ctx, sqlstore.Config{
//		Driver: sqlstore.Postgres,
//		URL:    "postgres://…",
//		Schema: "token", // created if missing, set as search_path on every connection
//	})
//
// For SQLite, URL is a file path; the file is opened in WAL mode with
// busy_timeout=5000, foreign_keys=ON, IMMEDIATE transactions and, unless
// Config.MaxConns says otherwise, a single pooled connection (one writer: no
// SQLITE_BUSY under concurrency). Consequence: inside InTx use the *Tx, never
// the *DB, or the call waits for the connection the transaction holds; and
// always close *sql.Rows.
//
// # Placeholders
//
// Write queries with '?' placeholders. DB and Tx methods rebind them to
// $1..$n on PostgreSQL (see Rebind; '?' inside quoted strings, quoted
// identifiers and comments is left alone). Do not use PostgreSQL's jsonb
// '?' operators in queries going through Rebind (use jsonb_exists() etc.),
// and do not use dollar-quoted strings containing '?'.
//
// # Times
//
// Rule: declare time columns TIMESTAMPTZ on PostgreSQL and TIMESTAMP on SQLite,
// and pass times as time.Time parameters from Go (not CURRENT_TIMESTAMP /
// now(), which on SQLite writes a different text format that does not compare
// correctly with driver-written values). Both drivers are configured so that
// a time.Time round-trips as the same instant and is scanned back with
// Location() == time.UTC (PostgreSQL: timestamptz scanned in UTC; SQLite:
// _timezone=UTC and the "2006-01-02 15:04:05.999999999-07:00" text format,
// which sorts correctly as text, so ORDER BY and < work on such columns).
// PostgreSQL keeps microseconds: truncate to time.Microsecond if you compare
// round-tripped values exactly.
//
// # Migrations
//
// DB.Migrate applies postgres/NNNN_name.sql or sqlite/NNNN_name.sql files
// from an fs.FS in name order, each in its own transaction, recording the
// version (file name without ".sql") in schema_migrations. On PostgreSQL a
// session advisory lock keyed by the current schema serialises replicas.
//
// # Outbox
//
// See outbox.go: Tx.AddOutbox writes events in the caller's transaction,
// Relay publishes them (in commit order, at least once) through a
// PublishFunc; DB.EnsureOutbox creates the table.
package sqlstore
