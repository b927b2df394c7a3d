// Package sqlstore is the billing service's store on PostgreSQL and SQLite
// (through libs/sqlstore), with the outbox in the same transactions.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/billing/internal/subscription"
)

// Store implements subscription.Store.
type Store struct {
	db *sqlstore.DB
}

var _ subscription.Store = (*Store)(nil)

// New returns a store over db, which must have the billing migrations and
// the outbox table.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

const columns = `organization_id, tier, status, stripe_customer_id, stripe_subscription_id, current_period_end, cancel_at_period_end, stripe_event_created, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanSub(r scanner) (subscription.Subscription, error) {
	var s subscription.Subscription
	var end sql.NullTime
	if err := r.Scan(&s.OrganizationID, &s.Tier, &s.Status, &s.StripeCustomerID, &s.StripeSubscriptionID, &end, &s.CancelAtPeriodEnd, &s.StripeEventCreated, &s.UpdatedAt); err != nil {
		return subscription.Subscription{}, err
	}
	if end.Valid {
		t := end.Time.UTC()
		s.CurrentPeriodEnd = &t
	}
	s.UpdatedAt = s.UpdatedAt.UTC()
	return s, nil
}

func getBy(ctx context.Context, q sqlstore.Querier, column, value string, lock bool) (subscription.Subscription, error) {
	// Several rows can share a customer or an old subscription id only in
	// odd histories; the most recently updated wins.
	query := `SELECT ` + columns + ` FROM tenant_subscriptions WHERE ` + column + ` = ? ORDER BY updated_at DESC LIMIT 1`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	s, err := scanSub(q.QueryRowContext(ctx, query, value))
	if errors.Is(err, sql.ErrNoRows) {
		return subscription.Subscription{}, subscription.ErrNotFound
	}
	if err != nil {
		return subscription.Subscription{}, fmt.Errorf("load subscription: %w", err)
	}
	return s, nil
}

// Get implements subscription.Store.
func (s *Store) Get(ctx context.Context, orgID string) (subscription.Subscription, error) {
	return getBy(ctx, s.db, "organization_id", orgID, false)
}

func find(ctx context.Context, tx *sqlstore.Tx, l subscription.Lookup) (subscription.Subscription, bool, error) {
	for _, c := range []struct{ column, value string }{
		{"organization_id", l.OrganizationID}, {"stripe_subscription_id", l.SubscriptionID}, {"stripe_customer_id", l.CustomerID},
	} {
		if c.value == "" {
			continue
		}
		cur, err := getBy(ctx, tx, c.column, c.value, true)
		if err == nil {
			return cur, true, nil
		}
		if !errors.Is(err, subscription.ErrNotFound) {
			return subscription.Subscription{}, false, err
		}
	}
	return subscription.Subscription{}, false, nil
}

// ApplyStripeEvent implements subscription.Store.
func (s *Store) ApplyStripeEvent(ctx context.Context, eventID, typ string, receivedAt time.Time, lookup subscription.Lookup, change subscription.Change) (bool, error) {
	var dup bool
	var err error
	// Two different events creating the same organisation's first row
	// concurrently: the loser's insert violates the key; retrying sees the
	// winner's row.
	for attempt := 0; attempt < 3; attempt++ {
		dup, err = s.apply(ctx, eventID, typ, receivedAt, lookup, change)
		if err == nil || !sqlstore.IsUniqueViolation(err) {
			break
		}
	}
	return dup, err
}

func (s *Store) apply(ctx context.Context, eventID, typ string, receivedAt time.Time, lookup subscription.Lookup, change subscription.Change) (bool, error) {
	var dup bool
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		// Insert first: a concurrent delivery of the same event waits here
		// for this transaction and then finds the id taken.
		res, err := tx.ExecContext(ctx, `INSERT INTO stripe_events (event_id, type, received_at) VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
			eventID, typ, receivedAt.UTC())
		if err != nil {
			return fmt.Errorf("record stripe event: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("record stripe event: %w", err)
		} else if n == 0 {
			dup = true
			return nil
		}
		cur, found, err := find(ctx, tx, lookup)
		if err != nil {
			return err
		}
		next, evs, err := change(cur, found)
		if err != nil || next == nil {
			return err
		}
		if err := save(ctx, tx, found && cur.OrganizationID == next.OrganizationID, *next); err != nil {
			return err
		}
		return tx.AddEvents(ctx, evs...)
	})
	return dup, err
}

func save(ctx context.Context, tx *sqlstore.Tx, exists bool, n subscription.Subscription) error {
	var end any
	if n.CurrentPeriodEnd != nil {
		end = n.CurrentPeriodEnd.UTC()
	}
	args := []any{n.Tier, n.Status, n.StripeCustomerID, n.StripeSubscriptionID, end, n.CancelAtPeriodEnd, n.StripeEventCreated, n.UpdatedAt.UTC(), n.OrganizationID}
	q := `UPDATE tenant_subscriptions SET tier = ?, status = ?, stripe_customer_id = ?, stripe_subscription_id = ?, current_period_end = ?,
		cancel_at_period_end = ?, stripe_event_created = ?, updated_at = ? WHERE organization_id = ?`
	if !exists {
		q = `INSERT INTO tenant_subscriptions (tier, status, stripe_customer_id, stripe_subscription_id, current_period_end,
			cancel_at_period_end, stripe_event_created, updated_at, organization_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("save subscription: %w", err)
	}
	return nil
}

// CountUsage implements subscription.Store: the analytics pattern (record
// the id, count it only when the insert was new), in id order so that
// concurrent batches lock rows in the same order.
func (s *Store) CountUsage(ctx context.Context, batch []subscription.UsageEvent, now time.Time) error {
	batch = slices.Clone(batch)
	slices.SortStableFunc(batch, func(a, b subscription.UsageEvent) int { return strings.Compare(a.ID, b.ID) })
	batch = slices.CompactFunc(batch, func(a, b subscription.UsageEvent) bool { return a.ID == b.ID })
	if len(batch) == 0 {
		return nil
	}
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		type key struct{ org, day, metric string }
		fresh := map[key]int64{}
		for _, e := range batch {
			res, err := tx.ExecContext(ctx, `INSERT INTO usage_events (event_id, processed_at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING`, e.ID, now.UTC())
			if err != nil {
				return fmt.Errorf("record usage event %s: %w", e.ID, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("record usage event %s: %w", e.ID, err)
			}
			if n > 0 {
				fresh[key{e.OrganizationID, e.Day, e.Metric}]++
			}
		}
		keys := make([]key, 0, len(fresh))
		for k := range fresh {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b key) int {
			return strings.Compare(a.org+"\x00"+a.day+"\x00"+a.metric, b.org+"\x00"+b.day+"\x00"+b.metric)
		})
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO usage_daily (organization_id, day, metric, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (organization_id, day, metric) DO UPDATE SET count = usage_daily.count + excluded.count`,
				k.org, k.day, k.metric, fresh[k]); err != nil {
				return fmt.Errorf("increment usage: %w", err)
			}
		}
		return nil
	})
}

// Usage implements subscription.Store.
func (s *Store) Usage(ctx context.Context, orgID, from, to string) ([]subscription.UsageDay, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT organization_id, day, metric, count, reported FROM usage_daily
		WHERE organization_id = ? AND day >= ? AND day <= ? ORDER BY day, metric`, orgID, from, to)
	if err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	defer rows.Close()
	out := []subscription.UsageDay{}
	for rows.Next() {
		var u subscription.UsageDay
		if err := rows.Scan(&u.OrganizationID, &u.Day, &u.Metric, &u.Count, &u.Reported); err != nil {
			return nil, fmt.Errorf("scan usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Unreported implements subscription.Store.
func (s *Store) Unreported(ctx context.Context, metric string, limit int) ([]subscription.UnreportedUsage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT u.organization_id, u.day, u.metric, u.count, u.reported, t.stripe_customer_id
		FROM usage_daily u JOIN tenant_subscriptions t ON t.organization_id = u.organization_id
		WHERE u.metric = ? AND u.count > u.reported AND t.stripe_customer_id <> ''
		ORDER BY u.day, u.organization_id LIMIT ?`, metric, limit)
	if err != nil {
		return nil, fmt.Errorf("query unreported usage: %w", err)
	}
	defer rows.Close()
	out := []subscription.UnreportedUsage{}
	for rows.Next() {
		var u subscription.UnreportedUsage
		if err := rows.Scan(&u.OrganizationID, &u.Day, &u.Metric, &u.Count, &u.Reported, &u.StripeCustomerID); err != nil {
			return nil, fmt.Errorf("scan unreported usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// MarkReported implements subscription.Store.
func (s *Store) MarkReported(ctx context.Context, orgID, day, metric string, count int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE usage_daily SET reported = ? WHERE organization_id = ? AND day = ? AND metric = ? AND reported < ?`,
		count, orgID, day, metric, count); err != nil {
		return fmt.Errorf("mark usage reported: %w", err)
	}
	return nil
}

// PruneUsageEvents implements subscription.Store.
func (s *Store) PruneUsageEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM usage_events WHERE processed_at < ?`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("prune usage events: %w", err)
	}
	return res.RowsAffected()
}
