// Package sqlstore is the webhook service's store on PostgreSQL and SQLite
// (through libs/sqlstore), with the outbox in the same transactions, and a
// local AES-GCM sealed secret store.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	"github.com/google/uuid"
)

// Store implements hook.Store.
type Store struct {
	db *sqlstore.DB
}

var _ hook.Store = (*Store)(nil)

// New returns a store over db, which must have the webhook migrations and
// the outbox table.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

const subColumns = `id, organization_id, name, url, events, active, secret_path, failure_count, failing_since, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanSub(r scanner) (hook.Subscription, error) {
	var s hook.Subscription
	var evs string
	var failing sql.NullTime
	if err := r.Scan(&s.ID, &s.OrganizationID, &s.Name, &s.URL, &evs, &s.Active, &s.SecretPath, &s.FailureCount,
		&failing, &s.CreatedAt, &s.UpdatedAt); err != nil {
		return hook.Subscription{}, err
	}
	var err error
	if s.Events, err = hook.DecodeEvents(evs); err != nil {
		return hook.Subscription{}, fmt.Errorf("subscription %s: events: %w", s.ID, err)
	}
	if failing.Valid {
		t := failing.Time.UTC()
		s.FailingSince = &t
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s, nil
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

func addEvents(ctx context.Context, tx *sqlstore.Tx, evs []events.Envelope) error {
	if len(evs) == 0 {
		return nil
	}
	msgs := make([]sqlstore.OutboxMessage, 0, len(evs))
	for _, e := range evs {
		data, err := e.Encode()
		if err != nil {
			return err
		}
		msgs = append(msgs, sqlstore.OutboxMessage{ID: e.ID, Subject: e.Type.Subject(), Data: data})
	}
	return tx.AddOutbox(ctx, msgs...)
}

// CreateSubscription implements hook.Store.
func (s *Store) CreateSubscription(ctx context.Context, sub hook.Subscription) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO webhook_subscriptions (`+subColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sub.ID, sub.OrganizationID, sub.Name, sub.URL, hook.EncodeEvents(sub.Events), sub.Active, sub.SecretPath,
		sub.FailureCount, nullTime(sub.FailingSince), sub.CreatedAt.UTC(), sub.UpdatedAt.UTC())
	if err != nil {
		return fmt.Errorf("insert subscription: %w", err)
	}
	return nil
}

// GetSubscription implements hook.Store.
func (s *Store) GetSubscription(ctx context.Context, orgID, id string) (hook.Subscription, error) {
	return getSub(ctx, s.db, orgID, id, false)
}

func getSub(ctx context.Context, q sqlstore.Querier, orgID, id string, lock bool) (hook.Subscription, error) {
	query := `SELECT ` + subColumns + ` FROM webhook_subscriptions WHERE organization_id = ? AND id = ?`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	sub, err := scanSub(q.QueryRowContext(ctx, query, orgID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return hook.Subscription{}, hook.ErrNotFound
	}
	if err != nil {
		return hook.Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	return sub, nil
}

// ListSubscriptions implements hook.Store.
func (s *Store) ListSubscriptions(ctx context.Context, orgID string, offset, limit int) ([]hook.Subscription, int64, error) {
	var total int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_subscriptions WHERE organization_id = ?`, orgID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count subscriptions: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions WHERE organization_id = ?
ORDER BY created_at, id LIMIT ? OFFSET ?`, orgID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []hook.Subscription
	for rows.Next() {
		sub, err := scanSub(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	return out, total, rows.Err()
}

func saveSub(ctx context.Context, tx *sqlstore.Tx, sub hook.Subscription) error {
	_, err := tx.ExecContext(ctx, `UPDATE webhook_subscriptions SET name = ?, url = ?, events = ?, active = ?, failure_count = ?,
failing_since = ?, updated_at = ? WHERE id = ?`, sub.Name, sub.URL, hook.EncodeEvents(sub.Events), sub.Active, sub.FailureCount,
		nullTime(sub.FailingSince), sub.UpdatedAt.UTC(), sub.ID)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	return nil
}

// UpdateSubscription implements hook.Store.
func (s *Store) UpdateSubscription(ctx context.Context, orgID, id string, change func(*hook.Subscription) error) (hook.Subscription, error) {
	var out hook.Subscription
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		sub, err := getSub(ctx, tx, orgID, id, true)
		if err != nil {
			return err
		}
		if err := change(&sub); err != nil {
			return err
		}
		sub.ID, sub.OrganizationID = id, orgID
		if err := saveSub(ctx, tx, sub); err != nil {
			return err
		}
		out = sub
		return nil
	})
	return out, err
}

// DeleteSubscription implements hook.Store.
func (s *Store) DeleteSubscription(ctx context.Context, orgID, id string) (hook.Subscription, error) {
	var out hook.Subscription
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		sub, err := getSub(ctx, tx, orgID, id, true)
		if err != nil {
			return err
		}
		// Explicit, so the result does not depend on foreign-key enforcement.
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE subscription_id = ?`, id); err != nil {
			return fmt.Errorf("delete deliveries: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_subscriptions WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete subscription: %w", err)
		}
		out = sub
		return nil
	})
	return out, err
}

// Enqueue implements hook.Store.
func (s *Store) Enqueue(ctx context.Context, evs []events.Envelope, now time.Time, skip func(hook.Subscription, events.Envelope) bool) (int, error) {
	byOrg := map[string][]events.Envelope{}
	var orgs []any
	for _, e := range evs {
		if e.OrgID == "" {
			continue // not an organisation's event: nobody subscribes to it
		}
		if _, ok := byOrg[e.OrgID]; !ok {
			orgs = append(orgs, e.OrgID)
		}
		byOrg[e.OrgID] = append(byOrg[e.OrgID], e)
	}
	if len(orgs) == 0 {
		return 0, nil
	}
	now = now.UTC()
	created := 0
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		created = 0
		rows, err := tx.QueryContext(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions WHERE active = ? AND organization_id IN (`+
			placeholders(len(orgs))+`)`, append([]any{true}, orgs...)...)
		if err != nil {
			return fmt.Errorf("load subscriptions: %w", err)
		}
		var subs []hook.Subscription
		for rows.Next() {
			sub, err := scanSub(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("load subscriptions: %w", err)
			}
			subs = append(subs, sub)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("load subscriptions: %w", err)
		}
		for _, sub := range subs {
			for _, e := range byOrg[sub.OrganizationID] {
				if !sub.Matches(e.Type) || (skip != nil && skip(sub, e)) {
					continue
				}
				payload, err := e.Encode()
				if err != nil {
					return err
				}
				res, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, subscription_id, organization_id, event_id, event_type,
payload, status, attempts, last_error, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?)
ON CONFLICT (subscription_id, event_id) DO NOTHING`,
					hook.DeliveryIDPrefix+uuid.NewString(), sub.ID, sub.OrganizationID, e.ID, string(e.Type), payload, hook.StatusPending, now, now)
				if err != nil {
					return fmt.Errorf("insert delivery: %w", err)
				}
				if n, _ := res.RowsAffected(); n > 0 {
					created++
				}
			}
		}
		return nil
	})
	return created, err
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const deliveryColumns = `d.id, d.subscription_id, d.organization_id, d.event_id, d.event_type, d.payload, d.status, d.attempts,
d.last_status_code, d.last_error, d.next_attempt_at, d.created_at, d.delivered_at`

func scanDelivery(r scanner, extra ...any) (hook.Delivery, error) {
	var d hook.Delivery
	var code sql.NullInt64
	var next, delivered sql.NullTime
	dest := append([]any{&d.ID, &d.SubscriptionID, &d.OrganizationID, &d.EventID, &d.EventType, &d.Payload, &d.Status,
		&d.Attempts, &code, &d.LastError, &next, &d.CreatedAt, &delivered}, extra...)
	if err := r.Scan(dest...); err != nil {
		return hook.Delivery{}, err
	}
	if code.Valid {
		c := int(code.Int64)
		d.LastStatusCode = &c
	}
	if next.Valid {
		t := next.Time.UTC()
		d.NextAttemptAt = &t
	}
	if delivered.Valid {
		t := delivered.Time.UTC()
		d.DeliveredAt = &t
	}
	d.CreatedAt = d.CreatedAt.UTC()
	return d, nil
}

// Claim implements hook.Store. Deliveries are ranked per subscription so
// that one endpoint with a long backlog cannot fill the batch; the
// subscriptions' rows are locked on PostgreSQL (SKIP LOCKED: an endpoint
// another replica is claiming for is skipped this round) so the in-flight
// count per endpoint cannot be raced past the cap.
func (s *Store) Claim(ctx context.Context, now, leaseUntil time.Time, limit, maxPerEndpoint int) ([]hook.Claimed, error) {
	now, leaseUntil = now.UTC(), leaseUntil.UTC()
	pg := s.db.Driver() == sqlstore.Postgres
	var out []hook.Claimed
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		out = nil
		q := `SELECT ` + deliveryColumns + `, s.url, s.secret_path FROM webhook_deliveries d
JOIN webhook_subscriptions s ON s.id = d.subscription_id
WHERE d.id IN (
  SELECT r.id FROM (
    SELECT x.id, ROW_NUMBER() OVER (PARTITION BY x.subscription_id ORDER BY x.next_attempt_at, x.id) AS rn
    FROM webhook_deliveries x
    WHERE x.status IN ('pending', 'failed') AND x.next_attempt_at <= ? AND (x.lease_until IS NULL OR x.lease_until < ?)
  ) r WHERE r.rn <= ?
) AND s.active = ?
ORDER BY d.next_attempt_at, d.id LIMIT ?`
		if pg {
			q += ` FOR UPDATE OF d SKIP LOCKED`
		}
		rows, err := tx.QueryContext(ctx, q, now, now, maxPerEndpoint, true, limit*2)
		if err != nil {
			return fmt.Errorf("select due deliveries: %w", err)
		}
		var cands []hook.Claimed
		for rows.Next() {
			var c hook.Claimed
			d, err := scanDelivery(rows, &c.URL, &c.SecretPath)
			if err != nil {
				rows.Close()
				return fmt.Errorf("scan delivery: %w", err)
			}
			c.Delivery = d
			cands = append(cands, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("select due deliveries: %w", err)
		}
		if len(cands) == 0 {
			return nil
		}
		var subIDs []any
		seen := map[string]bool{}
		for _, c := range cands {
			if !seen[c.SubscriptionID] {
				seen[c.SubscriptionID] = true
				subIDs = append(subIDs, c.SubscriptionID)
			}
		}
		free := map[string]int{}
		if pg {
			rows, err := tx.QueryContext(ctx, `SELECT id FROM webhook_subscriptions WHERE id IN (`+placeholders(len(subIDs))+`)
ORDER BY id FOR UPDATE SKIP LOCKED`, subIDs...)
			if err != nil {
				return fmt.Errorf("lock subscriptions: %w", err)
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				free[id] = maxPerEndpoint
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("lock subscriptions: %w", err)
			}
		} else {
			for _, id := range subIDs {
				free[id.(string)] = maxPerEndpoint
			}
		}
		rows, err = tx.QueryContext(ctx, `SELECT subscription_id, count(*) FROM webhook_deliveries
WHERE lease_until IS NOT NULL AND lease_until >= ? AND subscription_id IN (`+placeholders(len(subIDs))+`) GROUP BY subscription_id`,
			append([]any{now}, subIDs...)...)
		if err != nil {
			return fmt.Errorf("count in-flight deliveries: %w", err)
		}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return err
			}
			if _, ok := free[id]; ok {
				free[id] -= n
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("count in-flight deliveries: %w", err)
		}
		for _, c := range cands {
			if len(out) == limit {
				break
			}
			if free[c.SubscriptionID] <= 0 {
				continue
			}
			free[c.SubscriptionID]--
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?`, leaseUntil, c.ID); err != nil {
				return fmt.Errorf("lease delivery: %w", err)
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Complete implements hook.Store.
func (s *Store) Complete(ctx context.Context, deliveryID string, o hook.Outcome) error {
	at := o.At.UTC()
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		var subID, orgID string
		err := tx.QueryRowContext(ctx, `SELECT subscription_id, organization_id FROM webhook_deliveries WHERE id = ?`, deliveryID).Scan(&subID, &orgID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // the subscription was deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("load delivery: %w", err)
		}
		var code any
		if o.StatusCode != nil {
			code = *o.StatusCode
		}
		var delivered any
		if o.Status == hook.StatusDelivered {
			delivered = at
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status_code = ?,
last_error = ?, next_attempt_at = ?, lease_until = NULL, delivered_at = ? WHERE id = ?`,
			o.Status, code, o.Error, nullTime(o.NextAttemptAt), delivered, deliveryID); err != nil {
			return fmt.Errorf("update delivery: %w", err)
		}
		sub, err := getSub(ctx, tx, orgID, subID, true)
		if errors.Is(err, hook.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		evs := o.Events
		if o.Status == hook.StatusDelivered {
			sub.FailureCount, sub.FailingSince = 0, nil
		} else {
			sub.FailureCount++
			if sub.FailingSince == nil {
				sub.FailingSince = &at
			}
			reason := ""
			switch {
			case o.Disable:
				reason = "endpoint answered 410 Gone"
			case o.DisableAfter > 0 && at.Sub(*sub.FailingSince) >= o.DisableAfter:
				reason = "endpoint failing continuously since " + sub.FailingSince.Format(time.RFC3339)
			}
			if reason != "" && sub.Active {
				sub.Active = false
				if o.EndpointDisabled != nil {
					ev, err := o.EndpointDisabled(sub, reason)
					if err != nil {
						return err
					}
					evs = append(evs, ev)
				}
			}
		}
		sub.UpdatedAt = at
		if err := saveSub(ctx, tx, sub); err != nil {
			return err
		}
		return addEvents(ctx, tx, evs)
	})
}

// ListDeliveries implements hook.Store.
func (s *Store) ListDeliveries(ctx context.Context, orgID, subscriptionID string, offset, limit int) ([]hook.Delivery, int64, error) {
	if _, err := getSub(ctx, s.db, orgID, subscriptionID, false); err != nil {
		return nil, 0, err
	}
	var total int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE subscription_id = ?`, subscriptionID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count deliveries: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d WHERE d.subscription_id = ?
ORDER BY d.created_at DESC, d.id DESC LIMIT ? OFFSET ?`, subscriptionID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var out []hook.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, total, rows.Err()
}

// Redeliver implements hook.Store.
func (s *Store) Redeliver(ctx context.Context, orgID, subscriptionID, deliveryID string, now time.Time) (hook.Delivery, error) {
	var out hook.Delivery
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries d WHERE d.id = ? AND d.subscription_id = ? AND d.organization_id = ?`
		if tx.Driver() == sqlstore.Postgres {
			q += ` FOR UPDATE`
		}
		d, err := scanDelivery(tx.QueryRowContext(ctx, q, deliveryID, subscriptionID, orgID))
		if errors.Is(err, sql.ErrNoRows) {
			return hook.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("load delivery: %w", err)
		}
		if d.Status != hook.StatusFailed && d.Status != hook.StatusDeadLetter {
			return hook.ErrNotRedeliverable
		}
		now := now.UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = 0, next_attempt_at = ?
WHERE id = ?`, hook.StatusPending, now, deliveryID); err != nil {
			return fmt.Errorf("redeliver: %w", err)
		}
		d.Status, d.Attempts, d.NextAttemptAt = hook.StatusPending, 0, &now
		out = d
		return nil
	})
	return out, err
}

// CountPending implements hook.Store.
func (s *Store) CountPending(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'failed')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending deliveries: %w", err)
	}
	return n, nil
}
