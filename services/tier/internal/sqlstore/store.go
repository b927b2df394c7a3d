// Package sqlstore is the tier service's organisation store on PostgreSQL
// and SQLite (through libs/sqlstore), with the outbox in the same
// transactions.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/tier/internal/org"
)

// Store implements org.Store.
type Store struct {
	db *sqlstore.DB
}

var _ org.Store = (*Store)(nil)

// New returns a store over db, which must have the tier migrations and the
// outbox table.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

const columns = `organization_id, name, slug, plan_tier, max_agents, max_tokens_per_month, status, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanOrg(r scanner) (org.Organization, error) {
	var o org.Organization
	var maxAgents, maxTokens sql.NullInt64
	if err := r.Scan(&o.ID, &o.Name, &o.Slug, &o.PlanTier, &maxAgents, &maxTokens, &o.Status, &o.CreatedAt, &o.UpdatedAt); err != nil {
		return org.Organization{}, err
	}
	if maxAgents.Valid {
		o.MaxAgents = &maxAgents.Int64
	}
	if maxTokens.Valid {
		o.MaxTokensPerMonth = &maxTokens.Int64
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

func nullable(v *int64) any {
	if v == nil {
		return nil
	}
	return *v
}

// Create implements org.Store.
func (s *Store) Create(ctx context.Context, o org.Organization, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO organizations (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			o.ID, o.Name, o.Slug, o.PlanTier, nullable(o.MaxAgents), nullable(o.MaxTokensPerMonth), o.Status, o.CreatedAt.UTC(), o.UpdatedAt.UTC())
		if sqlstore.IsUniqueViolation(err) {
			return org.ErrSlugTaken
		}
		if err != nil {
			return fmt.Errorf("insert organization: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

func getOne(ctx context.Context, q sqlstore.Querier, where string, arg any, lock bool) (org.Organization, error) {
	query := `SELECT ` + columns + ` FROM organizations WHERE ` + where + ` = ?`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	o, err := scanOrg(q.QueryRowContext(ctx, query, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return org.Organization{}, org.ErrNotFound
	}
	if err != nil {
		return org.Organization{}, fmt.Errorf("load organization: %w", err)
	}
	return o, nil
}

// Get implements org.Store.
func (s *Store) Get(ctx context.Context, id string) (org.Organization, error) {
	return getOne(ctx, s.db, "organization_id", id, false)
}

// GetBySlug implements org.Store.
func (s *Store) GetBySlug(ctx context.Context, slug string) (org.Organization, error) {
	return getOne(ctx, s.db, "slug", slug, false)
}

// List implements org.Store.
func (s *Store) List(ctx context.Context, offset, limit int) ([]org.Organization, int64, error) {
	var total int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM organizations WHERE status <> ?`, org.StatusDeleted).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count organizations: %w", err)
	}
	list, err := s.query(ctx, `SELECT `+columns+` FROM organizations WHERE status <> ? ORDER BY created_at, organization_id LIMIT ? OFFSET ?`,
		org.StatusDeleted, limit, offset)
	return list, total, err
}

// All implements org.Store.
func (s *Store) All(ctx context.Context) ([]org.Organization, error) {
	return s.query(ctx, `SELECT `+columns+` FROM organizations ORDER BY created_at, organization_id`)
}

func (s *Store) query(ctx context.Context, query string, args ...any) ([]org.Organization, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query organizations: %w", err)
	}
	defer rows.Close()
	list := []org.Organization{}
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, fmt.Errorf("scan organization: %w", err)
		}
		list = append(list, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query organizations: %w", err)
	}
	return list, nil
}

// Update implements org.Store.
func (s *Store) Update(ctx context.Context, id string, change func(o *org.Organization) ([]events.Envelope, error)) (org.Organization, error) {
	var out org.Organization
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		o, err := getOne(ctx, tx, "organization_id", id, true)
		if err != nil {
			return err
		}
		evs, err := change(&o)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE organizations SET name = ?, plan_tier = ?, max_agents = ?, max_tokens_per_month = ?, status = ?, updated_at = ? WHERE organization_id = ?`,
			o.Name, o.PlanTier, nullable(o.MaxAgents), nullable(o.MaxTokensPerMonth), o.Status, o.UpdatedAt.UTC(), id); err != nil {
			return fmt.Errorf("update organization: %w", err)
		}
		if err := tx.AddEvents(ctx, evs...); err != nil {
			return err
		}
		out = o
		return nil
	})
	if err != nil {
		return org.Organization{}, err
	}
	out.ID = id
	return out, nil
}

// AddMember implements org.Store.
func (s *Store) AddMember(ctx context.Context, m org.Member, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		o, err := getOne(ctx, tx, "organization_id", m.OrganizationID, true)
		if err != nil {
			return err
		}
		if o.Status == org.StatusDeleted {
			return org.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO organization_members (organization_id, agent_id, role, created_at) VALUES (?, ?, ?, ?)`,
			m.OrganizationID, m.AgentID, m.Role, m.CreatedAt.UTC())
		if sqlstore.IsUniqueViolation(err) {
			return org.ErrAlreadyMember
		}
		if err != nil {
			return fmt.Errorf("insert member: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

var _ org.BillingStore = (*Store)(nil)

// SchedulePending implements org.BillingStore.
func (s *Store) SchedulePending(ctx context.Context, p org.PendingChange) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO pending_tier_changes (organization_id, tier, apply_at) VALUES (?, ?, ?)
		ON CONFLICT (organization_id) DO UPDATE SET tier = excluded.tier, apply_at = excluded.apply_at
		WHERE pending_tier_changes.tier <> excluded.tier`, p.OrganizationID, p.Tier, p.ApplyAt.UTC())
	if err != nil {
		return fmt.Errorf("schedule tier change: %w", err)
	}
	return nil
}

// CancelPending implements org.BillingStore.
func (s *Store) CancelPending(ctx context.Context, orgID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM pending_tier_changes WHERE organization_id = ?`, orgID); err != nil {
		return fmt.Errorf("cancel tier change: %w", err)
	}
	return nil
}

// DuePending implements org.BillingStore.
func (s *Store) DuePending(ctx context.Context, now time.Time) ([]org.PendingChange, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT organization_id, tier, apply_at FROM pending_tier_changes WHERE apply_at <= ? ORDER BY apply_at, organization_id`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("query pending tier changes: %w", err)
	}
	defer rows.Close()
	var out []org.PendingChange
	for rows.Next() {
		var p org.PendingChange
		if err := rows.Scan(&p.OrganizationID, &p.Tier, &p.ApplyAt); err != nil {
			return nil, fmt.Errorf("scan pending tier change: %w", err)
		}
		p.ApplyAt = p.ApplyAt.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeletePending implements org.BillingStore.
func (s *Store) DeletePending(ctx context.Context, p org.PendingChange) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM pending_tier_changes WHERE organization_id = ? AND tier = ? AND apply_at = ?`,
		p.OrganizationID, p.Tier, p.ApplyAt.UTC()); err != nil {
		return fmt.Errorf("delete pending tier change: %w", err)
	}
	return nil
}

// LastBillingPlan implements org.BillingStore.
func (s *Store) LastBillingPlan(ctx context.Context, orgID string) (time.Time, error) {
	var at time.Time
	err := s.db.QueryRowContext(ctx, `SELECT effective_at FROM billing_plan_state WHERE organization_id = ?`, orgID).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("load billing plan state: %w", err)
	}
	return at.UTC(), nil
}

// RecordBillingPlan implements org.BillingStore.
func (s *Store) RecordBillingPlan(ctx context.Context, orgID string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO billing_plan_state (organization_id, effective_at) VALUES (?, ?)
		ON CONFLICT (organization_id) DO UPDATE SET effective_at = excluded.effective_at
		WHERE billing_plan_state.effective_at < excluded.effective_at`, orgID, at.UTC())
	if err != nil {
		return fmt.Errorf("record billing plan state: %w", err)
	}
	return nil
}
