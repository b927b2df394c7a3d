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

const clientKeyCols = "agent_id, kid, alg, jwk, jwks_uri, status, created_at, revoked_at"

func scanClientKey(r scanner) (domain.ClientKey, error) {
	var k domain.ClientKey
	var jwk string
	var uri sql.NullString
	var rev sql.NullTime
	if err := r.Scan(&k.AgentID, &k.KeyID, &k.Alg, &jwk, &uri, &k.Status, &k.CreatedAt, &rev); err != nil {
		return k, err
	}
	if err := json.Unmarshal([]byte(jwk), &k.JWK); err != nil {
		return k, fmt.Errorf("decode client key %s: %w", k.KeyID, err)
	}
	if uri.Valid {
		u := uri.String
		k.JWKSURI = &u
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if rev.Valid {
		t := rev.Time.UTC()
		k.RevokedAt = &t
	}
	return k, nil
}

func queryClientKeys(ctx context.Context, q lib.Querier, query string, args ...any) ([]domain.ClientKey, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query client keys: %w", err)
	}
	defer rows.Close()
	out := []domain.ClientKey{}
	for rows.Next() {
		k, err := scanClientKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// CreateClientKeys implements domain.Store.
func (s *Store) CreateClientKeys(ctx context.Context, orgID, agentID string, keys []domain.ClientKey, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *lib.Tx) error {
		// Locking the agent row serialises concurrent registrations, so the
		// active-key limit holds.
		a, err := scanAgent(tx.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?"+forUpdate(tx), orgID, agentID))
		if err != nil {
			return err
		}
		if a.Status == domain.StatusDecommissioned {
			return domain.ErrDecommissioned
		}
		var active int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM client_keys WHERE agent_id = ? AND status = ?", agentID, domain.ClientKeyActive).Scan(&active); err != nil {
			return fmt.Errorf("count client keys: %w", err)
		}
		if active+len(keys) > domain.MaxClientKeys {
			return domain.ErrKeyLimit
		}
		for _, k := range keys {
			var exists int
			err := tx.QueryRowContext(ctx, "SELECT 1 FROM client_keys WHERE agent_id = ? AND kid = ?", agentID, k.KeyID).Scan(&exists)
			if err == nil {
				return domain.ErrConflict
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("check client key: %w", err)
			}
			jwk, err := json.Marshal(k.JWK)
			if err != nil {
				return err
			}
			var uri any
			if k.JWKSURI != nil {
				uri = *k.JWKSURI
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO client_keys (agent_id, kid, organization_id, alg, jwk, jwks_uri, status, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
				agentID, k.KeyID, orgID, k.Alg, string(jwk), uri, k.Status, k.CreatedAt.UTC(), nullTime(k.RevokedAt)); err != nil {
				if lib.IsUniqueViolation(err) {
					return domain.ErrConflict
				}
				return fmt.Errorf("insert client key: %w", err)
			}
		}
		return tx.AddEvents(ctx, evs...)
	})
}

// ListClientKeys implements domain.Store.
func (s *Store) ListClientKeys(ctx context.Context, orgID, agentID string) ([]domain.ClientKey, error) {
	if _, err := s.GetAgent(ctx, orgID, agentID); err != nil {
		return nil, err
	}
	return queryClientKeys(ctx, s.db, "SELECT "+clientKeyCols+" FROM client_keys WHERE agent_id = ? AND organization_id = ? ORDER BY created_at, kid", agentID, orgID)
}

// RevokeClientKey implements domain.Store.
func (s *Store) RevokeClientKey(ctx context.Context, orgID, agentID, kid string, at time.Time, evs []events.Envelope) (bool, error) {
	changed := false
	err := s.db.InTx(ctx, func(tx *lib.Tx) error {
		if _, err := scanAgent(tx.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?"+forUpdate(tx), orgID, agentID)); err != nil {
			return err
		}
		var status string
		err := tx.QueryRowContext(ctx, "SELECT status FROM client_keys WHERE agent_id = ? AND organization_id = ? AND kid = ?", agentID, orgID, kid).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return domain.ErrClientKeyNotFound
		}
		if err != nil {
			return fmt.Errorf("load client key: %w", err)
		}
		if status != domain.ClientKeyActive {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE client_keys SET status = ?, revoked_at = ? WHERE agent_id = ? AND kid = ?",
			domain.ClientKeyRevoked, at.UTC(), agentID, kid); err != nil {
			return fmt.Errorf("revoke client key: %w", err)
		}
		changed = true
		return tx.AddEvents(ctx, evs...)
	})
	return changed, err
}

// ActiveClientKeys implements domain.Store.
func (s *Store) ActiveClientKeys(ctx context.Context, agentID string) ([]domain.ClientKey, error) {
	return queryClientKeys(ctx, s.db, "SELECT "+clientKeyCols+" FROM client_keys WHERE agent_id = ? AND status = ? ORDER BY created_at, kid", agentID, domain.ClientKeyActive)
}
