// Package sqlstore is the webhook service's store on PostgreSQL and SQLite
// (through libs/sqlstore), with the outbox in the same transactions, and a
// local AES-GCM sealed secret store.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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
		// Inactive subscriptions too: their events are recorded as
		// skipped, so every event to a disabled endpoint is accounted for.
		rows, err := tx.QueryContext(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions WHERE organization_id IN (`+
			placeholders(len(orgs))+`)`, orgs...)
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
		var vals []any
		for _, sub := range subs {
			for _, e := range byOrg[sub.OrganizationID] {
				if !sub.Matches(e.Type) || (skip != nil && skip(sub, e)) {
					continue
				}
				payload, err := e.Encode()
				if err != nil {
					return err
				}
				status, lastErr, due := hook.StatusPending, "", any(now)
				if !sub.Active {
					status, lastErr, due = hook.StatusSkippedDisabled, hook.SkippedDisabledError, nil
				}
				vals = append(vals, hook.DeliveryIDPrefix+uuid.NewString(), sub.ID, sub.OrganizationID, e.ID, string(e.Type), payload,
					status, lastErr, due, now)
			}
		}
		// Multi-row inserts: one round trip per enqueueBatch deliveries
		// rather than one per delivery.
		for len(vals) > 0 {
			n := min(len(vals)/enqueueColumns, enqueueBatch)
			chunk := vals[:n*enqueueColumns]
			vals = vals[n*enqueueColumns:]
			rows, err := tx.QueryContext(ctx, `INSERT INTO webhook_deliveries (id, subscription_id, organization_id, event_id, event_type,
payload, status, attempts, last_error, next_attempt_at, created_at) VALUES `+
				strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?),`, n), ",")+`
ON CONFLICT (subscription_id, event_id) DO NOTHING RETURNING status`, chunk...)
			if err != nil {
				return fmt.Errorf("insert deliveries: %w", err)
			}
			for rows.Next() {
				var st string
				if err := rows.Scan(&st); err != nil {
					rows.Close()
					return fmt.Errorf("insert deliveries: %w", err)
				}
				if st == hook.StatusPending {
					created++
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("insert deliveries: %w", err)
			}
		}
		return nil
	})
	return created, err
}

// enqueueColumns are the parameters of one inserted delivery; enqueueBatch
// deliveries per INSERT stays far below both drivers' parameter limits.
const (
	enqueueColumns = 10
	enqueueBatch   = 200
)

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

// claimable selects the deliveries of endpoint s.id a claim at ? (bound
// twice) may take: due and not leased. It is an index range scan of
// webhook_deliveries_sub_due_idx (subscription_id, next_attempt_at, id)
// stopped by the caller's LIMIT, so its cost does not depend on the
// backlog's size.
const claimable = `x.subscription_id = s.id AND x.status IN ('pending', 'failed') AND x.next_attempt_at <= ?
AND (x.lease_until IS NULL OR x.lease_until < ?)`

// inFlight counts the live leases of endpoint s.id at ? (range scan of
// webhook_deliveries_lease_idx, which holds only leased rows).
const inFlight = `(SELECT count(*) FROM webhook_deliveries l WHERE l.subscription_id = s.id AND l.lease_until IS NOT NULL AND l.lease_until >= ?)`

// Claim implements hook.Store in two bounded steps, in one transaction:
//
//  1. Pick up to limit active endpoints that have a claimable delivery and
//     a free slot (fewer than maxPerEndpoint live leases), oldest due work
//     first. On PostgreSQL their rows are locked FOR UPDATE SKIP LOCKED:
//     an endpoint another replica is claiming for is skipped this round,
//     so the in-flight count per endpoint cannot be raced past the cap.
//  2. Take from each up to its free slots of claimable deliveries, oldest
//     first (an index range scan with LIMIT per endpoint, LATERAL on
//     PostgreSQL, where the free slots are recounted after the lock, in a
//     fresh snapshot), keep the limit oldest overall, and lease them.
//
// One endpoint's backlog, however long, yields at most its free slots, so
// a slow endpoint cannot fill the batch; and no step ranks the backlog.
func (s *Store) Claim(ctx context.Context, now, leaseUntil time.Time, limit, maxPerEndpoint int) ([]hook.Claimed, error) {
	if limit <= 0 || maxPerEndpoint <= 0 {
		return nil, nil
	}
	now, leaseUntil = now.UTC(), leaseUntil.UTC()
	pg := s.db.Driver() == sqlstore.Postgres
	var out []hook.Claimed
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		out = nil
		cands, err := claimCandidates(ctx, tx, now, limit, maxPerEndpoint, pg)
		if err != nil || len(cands) == 0 {
			return err
		}
		if pg {
			out, err = leasePostgres(ctx, tx, cands, now, leaseUntil, limit, maxPerEndpoint)
		} else {
			out, err = leaseSQLite(ctx, tx, cands, now, leaseUntil, limit)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b hook.Claimed) int {
		if c := a.NextAttemptAt.Compare(*b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// candidate is an endpoint with claimable deliveries and free slots.
type candidate struct {
	id, url, secretPath string
	free                int
}

func claimCandidates(ctx context.Context, tx *sqlstore.Tx, now time.Time, limit, maxPerEndpoint int, pg bool) ([]candidate, error) {
	q := `SELECT s.id, s.url, s.secret_path, ? - ` + inFlight + ` FROM webhook_subscriptions s
WHERE s.active = ? AND EXISTS (SELECT 1 FROM webhook_deliveries x WHERE ` + claimable + `) AND ` + inFlight + ` < ?
ORDER BY (SELECT x.next_attempt_at FROM webhook_deliveries x WHERE ` + claimable + ` ORDER BY x.next_attempt_at LIMIT 1), s.id
LIMIT ?`
	if pg {
		q += ` FOR UPDATE OF s SKIP LOCKED`
	}
	rows, err := tx.QueryContext(ctx, q, maxPerEndpoint, now, true, now, now, now, maxPerEndpoint, now, now, limit)
	if err != nil {
		return nil, fmt.Errorf("select endpoints with due deliveries: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.id, &c.url, &c.secretPath, &c.free); err != nil {
			return nil, fmt.Errorf("select endpoints with due deliveries: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select endpoints with due deliveries: %w", err)
	}
	return out, nil
}

// leasePostgres takes and leases the deliveries of the locked endpoints in
// one statement. The free slots are recounted here: this statement's
// snapshot is taken after the endpoints were locked, so it sees every
// lease committed by a claim that held them before.
func leasePostgres(ctx context.Context, tx *sqlstore.Tx, cands []candidate, now, leaseUntil time.Time, limit, maxPerEndpoint int) ([]hook.Claimed, error) {
	args := []any{now, now, maxPerEndpoint, now}
	for _, c := range cands {
		args = append(args, c.id)
	}
	args = append(args, limit, leaseUntil, now)
	q := `WITH picked AS (
  SELECT p.id, s.url, s.secret_path FROM webhook_subscriptions s
  CROSS JOIN LATERAL (
    SELECT x.id, x.next_attempt_at FROM webhook_deliveries x WHERE ` + claimable + `
    ORDER BY x.next_attempt_at, x.id
    LIMIT GREATEST(? - ` + inFlight + `, 0)
    FOR UPDATE OF x SKIP LOCKED
  ) p
  WHERE s.id IN (` + placeholders(len(cands)) + `)
  ORDER BY p.next_attempt_at, p.id
  LIMIT ?
)
UPDATE webhook_deliveries d SET lease_until = ? FROM picked
WHERE d.id = picked.id AND d.status IN ('pending', 'failed') AND (d.lease_until IS NULL OR d.lease_until < ?)
RETURNING ` + deliveryColumns + `, picked.url, picked.secret_path`
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("lease deliveries: %w", err)
	}
	defer rows.Close()
	var out []hook.Claimed
	for rows.Next() {
		var c hook.Claimed
		d, err := scanDelivery(rows, &c.URL, &c.SecretPath)
		if err != nil {
			return nil, fmt.Errorf("lease deliveries: %w", err)
		}
		c.Delivery = d
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lease deliveries: %w", err)
	}
	return out, nil
}

// leaseSQLite takes each endpoint's oldest claimable deliveries (one
// LIMITed index range scan each), keeps the limit oldest and leases them
// with one statement. SQLite transactions are IMMEDIATE: claims are
// serialised, so the free slots counted in step 1 are current.
func leaseSQLite(ctx context.Context, tx *sqlstore.Tx, cands []candidate, now, leaseUntil time.Time, limit int) ([]hook.Claimed, error) {
	var out []hook.Claimed
	for _, c := range cands {
		rows, err := tx.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d
WHERE d.subscription_id = ? AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?)
ORDER BY d.next_attempt_at, d.id LIMIT ?`, c.id, now, now, min(c.free, limit))
		if err != nil {
			return nil, fmt.Errorf("select due deliveries: %w", err)
		}
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("select due deliveries: %w", err)
			}
			out = append(out, hook.Claimed{Delivery: d, URL: c.url, SecretPath: c.secretPath})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("select due deliveries: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b hook.Claimed) int {
		if c := a.NextAttemptAt.Compare(*b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil, nil
	}
	args := []any{leaseUntil}
	for _, c := range out {
		args = append(args, c.ID)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET lease_until = ? WHERE id IN (`+placeholders(len(out))+`)`, args...); err != nil {
		return nil, fmt.Errorf("lease deliveries: %w", err)
	}
	return out, nil
}

// Complete implements hook.Store. A delivered attempt on a healthy
// endpoint is one statement on PostgreSQL (the delivery updated, the
// endpoint's failure streak reset only if there is one, so the endpoint's
// row is neither written nor locked); other outcomes read and update the
// endpoint in the same transaction.
func (s *Store) Complete(ctx context.Context, deliveryID string, o hook.Outcome) error {
	at := o.At.UTC()
	var code any
	if o.StatusCode != nil {
		code = *o.StatusCode
	}
	var delivered any
	if o.Status == hook.StatusDelivered {
		delivered = at
	}
	const update = `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status_code = ?,
last_error = ?, next_attempt_at = ?, lease_until = NULL, delivered_at = ? WHERE id = ?`
	args := []any{o.Status, code, o.Error, nullTime(o.NextAttemptAt), delivered, deliveryID}
	const reset = `UPDATE webhook_subscriptions SET failure_count = 0, failing_since = NULL, updated_at = ?
WHERE id = %s AND (failure_count <> 0 OR failing_since IS NOT NULL)`
	if o.Status == hook.StatusDelivered && len(o.Events) == 0 {
		if s.db.Driver() == sqlstore.Postgres {
			_, err := s.db.ExecContext(ctx, `WITH d AS (`+update+` RETURNING subscription_id) `+
				fmt.Sprintf(reset, `(SELECT subscription_id FROM d)`), append(args, at)...)
			if err != nil {
				return fmt.Errorf("complete delivery: %w", err)
			}
			return nil
		}
		return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
			if _, err := tx.ExecContext(ctx, update, args...); err != nil {
				return fmt.Errorf("update delivery: %w", err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(reset, `(SELECT subscription_id FROM webhook_deliveries WHERE id = ?)`), at, deliveryID); err != nil {
				return fmt.Errorf("reset endpoint failures: %w", err)
			}
			return nil
		})
	}
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		var subID, orgID string
		err := tx.QueryRowContext(ctx, update+` RETURNING subscription_id, organization_id`, args...).Scan(&subID, &orgID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // the subscription was deleted meanwhile
		}
		if err != nil {
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
		if !sub.Active && o.Status == hook.StatusFailed {
			// Disabled while this attempt was in flight: no further attempt
			// will be made, so say so rather than leave it "failed".
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_attempt_at = NULL WHERE id = ?`,
				hook.StatusSkippedDisabled, deliveryID); err != nil {
				return fmt.Errorf("skip delivery of a disabled endpoint: %w", err)
			}
		}
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
				// Its backlog, this delivery included when it was to be
				// retried, will never be claimed (Claim wants an active
				// endpoint): record it as not sent. Deliveries leased to
				// other workers are left to their attempt, which records
				// its own outcome.
				if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_attempt_at = NULL, last_error = ?
WHERE subscription_id = ? AND status IN ('pending', 'failed') AND (lease_until IS NULL OR lease_until < ?)`,
					hook.StatusSkippedDisabled, hook.SkippedDisabledError, sub.ID, at); err != nil {
					return fmt.Errorf("skip deliveries of a disabled endpoint: %w", err)
				}
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
		return tx.AddEvents(ctx, evs...)
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
		if d.Status != hook.StatusFailed && d.Status != hook.StatusDeadLetter && d.Status != hook.StatusSkippedDisabled {
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
