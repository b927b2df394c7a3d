// Package sqlstore is the federation service's store on PostgreSQL and
// SQLite (through libs/sqlstore), with the outbox in the same transactions.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/federation/internal/domain"
)

// Store implements domain.Store.
type Store struct {
	db *sqlstore.DB
}

var _ domain.Store = (*Store)(nil)

// New returns a store over db, which must have the federation migrations
// and the outbox table.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

const columns = `id, name, issuer, jwks_uri, audience, allowed_organizations, claim_mapping, status, expires_at, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanPartner(r scanner) (domain.Partner, error) {
	var p domain.Partner
	var orgs, mapping string
	var expires sql.NullTime
	if err := r.Scan(&p.ID, &p.Name, &p.Issuer, &p.JWKSURI, &p.Audience, &orgs, &mapping, &p.Status, &expires, &p.CreatedAt, &p.UpdatedAt); err != nil {
		return domain.Partner{}, err
	}
	if err := json.Unmarshal([]byte(orgs), &p.AllowedOrganizations); err != nil {
		return domain.Partner{}, fmt.Errorf("partner %s organisations: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(mapping), &p.ClaimMapping); err != nil {
		return domain.Partner{}, fmt.Errorf("partner %s claim mapping: %w", p.ID, err)
	}
	if p.AllowedOrganizations == nil {
		p.AllowedOrganizations = []string{}
	}
	if p.ClaimMapping.AgentMap == nil {
		p.ClaimMapping.AgentMap = map[string]string{}
	}
	if expires.Valid {
		t := expires.Time.UTC()
		p.ExpiresAt = &t
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

func encode(p domain.Partner) (orgs, mapping string, expires any, err error) {
	if p.AllowedOrganizations == nil {
		p.AllowedOrganizations = []string{}
	}
	o, err := json.Marshal(p.AllowedOrganizations)
	if err != nil {
		return "", "", nil, err
	}
	if p.ClaimMapping.AgentMap == nil {
		p.ClaimMapping.AgentMap = map[string]string{}
	}
	m, err := json.Marshal(p.ClaimMapping)
	if err != nil {
		return "", "", nil, err
	}
	if p.ExpiresAt != nil {
		expires = p.ExpiresAt.UTC()
	}
	return string(o), string(m), expires, nil
}

// Create implements domain.Store.
func (s *Store) Create(ctx context.Context, p domain.Partner, evs []events.Envelope) error {
	orgs, mapping, expires, err := encode(p)
	if err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO federation_partners (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Issuer, p.JWKSURI, p.Audience, orgs, mapping, p.Status, expires, p.CreatedAt.UTC(), p.UpdatedAt.UTC())
		if sqlstore.IsUniqueViolation(err) {
			return domain.ErrIssuerTaken
		}
		if err != nil {
			return fmt.Errorf("insert partner: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

func get(ctx context.Context, q sqlstore.Querier, where string, arg any, lock bool) (domain.Partner, error) {
	query := `SELECT ` + columns + ` FROM federation_partners WHERE ` + where + ` = ?`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	p, err := scanPartner(q.QueryRowContext(ctx, query, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Partner{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Partner{}, fmt.Errorf("get partner: %w", err)
	}
	return p, nil
}

// Get implements domain.Store.
func (s *Store) Get(ctx context.Context, id string) (domain.Partner, error) {
	return get(ctx, s.db, "id", id, false)
}

// GetByIssuer implements domain.Store.
func (s *Store) GetByIssuer(ctx context.Context, issuer string) (domain.Partner, error) {
	return get(ctx, s.db, "issuer", issuer, false)
}

// List implements domain.Store.
func (s *Store) List(ctx context.Context, offset, limit int) ([]domain.Partner, int64, error) {
	var total int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_partners`).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count partners: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM federation_partners ORDER BY created_at, id LIMIT ? OFFSET ?`, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list partners: %w", err)
	}
	defer rows.Close()
	out := []domain.Partner{}
	for rows.Next() {
		p, err := scanPartner(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, total, rows.Err()
}

// Update implements domain.Store.
func (s *Store) Update(ctx context.Context, id string, change func(p *domain.Partner) ([]events.Envelope, error)) (domain.Partner, error) {
	var out domain.Partner
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		p, err := get(ctx, tx, "id", id, true)
		if err != nil {
			return err
		}
		evs, err := change(&p)
		if err != nil {
			return err
		}
		orgs, mapping, expires, err := encode(p)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE federation_partners SET name = ?, jwks_uri = ?, audience = ?, allowed_organizations = ?,
			claim_mapping = ?, status = ?, expires_at = ?, updated_at = ? WHERE id = ?`,
			p.Name, p.JWKSURI, p.Audience, orgs, mapping, p.Status, expires, p.UpdatedAt.UTC(), id); err != nil {
			return fmt.Errorf("update partner: %w", err)
		}
		out, err = get(ctx, tx, "id", id, false)
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, evs...)
	})
	return out, err
}

// Delete implements domain.Store.
func (s *Store) Delete(ctx context.Context, id string, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM federation_partners WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("delete partner: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return domain.ErrNotFound
		}
		return tx.AddEvents(ctx, evs...)
	})
}

// ApplyAgent implements domain.Store.
func (s *Store) ApplyAgent(ctx context.Context, a domain.AgentRef) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		cur, err := s.getAgent(ctx, tx, a.AgentID, true)
		switch {
		case errors.Is(err, domain.ErrNotFound):
			_, err = tx.ExecContext(ctx, `INSERT INTO agents (agent_id, org_id, status, updated_at) VALUES (?, ?, ?, ?)`,
				a.AgentID, a.OrgID, a.Status, a.UpdatedAt.UTC())
			return err
		case err != nil:
			return err
		case a.UpdatedAt.Before(cur.UpdatedAt):
			return nil
		}
		status := a.Status
		if cur.Status == "decommissioned" {
			status = cur.Status
		}
		_, err = tx.ExecContext(ctx, `UPDATE agents SET org_id = ?, status = ?, updated_at = ? WHERE agent_id = ?`,
			a.OrgID, status, a.UpdatedAt.UTC(), a.AgentID)
		return err
	})
}

func (s *Store) getAgent(ctx context.Context, q sqlstore.Querier, id string, lock bool) (domain.AgentRef, error) {
	query := `SELECT agent_id, org_id, status, updated_at FROM agents WHERE agent_id = ?`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	var a domain.AgentRef
	err := q.QueryRowContext(ctx, query, id).Scan(&a.AgentID, &a.OrgID, &a.Status, &a.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.AgentRef{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.AgentRef{}, fmt.Errorf("get agent: %w", err)
	}
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a, nil
}

// GetAgent implements domain.Store.
func (s *Store) GetAgent(ctx context.Context, id string) (domain.AgentRef, error) {
	return s.getAgent(ctx, s.db, id, false)
}
