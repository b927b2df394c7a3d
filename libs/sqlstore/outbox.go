package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Outbox DDL. Times are written from Go (see the package doc on times).
var outboxDDL = map[Driver][]string{
	Postgres: {
		`CREATE TABLE IF NOT EXISTS outbox (
	seq          BIGSERIAL PRIMARY KEY,
	id           TEXT NOT NULL UNIQUE,
	subject      TEXT NOT NULL,
	payload      BYTEA NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	published_at TIMESTAMPTZ NULL
)`,
		`CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL`,
		`CREATE INDEX IF NOT EXISTS outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL`,
	},
	SQLite: {
		`CREATE TABLE IF NOT EXISTS outbox (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	id           TEXT NOT NULL UNIQUE,
	subject      TEXT NOT NULL,
	payload      BLOB NOT NULL,
	created_at   TIMESTAMP NOT NULL,
	published_at TIMESTAMP NULL
)`,
		`CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL`,
		`CREATE INDEX IF NOT EXISTS outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL`,
	},
}

// EnsureOutbox creates the outbox table and its indexes if missing
// (idempotent; on PostgreSQL under the same advisory lock as Migrate, so
// replicas may call it concurrently). Call it at start-up, before or after
// Migrate. It does not touch schema_migrations.
func (db *DB) EnsureOutbox(ctx context.Context) error {
	return db.withMigrationLock(ctx, func(m migrator) error {
		for _, q := range outboxDDL[db.driver] {
			if err := m.exec(ctx, q); err != nil {
				return fmt.Errorf("sqlstore: ensure outbox: %w", err)
			}
		}
		return nil
	})
}

// OutboxMessage is one event waiting in the outbox.
type OutboxMessage struct {
	// ID is unique per message and becomes the Nats-Msg-Id, so JetStream
	// drops the duplicates that at-least-once relaying can produce. AddOutbox
	// fills in a random one when empty.
	ID string
	// Subject is the NATS subject to publish on.
	Subject string
	// Data is the payload.
	Data []byte
	// CreatedAt defaults to the time of AddOutbox; scanned back in UTC.
	CreatedAt time.Time
}

// AddOutbox inserts msgs into the outbox within the caller's transaction, so
// they are published if and only if the transaction commits. Call
// Relay.Notify after the commit for low latency. A duplicate ID fails with an
// error for which IsUniqueViolation is true.
func (tx *Tx) AddOutbox(ctx context.Context, msgs ...OutboxMessage) error {
	now := time.Now().UTC()
	for i := range msgs {
		m := msgs[i]
		if m.Subject == "" {
			return errors.New("sqlstore: outbox message without subject")
		}
		if m.ID == "" {
			m.ID = newID()
		}
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		}
		data := m.Data
		if data == nil {
			data = []byte{}
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO outbox (id, subject, payload, created_at) VALUES (?, ?, ?, ?)",
			m.ID, m.Subject, data, m.CreatedAt.UTC()); err != nil {
			return fmt.Errorf("sqlstore: add outbox %s: %w", m.ID, err)
		}
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// PublishFunc publishes a batch in order and returns nil only once every
// message is durably accepted (for JetStream: published with Nats-Msg-Id = ID
// and acked). On error the whole batch is retried later.
type PublishFunc func(ctx context.Context, msgs []OutboxMessage) error

// RelayOptions tunes a Relay. Zero values take the defaults.
type RelayOptions struct {
	// Service labels the metrics (const label service=<Service>).
	Service string
	// Logger receives publish failures (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, gets agentidp_outbox_pending,
	// agentidp_outbox_oldest_age_seconds (gauges) and
	// agentidp_outbox_published_total (counter).
	Registerer prometheus.Registerer
	// BatchSize is the most rows published per round (default 256).
	BatchSize int
	// PollInterval is the wait between rounds when the outbox is empty
	// (default 200ms); Notify cuts it short.
	PollInterval time.Duration
	// Retention: published rows older than this are deleted (default 24h;
	// negative disables deletion).
	Retention time.Duration
	// MaxBackoff caps the exponential back-off after publish errors
	// (default 5s; it starts at 100ms).
	MaxBackoff time.Duration
}

// Relay moves committed outbox rows to the message bus. Delivery is at least
// once and in commit order: on PostgreSQL several replicas may run relays on
// the same table — a transaction-scoped advisory lock lets one publish at a
// time (the others stand by, polling), the rows are read with
// FOR UPDATE SKIP LOCKED, published while locked and then marked, so a crash
// between publish and mark only causes a re-publish. On SQLite (one process)
// rows are read, published, then marked.
type Relay struct {
	db      *DB
	publish PublishFunc
	opts    RelayOptions
	log     *slog.Logger
	kick    chan struct{}

	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	published prometheus.Counter

	mu sync.Mutex // serialises rounds when Run is called more than once
}

// NewRelay builds a relay for db's outbox table (see EnsureOutbox).
func NewRelay(db *DB, publish PublishFunc, opts RelayOptions) *Relay {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 200 * time.Millisecond
	}
	if opts.Retention == 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{db: db, publish: publish, opts: opts, kick: make(chan struct{}, 1),
		log: log.With("component", "outbox-relay")}
	if opts.Registerer != nil {
		labels := prometheus.Labels{"service": opts.Service}
		r.pending = register(opts.Registerer, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentidp_outbox_pending", Help: "Outbox rows not yet published.", ConstLabels: labels,
		})).(prometheus.Gauge)
		r.oldest = register(opts.Registerer, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentidp_outbox_oldest_age_seconds", Help: "Age of the oldest unpublished outbox row.", ConstLabels: labels,
		})).(prometheus.Gauge)
		r.published = register(opts.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentidp_outbox_published_total", Help: "Outbox messages published (re-publishes included).", ConstLabels: labels,
		})).(prometheus.Counter)
	}
	return r
}

func register(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
		panic(err)
	}
	return c
}

// Notify wakes the relay now (non-blocking); call it after committing a
// transaction that added outbox messages.
func (r *Relay) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

const cleanupEvery = time.Minute

// Run relays until ctx is done, then returns nil. Publish and database
// errors are logged and retried with capped exponential back-off; Run never
// gives up on its own.
func (r *Relay) Run(ctx context.Context) error {
	var backoff time.Duration
	var lastCleanup, lastMetrics time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := r.round(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if backoff == 0 {
				backoff = 100 * time.Millisecond
			} else {
				backoff = min(backoff*2, r.opts.MaxBackoff)
			}
			r.log.Warn("outbox publish failed; retrying", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff, nil) {
				return nil
			}
			continue
		}
		backoff = 0
		if r.opts.Retention > 0 && time.Since(lastCleanup) >= cleanupEvery {
			lastCleanup = time.Now()
			if err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("outbox cleanup failed", "err", err)
			}
		}
		if r.pending != nil && time.Since(lastMetrics) >= time.Second {
			lastMetrics = time.Now()
			if c, age, err := r.Pending(ctx); err == nil {
				r.pending.Set(float64(c))
				r.oldest.Set(age.Seconds())
			}
		}
		if n >= r.opts.BatchSize {
			continue // more rows may be waiting
		}
		if !sleep(ctx, r.opts.PollInterval, r.kick) {
			return nil
		}
	}
}

// sleep waits d, a kick, or ctx; it reports false when ctx is done.
func sleep(ctx context.Context, d time.Duration, kick <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-kick:
	}
	return true
}

// round publishes at most one batch and returns its size.
func (r *Relay) round(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int
	var err error
	if r.db.driver == Postgres {
		n, err = r.roundPostgres(ctx)
	} else {
		n, err = r.roundSQLite(ctx)
	}
	if err == nil && n > 0 && r.published != nil {
		r.published.Add(float64(n))
	}
	return n, err
}

const relayLockSQL = "SELECT pg_try_advisory_xact_lock(hashtext(current_schema()), hashtext('agentidp.outbox.relay'))"

func (r *Relay) roundPostgres(ctx context.Context) (int, error) {
	tx, err := r.db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	var leader bool
	if err := tx.QueryRow(ctx, relayLockSQL).Scan(&leader); err != nil {
		return 0, fmt.Errorf("relay lock: %w", err)
	}
	if !leader {
		return 0, nil // another replica is relaying; stand by
	}
	rows, err := tx.Query(ctx, `SELECT seq, id, subject, payload, created_at FROM outbox
WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, r.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	seqs, msgs, err := scanOutbox(rows)
	rows.Close()
	if err == nil && rows.Err() != nil {
		err = fmt.Errorf("select: %w", rows.Err())
	}
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if err := r.publish(ctx, msgs); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if _, err := tx.Exec(ctx, "UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)", time.Now().UTC(), seqs); err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return len(msgs), nil
}

// outboxRows is what pgx.Rows and *sql.Rows share.
type outboxRows interface {
	Next() bool
	Scan(dest ...any) error
}

// scanOutbox reads the rows of the relay's SELECT (seq, id, subject,
// payload, created_at); the caller closes rows and checks rows.Err.
func scanOutbox(rows outboxRows) ([]int64, []OutboxMessage, error) {
	var seqs []int64
	var msgs []OutboxMessage
	for rows.Next() {
		var seq int64
		var m OutboxMessage
		if err := rows.Scan(&seq, &m.ID, &m.Subject, &m.Data, &m.CreatedAt); err != nil {
			return nil, nil, fmt.Errorf("scan: %w", err)
		}
		if m.Data == nil {
			m.Data = []byte{}
		}
		seqs = append(seqs, seq)
		msgs = append(msgs, m)
	}
	return seqs, msgs, nil
}

func (r *Relay) roundSQLite(ctx context.Context) (int, error) {
	// No transaction held while publishing: SQLite has one writer connection
	// and the service must not stall behind the bus.
	rows, err := r.db.sql.QueryContext(ctx, `SELECT seq, id, subject, payload, created_at FROM outbox
WHERE published_at IS NULL ORDER BY seq LIMIT ?`, r.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	seqs, msgs, err := scanOutbox(rows)
	rows.Close()
	if err == nil && rows.Err() != nil {
		err = fmt.Errorf("select: %w", rows.Err())
	}
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if err := r.publish(ctx, msgs); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	args := []any{time.Now().UTC()}
	for _, seq := range seqs {
		args = append(args, seq)
	}
	q := "UPDATE outbox SET published_at = ? WHERE seq IN (" + strings.TrimSuffix(strings.Repeat("?,", len(seqs)), ",") + ")"
	if _, err := r.db.sql.ExecContext(ctx, q, args...); err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	return len(msgs), nil
}

func (r *Relay) cleanup(ctx context.Context) error {
	cutoff := time.Now().UTC().Add(-r.opts.Retention)
	for {
		res, err := r.db.ExecContext(ctx, `DELETE FROM outbox WHERE seq IN (
SELECT seq FROM outbox WHERE published_at IS NOT NULL AND published_at < ? ORDER BY seq LIMIT 5000)`, cutoff)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n < 5000 {
			return nil
		}
	}
}

// Pending returns how many rows await publishing and the age of the oldest.
func (r *Relay) Pending(ctx context.Context) (count int64, oldest time.Duration, err error) {
	if err := r.db.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&count); err != nil {
		return 0, 0, fmt.Errorf("sqlstore: outbox pending: %w", err)
	}
	if count == 0 {
		return 0, 0, nil
	}
	var created time.Time
	err = r.db.QueryRowContext(ctx, "SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT 1").Scan(&created)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) { // published meanwhile
			return count, 0, nil
		}
		return 0, 0, fmt.Errorf("sqlstore: outbox oldest: %w", err)
	}
	return count, max(time.Since(created), 0), nil
}

// AddEvents writes event envelopes to the outbox inside the caller's
// transaction, each under its subject and with its id as the Nats-Msg-Id,
// so the change and its events commit together.
func (tx *Tx) AddEvents(ctx context.Context, evs ...events.Envelope) error {
	if len(evs) == 0 {
		return nil
	}
	msgs := make([]OutboxMessage, 0, len(evs))
	for _, e := range evs {
		data, err := e.Encode()
		if err != nil {
			return err
		}
		msgs = append(msgs, OutboxMessage{ID: e.ID, Subject: e.Type.Subject(), Data: data})
	}
	return tx.AddOutbox(ctx, msgs...)
}
