// Package sqlstore is the analytics counter store on PostgreSQL and SQLite
// (through libs/sqlstore).
package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// Store implements counting.Store, audit.Store and compliance.Store.
type Store struct {
	db   *sqlstore.DB
	keys *audit.Keyring
}

var (
	_ counting.Store   = (*Store)(nil)
	_ audit.Store      = (*Store)(nil)
	_ compliance.Store = (*Store)(nil)
)

// New returns a store over db, which must have the analytics migrations;
// keys' current key keys the audit records it appends.
func New(db *sqlstore.DB, keys *audit.Keyring) *Store { return &Store{db: db, keys: keys} }

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

// dayColumn and dayParam adapt DATE columns: PostgreSQL keeps DATE, SQLite
// 'YYYY-MM-DD' text.
func (s *Store) dayColumn() string {
	if s.db.Driver() == sqlstore.Postgres {
		return "to_char(date, 'YYYY-MM-DD')"
	}
	return "date"
}

func (s *Store) dayParam() string {
	if s.db.Driver() == sqlstore.Postgres {
		return "?::date"
	}
	return "?"
}

// Activity implements counting.Store.
func (s *Store) Activity(ctx context.Context, orgID, from, to string) ([]counting.HourCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+s.dayColumn()+`, hour, count FROM analytics_activity
		WHERE organization_id = ? AND date >= `+s.dayParam()+` AND date <= `+s.dayParam()+` ORDER BY date, hour`, orgID, from, to)
	if err != nil {
		return nil, fmt.Errorf("query activity: %w", err)
	}
	defer rows.Close()
	out := []counting.HourCount{}
	for rows.Next() {
		var h counting.HourCount
		if err := rows.Scan(&h.Date, &h.Hour, &h.Count); err != nil {
			return nil, fmt.Errorf("scan activity: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// AgentUsage implements counting.Store.
func (s *Store) AgentUsage(ctx context.Context, orgID, from, to string) ([]counting.AgentUsage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent_id, sum(count), max(last_at) FROM analytics_agent_tokens
		WHERE organization_id = ? AND date >= `+s.dayParam()+` AND date <= `+s.dayParam()+` GROUP BY agent_id ORDER BY agent_id`, orgID, from, to)
	if err != nil {
		return nil, fmt.Errorf("query agent usage: %w", err)
	}
	defer rows.Close()
	out := []counting.AgentUsage{}
	for rows.Next() {
		var u counting.AgentUsage
		var last any
		if err := rows.Scan(&u.AgentID, &u.Tokens, &last); err != nil {
			return nil, fmt.Errorf("scan agent usage: %w", err)
		}
		if u.LastActiveAt, err = asTime(last); err != nil {
			return nil, fmt.Errorf("scan agent usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
