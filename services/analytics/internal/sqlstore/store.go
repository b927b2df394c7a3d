// Package sqlstore is the analytics counter store on PostgreSQL and SQLite
// (through libs/sqlstore).
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	"github.com/jackc/pgx/v5/pgconn"
)

// Store implements counting.Store.
type Store struct {
	db *sqlstore.DB
}

var _ counting.Store = (*Store)(nil)

// New returns a store over db, which must have the analytics migrations.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

// applyPostgres counts a batch in one statement (one round trip): insert
// the ids, keep those that were new (RETURNING), and add them up per
// counter. A single statement is atomic. Ids and counters are written in
// sorted order so that concurrent batches take row locks in the same order
// and do not deadlock; a concurrent insert of the same id waits for the
// other transaction and then does nothing, so each id counts once.
const applyPostgres = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(event_id, org, day, metric)
), ins AS (
    INSERT INTO processed_events (event_id, processed_at)
    SELECT event_id, $5 FROM input ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
INSERT INTO analytics_events (organization_id, date, metric_type, count)
SELECT i.org, i.day::date, i.metric, count(*)
FROM ins JOIN input i ON i.event_id = ins.event_id
GROUP BY i.org, i.day, i.metric
ORDER BY i.org, i.day, i.metric
ON CONFLICT (organization_id, date, metric_type)
DO UPDATE SET count = analytics_events.count + EXCLUDED.count`

// Apply implements counting.Store.
func (s *Store) Apply(ctx context.Context, batch []counting.Event, now time.Time) error {
	batch = uniqueSorted(batch)
	if len(batch) == 0 {
		return nil
	}
	now = now.UTC()
	if s.db.Driver() == sqlstore.Postgres {
		return s.applyPostgres(ctx, batch, now)
	}
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		type key struct{ org, day, metric string }
		fresh := map[key]int64{}
		var keys []key
		for _, e := range batch {
			res, err := tx.ExecContext(ctx, `INSERT INTO processed_events (event_id, processed_at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING`, e.ID, now)
			if err != nil {
				return fmt.Errorf("record event %s: %w", e.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				if err != nil {
					return fmt.Errorf("record event %s: %w", e.ID, err)
				}
				continue
			}
			k := key{e.OrgID, e.Date, e.Metric}
			if _, ok := fresh[k]; !ok {
				keys = append(keys, k)
			}
			fresh[k]++
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_events (organization_id, date, metric_type, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (organization_id, date, metric_type) DO UPDATE SET count = analytics_events.count + excluded.count`,
				k.org, k.day, k.metric, fresh[k]); err != nil {
				return fmt.Errorf("increment counter: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) applyPostgres(ctx context.Context, batch []counting.Event, now time.Time) error {
	ids := make([]string, len(batch))
	orgs := make([]string, len(batch))
	days := make([]string, len(batch))
	metrics := make([]string, len(batch))
	for i, e := range batch {
		ids[i], orgs[i], days[i], metrics[i] = e.ID, e.OrgID, e.Date, e.Metric
	}
	var err error
	// A deadlock is still possible in theory (e.g. against a prune);
	// PostgreSQL aborts one side and a retry is safe because the statement
	// is atomic.
	for attempt := 0; attempt < 3; attempt++ {
		if _, err = s.db.Pool().Exec(ctx, applyPostgres, ids, orgs, days, metrics, now); err == nil || !retryable(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("apply %d events: %w", len(batch), err)
	}
	return nil
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// uniqueSorted drops repeated ids (keeping the first) and sorts by id.
func uniqueSorted(batch []counting.Event) []counting.Event {
	out := slices.Clone(batch)
	slices.SortStableFunc(out, func(a, b counting.Event) int { return strings.Compare(a.ID, b.ID) })
	return slices.CompactFunc(out, func(a, b counting.Event) bool { return a.ID == b.ID })
}

// Counts implements counting.Store.
func (s *Store) Counts(ctx context.Context, orgID, metric, from, to string) (map[string]int64, error) {
	q := `SELECT date, count FROM analytics_events WHERE organization_id = ? AND metric_type = ? AND date >= ? AND date <= ?`
	if s.db.Driver() == sqlstore.Postgres {
		q = `SELECT to_char(date, 'YYYY-MM-DD'), count FROM analytics_events WHERE organization_id = ? AND metric_type = ? AND date >= ?::date AND date <= ?::date`
	}
	rows, err := s.db.QueryContext(ctx, q, orgID, metric, from, to)
	if err != nil {
		return nil, fmt.Errorf("query counters: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var day string
		var n int64
		if err := rows.Scan(&day, &n); err != nil {
			return nil, fmt.Errorf("scan counter: %w", err)
		}
		out[day] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query counters: %w", err)
	}
	return out, nil
}

// Prune implements counting.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM processed_events WHERE processed_at < ?`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("prune processed events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune processed events: %w", err)
	}
	return n, nil
}
