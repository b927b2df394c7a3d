// Package sqlstore is the token service's store on PostgreSQL and SQLite
// (libs/sqlstore), implementing domain.Store.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/revocation"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// Store implements domain.Store.
type Store struct {
	db *lib.DB
}

var _ domain.Store = (*Store)(nil)

// New returns a store on db; the service's migrations and the outbox table
// must exist.
func New(db *lib.DB) *Store { return &Store{db: db} }

const agentCols = `agent_id, organization_id, email, agent_type, version, capabilities, owner, deployment_env,
	status, scopes, default_scopes, did, did_created_at, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanAgent(r scanner) (domain.Agent, error) {
	var a domain.Agent
	var caps, scopes, defaults string
	var did sql.NullString
	var didAt sql.NullTime
	if err := r.Scan(&a.AgentID, &a.OrganizationID, &a.Email, &a.AgentType, &a.Version, &caps, &a.Owner, &a.DeploymentEnv,
		&a.Status, &scopes, &defaults, &did, &didAt, &a.CreatedAt, &a.UpdatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return a, domain.ErrNotFound
		}
		return a, err
	}
	for _, p := range []struct {
		s   string
		dst *[]string
	}{{caps, &a.Capabilities}, {scopes, &a.Scopes}, {defaults, &a.DefaultScopes}} {
		if err := json.Unmarshal([]byte(p.s), p.dst); err != nil {
			return a, fmt.Errorf("decode agent %s: %w", a.AgentID, err)
		}
		if *p.dst == nil {
			*p.dst = []string{}
		}
	}
	if did.Valid {
		a.DID = &did.String
	}
	if didAt.Valid {
		t := didAt.Time.UTC()
		a.DIDCreatedAt = &t
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

func list(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// lockOrg serialises agent-count checks of one org on PostgreSQL (SQLite
// transactions are already serial).
func lockOrg(ctx context.Context, tx *lib.Tx, orgID string) error {
	if tx.Driver() != lib.Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext(?))", "token-agents:"+orgID)
	return err
}

func countActive(ctx context.Context, q lib.Querier, orgID, except string) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM agents WHERE organization_id = ? AND status <> ? AND agent_id <> ?",
		orgID, domain.StatusDecommissioned, except).Scan(&n)
	return n, err
}

// CreateAgent implements domain.Store.
func (s *Store) CreateAgent(ctx context.Context, a domain.Agent, maxAgents int64, evs []events.Envelope) (int64, error) {
	var count int64
	err := s.db.InTx(ctx, func(tx *lib.Tx) error {
		if err := lockOrg(ctx, tx, a.OrganizationID); err != nil {
			return err
		}
		n, err := countActive(ctx, tx, a.OrganizationID, "")
		if err != nil {
			return fmt.Errorf("count agents: %w", err)
		}
		if maxAgents >= 0 && n >= maxAgents {
			return domain.ErrAgentLimit
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO agents (`+agentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.AgentID, a.OrganizationID, a.Email, a.AgentType, a.Version, list(a.Capabilities), a.Owner, a.DeploymentEnv,
			a.Status, list(a.Scopes), list(a.DefaultScopes), a.DID, a.DIDCreatedAt, a.CreatedAt.UTC(), a.UpdatedAt.UTC())
		if lib.IsUniqueViolation(err) {
			return domain.ErrAgentExists
		}
		if err != nil {
			return fmt.Errorf("insert agent: %w", err)
		}
		count = n + 1
		return tx.AddEvents(ctx, evs...)
	})
	return count, err
}

// GetAgent implements domain.Store.
func (s *Store) GetAgent(ctx context.Context, orgID, agentID string) (domain.Agent, error) {
	return scanAgent(s.db.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?", orgID, agentID))
}

// AgentOrg implements domain.Store.
func (s *Store) AgentOrg(ctx context.Context, agentID string) (string, error) {
	var org string
	err := s.db.QueryRowContext(ctx, "SELECT organization_id FROM agents WHERE agent_id = ?", agentID).Scan(&org)
	if errors.Is(err, sql.ErrNoRows) {
		return "", domain.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("agent org %s: %w", agentID, err)
	}
	return org, nil
}

// FindAgentByEmail implements domain.Store.
func (s *Store) FindAgentByEmail(ctx context.Context, orgID, email string) (domain.Agent, error) {
	return scanAgent(s.db.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND email = ?", orgID, email))
}

// ListAgents implements domain.Store.
func (s *Store) ListAgents(ctx context.Context, orgID string, f domain.AgentFilter, offset, limit int) ([]domain.Agent, int64, error) {
	where := []string{"organization_id = ?"}
	args := []any{orgID}
	for _, c := range []struct{ col, v string }{{"owner", f.Owner}, {"agent_type", f.AgentType}, {"status", f.Status}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	cond := strings.Join(where, " AND ")
	var total int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM agents WHERE "+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count agents: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+agentCols+" FROM agents WHERE "+cond+" ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
		append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	out := []domain.Agent{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, a)
	}
	return out, total, rows.Err()
}

func forUpdate(q lib.Querier) string {
	if q.Driver() == lib.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// UpdateAgent implements domain.Store.
func (s *Store) UpdateAgent(ctx context.Context, orgID, agentID string, mutate func(a *domain.Agent) (domain.AgentChange, error)) (domain.Agent, int64, error) {
	var out domain.Agent
	var count int64
	err := s.db.InTx(ctx, func(tx *lib.Tx) error {
		if err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		a, err := scanAgent(tx.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?"+forUpdate(tx), orgID, agentID))
		if err != nil {
			return err
		}
		ch, err := mutate(&a)
		if err != nil {
			return err
		}
		out = a
		others, err := countActive(ctx, tx, orgID, agentID)
		if err != nil {
			return fmt.Errorf("count agents: %w", err)
		}
		if ch.Skip {
			count = others
			if a.Status != domain.StatusDecommissioned {
				count++
			}
			return nil
		}
		if ch.MaxAgents >= 0 && others >= ch.MaxAgents {
			return domain.ErrAgentLimit
		}
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET email = ?, agent_type = ?, version = ?, capabilities = ?, owner = ?,
			deployment_env = ?, status = ?, scopes = ?, default_scopes = ?, updated_at = ? WHERE agent_id = ?`,
			a.Email, a.AgentType, a.Version, list(a.Capabilities), a.Owner, a.DeploymentEnv, a.Status,
			list(a.Scopes), list(a.DefaultScopes), a.UpdatedAt.UTC(), a.AgentID); err != nil {
			return fmt.Errorf("update agent: %w", err)
		}
		if ch.RevokeCredentials {
			if _, err := tx.ExecContext(ctx, "UPDATE credentials SET status = ?, revoked_at = ? WHERE agent_id = ? AND status = ?",
				domain.CredentialRevoked, a.UpdatedAt.UTC(), a.AgentID, domain.CredentialActive); err != nil {
				return fmt.Errorf("revoke credentials: %w", err)
			}
		}
		count = others
		if a.Status != domain.StatusDecommissioned {
			count++
		}
		if err := addRevocations(ctx, tx, ch.Revocations); err != nil {
			return err
		}
		return tx.AddEvents(ctx, ch.Events...)
	})
	return out, count, err
}

const credCols = "credential_id, agent_id, secret_digest, status, created_at, expires_at, revoked_at"

func scanCredential(r scanner) (domain.Credential, error) {
	var c domain.Credential
	var exp, rev sql.NullTime
	if err := r.Scan(&c.CredentialID, &c.ClientID, &c.Digest, &c.Status, &c.CreatedAt, &exp, &rev); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, domain.ErrCredentialNotFound
		}
		return c, err
	}
	c.CreatedAt = c.CreatedAt.UTC()
	if exp.Valid {
		t := exp.Time.UTC()
		c.ExpiresAt = &t
	}
	if rev.Valid {
		t := rev.Time.UTC()
		c.RevokedAt = &t
	}
	return c, nil
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// CreateCredential implements domain.Store.
func (s *Store) CreateCredential(ctx context.Context, orgID string, c domain.Credential, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *lib.Tx) error {
		a, err := scanAgent(tx.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?"+forUpdate(tx), orgID, c.ClientID))
		if err != nil {
			return err
		}
		if a.Status == domain.StatusDecommissioned {
			return domain.ErrDecommissioned
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO credentials (credential_id, agent_id, organization_id, secret_digest, status, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			c.CredentialID, c.ClientID, orgID, c.Digest, c.Status, c.CreatedAt.UTC(), nullTime(c.ExpiresAt), nullTime(c.RevokedAt)); err != nil {
			return fmt.Errorf("insert credential: %w", err)
		}
		return tx.AddEvents(ctx, evs...)
	})
}

// ListCredentials implements domain.Store.
func (s *Store) ListCredentials(ctx context.Context, orgID, agentID string) ([]domain.Credential, error) {
	if _, err := s.GetAgent(ctx, orgID, agentID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+credCols+" FROM credentials WHERE agent_id = ? AND organization_id = ? ORDER BY created_at, credential_id", agentID, orgID)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	defer rows.Close()
	out := []domain.Credential{}
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UpdateCredential implements domain.Store.
func (s *Store) UpdateCredential(ctx context.Context, orgID, agentID, credentialID string, mutate func(a domain.Agent, c *domain.Credential) (domain.CredentialChange, error)) (domain.Credential, error) {
	var out domain.Credential
	err := s.db.InTx(ctx, func(tx *lib.Tx) error {
		a, err := scanAgent(tx.QueryRowContext(ctx, "SELECT "+agentCols+" FROM agents WHERE organization_id = ? AND agent_id = ?", orgID, agentID))
		if err != nil {
			return err
		}
		c, err := scanCredential(tx.QueryRowContext(ctx, "SELECT "+credCols+" FROM credentials WHERE credential_id = ? AND agent_id = ?"+forUpdate(tx), credentialID, agentID))
		if err != nil {
			return err
		}
		ch, err := mutate(a, &c)
		if err != nil {
			return err
		}
		out = c
		if len(ch.Events) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE credentials SET status = ?, secret_digest = ?, expires_at = ?, revoked_at = ? WHERE credential_id = ?",
			c.Status, c.Digest, nullTime(c.ExpiresAt), nullTime(c.RevokedAt), c.CredentialID); err != nil {
			return fmt.Errorf("update credential: %w", err)
		}
		if n := ch.Insert; n != nil {
			if _, err := tx.ExecContext(ctx, "INSERT INTO credentials (credential_id, agent_id, organization_id, secret_digest, status, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				n.CredentialID, agentID, orgID, n.Digest, n.Status, n.CreatedAt.UTC(), nullTime(n.ExpiresAt), nullTime(n.RevokedAt)); err != nil {
				return fmt.Errorf("insert credential: %w", err)
			}
		}
		if err := addRevocations(ctx, tx, ch.Revocations); err != nil {
			return err
		}
		return tx.AddEvents(ctx, ch.Events...)
	})
	return out, err
}

// addRevocations upserts revocation rows; a watermark only moves forward.
func addRevocations(ctx context.Context, q lib.Querier, revs []domain.Revocation) error {
	for _, r := range revs {
		if _, err := q.ExecContext(ctx, `INSERT INTO revocations (kind, key, not_before, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET not_before = excluded.not_before, expires_at = excluded.expires_at
			WHERE revocations.not_before < excluded.not_before`,
			string(r.Kind), r.Key, r.NotBefore, r.ExpiresAt.UTC()); err != nil {
			return fmt.Errorf("record revocation %s.%s: %w", r.Kind, r.Key, err)
		}
	}
	return nil
}

// AddRevocations implements domain.Store.
func (s *Store) AddRevocations(ctx context.Context, revs []domain.Revocation, evs []events.Envelope) error {
	return s.db.InTx(ctx, func(tx *lib.Tx) error {
		if err := addRevocations(ctx, tx, revs); err != nil {
			return err
		}
		return tx.AddEvents(ctx, evs...)
	})
}

// ListRevocations implements domain.Store.
func (s *Store) ListRevocations(ctx context.Context, now time.Time) ([]domain.Revocation, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT kind, key, not_before, expires_at FROM revocations WHERE expires_at > ? ORDER BY kind, key", now.UTC())
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	defer rows.Close()
	var out []domain.Revocation
	for rows.Next() {
		var r domain.Revocation
		var kind string
		if err := rows.Scan(&kind, &r.Key, &r.NotBefore, &r.ExpiresAt); err != nil {
			return nil, fmt.Errorf("list revocations: %w", err)
		}
		r.Kind = revocation.Kind(kind)
		r.ExpiresAt = r.ExpiresAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// PruneRevocations implements domain.Store.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM revocations WHERE expires_at <= ?", now.UTC())
	if err != nil {
		return 0, fmt.Errorf("prune revocations: %w", err)
	}
	return res.RowsAffected()
}

// LoadClient implements domain.Store.
func (s *Store) LoadClient(ctx context.Context, clientID string) (domain.ClientRecord, error) {
	var rec domain.ClientRecord
	var scopes, defaults string
	err := s.db.QueryRowContext(ctx, "SELECT agent_id, organization_id, status, scopes, default_scopes FROM agents WHERE agent_id = ?", clientID).
		Scan(&rec.AgentID, &rec.OrgID, &rec.Status, &scopes, &defaults)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, domain.ErrNotFound
	}
	if err != nil {
		return rec, fmt.Errorf("load client %s: %w", clientID, err)
	}
	if err := json.Unmarshal([]byte(scopes), &rec.Scopes); err != nil {
		return rec, fmt.Errorf("decode client %s: %w", clientID, err)
	}
	if err := json.Unmarshal([]byte(defaults), &rec.DefaultScopes); err != nil {
		return rec, fmt.Errorf("decode client %s: %w", clientID, err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT credential_id, secret_digest, expires_at FROM credentials WHERE agent_id = ? AND status = ?", clientID, domain.CredentialActive)
	if err != nil {
		return rec, fmt.Errorf("load client %s credentials: %w", clientID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c domain.ClientCredential
		var exp sql.NullTime
		if err := rows.Scan(&c.ID, &c.Digest, &exp); err != nil {
			return rec, err
		}
		if exp.Valid {
			t := exp.Time.UTC()
			c.ExpiresAt = &t
		}
		rec.Credentials = append(rec.Credentials, c)
	}
	return rec, rows.Err()
}

// ActiveSigningKey implements domain.Store.
func (s *Store) ActiveSigningKey(ctx context.Context, alg string) (domain.SealedKey, error) {
	var k domain.SealedKey
	err := s.db.QueryRowContext(ctx, "SELECT kid, alg, sealed, status, created_at FROM signing_keys WHERE alg = ? AND status = 'active'", alg).
		Scan(&k.KID, &k.Alg, &k.Sealed, &k.Status, &k.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return k, domain.ErrNotFound
	}
	return k, err
}

// InsertSigningKey implements domain.Store.
func (s *Store) InsertSigningKey(ctx context.Context, k domain.SealedKey) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO signing_keys (kid, alg, sealed, status, created_at) VALUES (?, ?, ?, ?, ?)",
		k.KID, k.Alg, k.Sealed, k.Status, k.CreatedAt.UTC())
	if lib.IsUniqueViolation(err) {
		return domain.ErrConflict
	}
	return err
}

// SigningKeys implements domain.Store.
func (s *Store) SigningKeys(ctx context.Context) ([]domain.SealedKey, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT kid, alg, sealed, status, created_at FROM signing_keys WHERE status IN ('active', 'retired') ORDER BY created_at, kid")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []domain.SealedKey
	for rows.Next() {
		var k domain.SealedKey
		if err := rows.Scan(&k.KID, &k.Alg, &k.Sealed, &k.Status, &k.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
