// Package sqlstore is the did service's store on PostgreSQL and SQLite
// (through libs/sqlstore), with the outbox in the same transactions.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/did/internal/domain"
)

// Store implements domain.Store.
type Store struct {
	db *sqlstore.DB
}

var _ domain.Store = (*Store)(nil)

// New returns a store over db, which must have the did migrations and the
// outbox table.
func New(db *sqlstore.DB) *Store { return &Store{db: db} }

const agentColumns = `agent_id, org_id, email, agent_type, status, capabilities, owner, version, deployment_env, scopes, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanAgent(r scanner) (domain.Agent, error) {
	var a domain.Agent
	var caps string
	var scopes sql.NullString
	if err := r.Scan(&a.AgentID, &a.OrgID, &a.Email, &a.AgentType, &a.Status, &caps, &a.Owner, &a.Version, &a.DeploymentEnv, &scopes, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return domain.Agent{}, err
	}
	if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
		return domain.Agent{}, fmt.Errorf("agent %s capabilities: %w", a.AgentID, err)
	}
	if a.Capabilities == nil {
		a.Capabilities = []string{}
	}
	// NULL stays nil: scopes not known (domain.Agent.Scopes).
	if scopes.Valid {
		if err := json.Unmarshal([]byte(scopes.String), &a.Scopes); err != nil {
			return domain.Agent{}, fmt.Errorf("agent %s scopes: %w", a.AgentID, err)
		}
		if a.Scopes == nil {
			a.Scopes = []string{}
		}
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

func getAgent(ctx context.Context, q sqlstore.Querier, id string, lock bool) (domain.Agent, error) {
	query := `SELECT ` + agentColumns + ` FROM agents WHERE agent_id = ?`
	if lock && q.Driver() == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	a, err := scanAgent(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Agent{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Agent{}, fmt.Errorf("get agent: %w", err)
	}
	return a, nil
}

// ApplyAgent implements domain.Store.
func (s *Store) ApplyAgent(ctx context.Context, a domain.Agent) (domain.Agent, error) {
	caps, err := json.Marshal(a.Capabilities)
	if err != nil {
		return domain.Agent{}, err
	}
	if a.Capabilities == nil {
		caps = []byte("[]")
	}
	at := a.UpdatedAt.UTC()
	var out domain.Agent
	scopesArg := func(scopes []string) (any, error) {
		if scopes == nil {
			return nil, nil // unknown: NULL
		}
		b, err := json.Marshal(scopes)
		return string(b), err
	}
	err = s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		cur, err := getAgent(ctx, tx, a.AgentID, true)
		switch {
		case errors.Is(err, domain.ErrNotFound):
			sc, err := scopesArg(a.Scopes)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				a.AgentID, a.OrgID, a.Email, a.AgentType, a.Status, string(caps), a.Owner, a.Version, a.DeploymentEnv, sc, at, at)
			if err != nil {
				return fmt.Errorf("insert agent: %w", err)
			}
		case err != nil:
			return err
		case at.Before(cur.UpdatedAt):
			// An older event (redelivery, reordering) changes nothing.
		default:
			status := a.Status
			if cur.Status == domain.StatusDecommissioned {
				status = domain.StatusDecommissioned
			}
			// An event without scopes says nothing about them: the
			// known ones stay.
			scopes := a.Scopes
			if scopes == nil {
				scopes = cur.Scopes
			}
			sc, err := scopesArg(scopes)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `UPDATE agents SET org_id = ?, email = ?, agent_type = ?, status = ?, capabilities = ?,
				owner = ?, version = ?, deployment_env = ?, scopes = ?, updated_at = ? WHERE agent_id = ?`,
				a.OrgID, a.Email, a.AgentType, status, string(caps), a.Owner, a.Version, a.DeploymentEnv, sc, at, a.AgentID)
			if err != nil {
				return fmt.Errorf("update agent: %w", err)
			}
		}
		out, err = getAgent(ctx, tx, a.AgentID, false)
		return err
	})
	return out, err
}

// GetAgent implements domain.Store.
func (s *Store) GetAgent(ctx context.Context, id string) (domain.Agent, error) {
	return getAgent(ctx, s.db, id, false)
}

func insertKey(ctx context.Context, tx *sqlstore.Tx, k domain.Key) error {
	jwk, err := json.Marshal(k.PublicJWK)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO agent_did_keys (agent_id, kid, public_jwk, key_ref, status, created_at, retired_at)
		VALUES (?, ?, ?, ?, ?, ?, NULL)`, k.Subject, k.KID, string(jwk), k.KeyRef, domain.KeyActive, k.CreatedAt.UTC())
	return err
}

// CreateFirstKey implements domain.Store.
func (s *Store) CreateFirstKey(ctx context.Context, k domain.Key, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM agent_did_keys WHERE agent_id = ?`, k.Subject).Scan(&n); err != nil {
			return fmt.Errorf("count keys: %w", err)
		}
		if n > 0 {
			return domain.ErrKeyExists
		}
		err := insertKey(ctx, tx, k)
		if sqlstore.IsUniqueViolation(err) {
			return domain.ErrKeyExists
		}
		if err != nil {
			return fmt.Errorf("insert key: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

func scanKeys(rows *sql.Rows) ([]domain.Key, error) {
	defer rows.Close()
	out := []domain.Key{}
	for rows.Next() {
		var k domain.Key
		var jwk string
		var retired sql.NullTime
		if err := rows.Scan(&k.Subject, &k.KID, &jwk, &k.KeyRef, &k.Status, &k.CreatedAt, &retired); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(jwk), &k.PublicJWK); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.KID, err)
		}
		k.CreatedAt = k.CreatedAt.UTC()
		if retired.Valid {
			t := retired.Time.UTC()
			k.RetiredAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

const keyQuery = `SELECT agent_id, kid, public_jwk, key_ref, status, created_at, retired_at FROM agent_did_keys WHERE agent_id = ?`

// Keys implements domain.Store.
func (s *Store) Keys(ctx context.Context, subject string) ([]domain.Key, error) {
	rows, err := s.db.QueryContext(ctx, keyQuery+` ORDER BY created_at, kid`, subject)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return scanKeys(rows)
}

// RotateKey implements domain.Store.
func (s *Store) RotateKey(ctx context.Context, k domain.Key, mkEvents func(retired domain.Key) ([]events.Envelope, error)) (domain.Key, error) {
	var old domain.Key
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		q := keyQuery + ` AND status = 'active'`
		if tx.Driver() == sqlstore.Postgres {
			q += ` FOR UPDATE`
		}
		rows, err := tx.QueryContext(ctx, q, k.Subject)
		if err != nil {
			return fmt.Errorf("active key: %w", err)
		}
		keys, err := scanKeys(rows)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return domain.ErrNoActiveKey
		}
		old = keys[0]
		at := k.CreatedAt.UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE agent_did_keys SET status = ?, retired_at = ? WHERE agent_id = ? AND kid = ?`,
			domain.KeyRetired, at, old.Subject, old.KID); err != nil {
			return fmt.Errorf("retire key: %w", err)
		}
		old.Status, old.RetiredAt = domain.KeyRetired, &at
		if err := insertKey(ctx, tx, k); err != nil {
			return fmt.Errorf("insert key: %w", err)
		}
		evs, err := mkEvents(old)
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, evs...)
	})
	if err != nil {
		return domain.Key{}, err
	}
	return old, nil
}

// AddAgentHeldKey implements domain.Store.
func (s *Store) AddAgentHeldKey(ctx context.Context, k domain.AgentHeldKey) (bool, error) {
	jwk, err := json.Marshal(k.PublicJWK)
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO agent_held_keys (agent_id, kid, org_id, public_jwk, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (agent_id, kid) DO NOTHING`, k.AgentID, k.KID, k.OrgID, string(jwk), k.CreatedAt.UTC())
	if err != nil {
		return false, fmt.Errorf("insert agent-held key: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert agent-held key: %w", err)
	}
	return n == 1, nil
}

// RevokeAgentHeldKey implements domain.Store.
func (s *Store) RevokeAgentHeldKey(ctx context.Context, agentID, orgID, kid string, at time.Time) (bool, error) {
	at = at.UTC()
	res, err := s.db.ExecContext(ctx, `UPDATE agent_held_keys SET revoked_at = ? WHERE agent_id = ? AND kid = ? AND revoked_at IS NULL`,
		at, agentID, kid)
	if err != nil {
		return false, fmt.Errorf("revoke agent-held key: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("revoke agent-held key: %w", err)
	}
	if n == 1 {
		return true, nil
	}
	// Unknown (or already revoked): leave a revoked row so a generation
	// delivered late cannot list the key.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO agent_held_keys (agent_id, kid, org_id, public_jwk, created_at, revoked_at)
		VALUES (?, ?, ?, '', ?, ?) ON CONFLICT (agent_id, kid) DO NOTHING`, agentID, kid, orgID, at, at); err != nil {
		return false, fmt.Errorf("record agent-held key revocation: %w", err)
	}
	return false, nil
}

// AgentHeldKeys implements domain.Store.
func (s *Store) AgentHeldKeys(ctx context.Context, agentID string) ([]domain.AgentHeldKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent_id, kid, org_id, public_jwk, created_at, revoked_at
		FROM agent_held_keys WHERE agent_id = ? ORDER BY created_at, kid`, agentID)
	if err != nil {
		return nil, fmt.Errorf("list agent-held keys: %w", err)
	}
	defer rows.Close()
	out := []domain.AgentHeldKey{}
	for rows.Next() {
		var k domain.AgentHeldKey
		var jwk string
		var revoked sql.NullTime
		if err := rows.Scan(&k.AgentID, &k.KID, &k.OrgID, &jwk, &k.CreatedAt, &revoked); err != nil {
			return nil, err
		}
		if jwk != "" {
			if err := json.Unmarshal([]byte(jwk), &k.PublicJWK); err != nil {
				return nil, fmt.Errorf("agent-held key %s: %w", k.KID, err)
			}
		}
		k.CreatedAt = k.CreatedAt.UTC()
		if revoked.Valid {
			t := revoked.Time.UTC()
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
