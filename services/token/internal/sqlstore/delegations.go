package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

const delegationCols = `chain_id, organization_id, delegator_id, delegatee_id, scopes, parent_chain_id, depth, expires_at, revoked_at, created_at`

func scanDelegation(r scanner) (domain.Delegation, error) {
	var d domain.Delegation
	var scopes string
	var parent sql.NullString
	var revoked sql.NullTime
	if err := r.Scan(&d.ChainID, &d.OrganizationID, &d.DelegatorAgentID, &d.DelegateeAgentID, &scopes, &parent, &d.Depth,
		&d.ExpiresAt, &revoked, &d.CreatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, domain.ErrNotFound
		}
		return d, err
	}
	if err := json.Unmarshal([]byte(scopes), &d.Scopes); err != nil {
		return d, fmt.Errorf("decode delegation %s: %w", d.ChainID, err)
	}
	if parent.Valid {
		d.ParentChainID = &parent.String
	}
	if revoked.Valid {
		t := revoked.Time.UTC()
		d.RevokedAt = &t
	}
	d.ExpiresAt, d.CreatedAt = d.ExpiresAt.UTC(), d.CreatedAt.UTC()
	return d, nil
}

// CreateDelegation implements domain.Store.
func (s *Store) CreateDelegation(ctx context.Context, d domain.Delegation, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *lib.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO delegation_chains (`+delegationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ChainID, d.OrganizationID, d.DelegatorAgentID, d.DelegateeAgentID, list(d.Scopes), d.ParentChainID, d.Depth,
			d.ExpiresAt.UTC(), nullTime(d.RevokedAt), d.CreatedAt.UTC()); err != nil {
			return fmt.Errorf("insert delegation: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

// GetDelegation implements domain.Store.
func (s *Store) GetDelegation(ctx context.Context, orgID, chainID string) (domain.Delegation, error) {
	return scanDelegation(s.db.QueryRowContext(ctx, "SELECT "+delegationCols+" FROM delegation_chains WHERE organization_id = ? AND chain_id = ?", orgID, chainID))
}

// RevokeDelegation implements domain.Store.
func (s *Store) RevokeDelegation(ctx context.Context, orgID, chainID string, at time.Time, revs []domain.Revocation, evs []events.Envelope) (bool, error) {
	changed := false
	err := s.db.InTx(ctx, func(tx *lib.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE delegation_chains SET revoked_at = ? WHERE organization_id = ? AND chain_id = ? AND revoked_at IS NULL",
			at.UTC(), orgID, chainID)
		if err != nil {
			return fmt.Errorf("revoke delegation: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, "SELECT 1 FROM delegation_chains WHERE organization_id = ? AND chain_id = ?", orgID, chainID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return domain.ErrNotFound
			}
			return err
		}
		changed = true
		if err := addRevocations(ctx, tx, revs); err != nil {
			return err
		}
		return tx.AddEvents(ctx, evs...)
	})
	return changed, err
}

// ListDelegations implements domain.Store.
func (s *Store) ListDelegations(ctx context.Context, orgID, agentID string, asDelegatee bool, offset, limit int) ([]domain.Delegation, int64, error) {
	col := "delegator_id"
	if asDelegatee {
		col = "delegatee_id"
	}
	var total int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM delegation_chains WHERE organization_id = ? AND "+col+" = ?", orgID, agentID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count delegations: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+delegationCols+" FROM delegation_chains WHERE organization_id = ? AND "+col+
		" = ? ORDER BY created_at, chain_id LIMIT ? OFFSET ?", orgID, agentID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list delegations: %w", err)
	}
	defer rows.Close()
	var out []domain.Delegation
	for rows.Next() {
		d, err := scanDelegation(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list delegations: %w", err)
		}
		out = append(out, d)
	}
	return out, total, rows.Err()
}
