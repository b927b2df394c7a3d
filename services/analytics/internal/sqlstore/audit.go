package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
)

var errNoRows = sql.ErrNoRows

const recordColumns = `organization_id, seq, event_id, agent_id, action, outcome, timestamp, source, metadata, prev_hash, hash, chain_version, key_id`

type scanner interface{ Scan(dest ...any) error }

func scanRecord(row scanner) (audit.Record, error) {
	var r audit.Record
	var ts any
	if err := row.Scan(&r.OrganizationID, &r.Seq, &r.EventID, &r.AgentID, &r.Action, &r.Outcome, &ts, &r.Source, &r.Metadata, &r.PrevHash, &r.Hash, &r.Version, &r.KeyID); err != nil {
		return audit.Record{}, err
	}
	t, err := asTime(ts)
	if err != nil {
		return audit.Record{}, err
	}
	r.Timestamp = t
	return r, nil
}

// asTime converts a scanned time: pgx and modernc return time.Time for
// timestamp columns; aggregates on SQLite come back as text.
func asTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), nil
	case string:
		return parseTime(t)
	case []byte:
		return parseTime(string(t))
	case nil:
		return time.Time{}, nil
	}
	return time.Time{}, fmt.Errorf("unexpected time value %T", v)
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unparsable time %q", s)
}

func filterWhere(org string, f audit.Filter) (string, []any) {
	where := []string{"organization_id = ?"}
	args := []any{org}
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.AgentID != "" {
		add("agent_id = ?", f.AgentID)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if !f.From.IsZero() {
		add("timestamp >= ?", audit.NormalizeTime(f.From))
	}
	if !f.To.IsZero() {
		add("timestamp <= ?", audit.NormalizeTime(f.To))
	}
	return strings.Join(where, " AND "), args
}

// List implements audit.Store.
func (s *Store) List(ctx context.Context, org string, f audit.Filter, offset, limit int) ([]audit.Record, int64, error) {
	where, args := filterWhere(org, f)
	var total int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count audit records: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE `+where+
		` ORDER BY timestamp DESC, seq DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list audit records: %w", err)
	}
	recs, err := collectRecords(rows)
	return recs, total, err
}

func collectRecords(rows *sql.Rows) ([]audit.Record, error) {
	defer rows.Close()
	out := []audit.Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("scan audit record: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit records: %w", err)
	}
	return out, nil
}

// Get implements audit.Store.
func (s *Store) Get(ctx context.Context, org, eventID string) (audit.Record, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE organization_id = ? AND event_id = ?`, org, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Record{}, audit.ErrNotFound
	}
	if err != nil {
		return audit.Record{}, fmt.Errorf("get audit record: %w", err)
	}
	return r, nil
}

// Head implements audit.Store.
func (s *Store) Head(ctx context.Context, org string) (int64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT seq FROM audit_heads WHERE organization_id = ?`, org).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read audit head: %w", err)
	}
	return seq, nil
}

// Heads implements audit.Store.
func (s *Store) Heads(ctx context.Context, orgs []string) (map[string]audit.ChainHead, error) {
	out := make(map[string]audit.ChainHead, len(orgs))
	if len(orgs) == 0 {
		return out, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(orgs)), ", ")
	args := make([]any, len(orgs))
	for i, o := range orgs {
		args[i] = o
	}
	rows, err := s.db.QueryContext(ctx, `SELECT organization_id, seq, hash FROM audit_heads WHERE organization_id IN (`+marks+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var org string
		var h audit.ChainHead
		if err := rows.Scan(&org, &h.Seq, &h.Value); err != nil {
			return nil, fmt.Errorf("read audit heads: %w", err)
		}
		out[org] = h
	}
	return out, rows.Err()
}

// Range implements audit.Store.
func (s *Store) Range(ctx context.Context, org string, afterSeq, upTo int64, limit int) ([]audit.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM audit_events
		WHERE organization_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`, org, afterSeq, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit range: %w", err)
	}
	return collectRecords(rows)
}

// LatestCheckpoint implements audit.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, org string) (audit.Checkpoint, bool, error) {
	c := audit.Checkpoint{OrganizationID: org}
	var at any
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash, created_at, key_id, signature FROM audit_checkpoints
		WHERE organization_id = ? ORDER BY seq DESC LIMIT 1`, org).Scan(&c.Seq, &c.Hash, &at, &c.KeyID, &c.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Checkpoint{}, false, nil
	}
	if err != nil {
		return audit.Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	if c.CreatedAt, err = asTime(at); err != nil {
		return audit.Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	return c, true, nil
}

// Anchor implements audit.Store.
func (s *Store) Anchor(ctx context.Context, org string) (audit.Anchor, bool, error) {
	a := audit.Anchor{OrganizationID: org}
	var at any
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash, created_at, key_id, signature FROM audit_anchors WHERE organization_id = ?`, org).
		Scan(&a.Seq, &a.Hash, &at, &a.KeyID, &a.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Anchor{}, false, nil
	}
	if err != nil {
		return audit.Anchor{}, false, fmt.Errorf("read anchor: %w", err)
	}
	if a.CreatedAt, err = asTime(at); err != nil {
		return audit.Anchor{}, false, fmt.Errorf("read anchor: %w", err)
	}
	return a, true, nil
}

// Unanchored implements audit.Store. Once every chain is upgraded this
// costs two index probes per chain, at start only.
func (s *Store) Unanchored(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT h.organization_id FROM audit_heads h
		WHERE NOT EXISTS (SELECT 1 FROM audit_anchors a WHERE a.organization_id = h.organization_id)
		AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.organization_id = h.organization_id AND e.chain_version <> 1)
		ORDER BY h.organization_id`)
	if err != nil {
		return nil, fmt.Errorf("list unanchored chains: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var org string
		if err := rows.Scan(&org); err != nil {
			return nil, fmt.Errorf("list unanchored chains: %w", err)
		}
		out = append(out, org)
	}
	return out, rows.Err()
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// legacy reads org's legacy state in the order that keeps it cheap once a
// chain is upgraded: the anchor (one index lookup), then any keyed record,
// and only for a chain with neither the last unkeyed one.
func legacy(ctx context.Context, q querier, org string) (audit.Legacy, error) {
	var l audit.Legacy
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM audit_anchors WHERE organization_id = ?`, org).Scan(&n); err != nil {
		return l, fmt.Errorf("read anchor: %w", err)
	}
	if l.Anchored = n > 0; l.Anchored {
		return l, nil
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM audit_events WHERE organization_id = ? AND chain_version <> 1 LIMIT 1) k`, org).Scan(&n); err != nil {
		return l, fmt.Errorf("find keyed records: %w", err)
	}
	if l.Keyed = n > 0; l.Keyed {
		return l, nil
	}
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(max(seq), 0) FROM audit_events WHERE organization_id = ? AND chain_version = 1`, org).Scan(&l.LastUnkeyed); err != nil {
		return l, fmt.Errorf("find unkeyed records: %w", err)
	}
	return l, nil
}

// Legacy implements audit.Store. LastUnkeyed is only read for a chain that
// is neither anchored nor keyed (it is 0 otherwise).
func (s *Store) Legacy(ctx context.Context, org string) (audit.Legacy, error) {
	return legacy(ctx, s.db, org)
}

var errAnchorRace = errors.New("chain changed since it was read")

// WriteAnchor implements audit.Store. It locks the chain head like an
// append, so it cannot interleave with one.
func (s *Store) WriteAnchor(ctx context.Context, org string, a *audit.Anchor, resign *audit.Checkpoint) (bool, error) {
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		lock := `SELECT seq FROM audit_heads WHERE organization_id = ?`
		if tx.Driver() == sqlstore.Postgres {
			lock += ` FOR UPDATE`
		}
		var head int64
		if err := tx.QueryRowContext(ctx, lock, org).Scan(&head); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return errAnchorRace
			}
			return fmt.Errorf("lock head: %w", err)
		}
		l, err := legacy(ctx, tx, org)
		if err != nil {
			return err
		}
		if l.Anchored || l.Keyed || (a != nil && l.LastUnkeyed != a.Seq) {
			return errAnchorRace
		}
		if a != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_anchors (organization_id, seq, hash, created_at, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)`,
				org, a.Seq, a.Hash, a.CreatedAt.UTC(), a.KeyID, a.Signature); err != nil {
				return fmt.Errorf("insert anchor: %w", err)
			}
		}
		if resign != nil {
			res, err := tx.ExecContext(ctx, `UPDATE audit_checkpoints SET key_id = ?, signature = ? WHERE organization_id = ? AND seq = ? AND key_id = ''`,
				resign.KeyID, resign.Signature, org, resign.Seq)
			if err != nil {
				return fmt.Errorf("re-sign checkpoint: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return errAnchorRace
			}
		}
		return nil
	})
	if errors.Is(err, errAnchorRace) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("anchor %s: %w", org, err)
	}
	return true, nil
}

// Orgs implements audit.Store.
func (s *Store) Orgs(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT organization_id FROM audit_heads ORDER BY organization_id`)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var org string
		if err := rows.Scan(&org); err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
		out = append(out, org)
	}
	return out, rows.Err()
}

// Purge implements audit.Store. On PostgreSQL the chain head is locked for
// the transaction so that concurrent retention runs of replicas do not
// interleave.
func (s *Store) Purge(ctx context.Context, org string, before, now time.Time, sign func(seq int64, hash string) (string, string)) (int64, error) {
	var deleted int64
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		lock := `SELECT seq FROM audit_heads WHERE organization_id = ?`
		if tx.Driver() == sqlstore.Postgres {
			lock += ` FOR UPDATE`
		}
		var head int64
		if err := tx.QueryRowContext(ctx, lock, org).Scan(&head); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			return fmt.Errorf("lock head: %w", err)
		}
		var minSeq, maxSeq, firstKept sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT min(seq), max(seq) FROM audit_events WHERE organization_id = ?`, org).Scan(&minSeq, &maxSeq); err != nil {
			return fmt.Errorf("chain bounds: %w", err)
		}
		if !minSeq.Valid {
			return nil
		}
		if err := tx.QueryRowContext(ctx, `SELECT min(seq) FROM audit_events WHERE organization_id = ? AND timestamp >= ?`, org, before.UTC()).Scan(&firstKept); err != nil {
			return fmt.Errorf("first kept record: %w", err)
		}
		last := maxSeq.Int64
		if firstKept.Valid {
			last = firstKept.Int64 - 1
		}
		if last < minSeq.Int64 {
			return nil
		}
		var hash string
		if err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE organization_id = ? AND seq = ?`, org, last).Scan(&hash); err != nil {
			return fmt.Errorf("record %d: %w", last, err)
		}
		keyID, signature := sign(last, hash)
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (organization_id, seq, hash, created_at, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (organization_id, seq) DO NOTHING`, org, last, hash, now.UTC(), keyID, signature); err != nil {
			return fmt.Errorf("write checkpoint: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE organization_id = ? AND seq <= ?`, org, last)
		if err != nil {
			return fmt.Errorf("delete records: %w", err)
		}
		deleted, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", org, err)
	}
	return deleted, nil
}

// Agents implements compliance.Store.
func (s *Store) Agents(ctx context.Context, org string) ([]compliance.Agent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent_id, email, agent_type, status, scopes, created_at, did, did_at
		FROM compliance_agents WHERE organization_id = ? ORDER BY agent_id`, org)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	out := []compliance.Agent{}
	for rows.Next() {
		var a compliance.Agent
		var scopes string
		var created, didAt any
		if err := rows.Scan(&a.AgentID, &a.Email, &a.AgentType, &a.Status, &scopes, &created, &a.DID, &didAt); err != nil {
			return nil, fmt.Errorf("scan agent: %w", err)
		}
		a.Scopes = strings.Fields(scopes)
		if a.CreatedAt, err = asTime(created); err != nil {
			return nil, err
		}
		if a.DIDAt, err = asTime(didAt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Credentials implements compliance.Store.
func (s *Store) Credentials(ctx context.Context, org string) ([]compliance.Credential, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT credential_id, agent_id, status, expires_at, issued_at
		FROM compliance_credentials WHERE organization_id = ? ORDER BY credential_id`, org)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	defer rows.Close()
	out := []compliance.Credential{}
	for rows.Next() {
		var c compliance.Credential
		var exp, issued any
		if err := rows.Scan(&c.CredentialID, &c.AgentID, &c.Status, &exp, &issued); err != nil {
			return nil, fmt.Errorf("scan credential: %w", err)
		}
		if c.ExpiresAt, err = asTime(exp); err != nil {
			return nil, err
		}
		if c.IssuedAt, err = asTime(issued); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
