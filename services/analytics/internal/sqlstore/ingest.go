package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ingestPostgres records the batch's ids and adds the new ones to the
// daily, hourly and per-agent counters in one statement, returning the ids
// that were new. Ids and counters are written in sorted order so that
// concurrent batches take row locks in the same order; a concurrent insert
// of the same id waits for the other transaction and then does nothing, so
// each id is new in exactly one transaction.
const ingestPostgres = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::timestamptz[])
        AS t(event_id, org, day, hour, metric, subject, at)
), ins AS (
    INSERT INTO processed_events (event_id, processed_at)
    SELECT event_id, $8 FROM input ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), fresh AS (
    SELECT i.* FROM ins JOIN input i ON i.event_id = ins.event_id
), daily AS (
    INSERT INTO analytics_events (organization_id, date, metric_type, count)
    SELECT org, day::date, metric, count(*) FROM fresh
    GROUP BY org, day, metric ORDER BY org, day, metric
    ON CONFLICT (organization_id, date, metric_type)
    DO UPDATE SET count = analytics_events.count + EXCLUDED.count
), hourly AS (
    INSERT INTO analytics_activity (organization_id, date, hour, count)
    SELECT org, day::date, hour, count(*) FROM fresh
    GROUP BY org, day, hour ORDER BY org, day, hour
    ON CONFLICT (organization_id, date, hour)
    DO UPDATE SET count = analytics_activity.count + EXCLUDED.count
), tokens AS (
    INSERT INTO analytics_agent_tokens (organization_id, date, agent_id, count, last_at)
    SELECT org, day::date, subject, count(*), max(at) FROM fresh
    WHERE metric = 'token.issued' AND subject <> ''
    GROUP BY org, day, subject ORDER BY org, day, subject
    ON CONFLICT (organization_id, date, agent_id)
    DO UPDATE SET count = analytics_agent_tokens.count + EXCLUDED.count,
                  last_at = GREATEST(analytics_agent_tokens.last_at, EXCLUDED.last_at)
)
SELECT event_id FROM ins`

// lockHeadPostgres creates the organisation's chain head if needed and
// locks it until commit (the no-op DO UPDATE takes the row lock, and under
// READ COMMITTED returns the latest committed seq and hash), so appends to
// one chain are serialised across replicas.
const lockHeadPostgres = `
INSERT INTO audit_heads (organization_id, seq, hash) VALUES ($1, 0, '')
ON CONFLICT (organization_id) DO UPDATE SET seq = audit_heads.seq
RETURNING seq, hash`

// appendPostgres inserts an organisation's new records and moves its head.
const appendPostgres = `
WITH rec AS (
    INSERT INTO audit_events (organization_id, seq, event_id, agent_id, action, outcome, timestamp, source, metadata, prev_hash, hash, chain_version, key_id)
    SELECT $1, u.*, $14::smallint, $15::text FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[]) AS u
)
UPDATE audit_heads SET seq = $12, hash = $13 WHERE organization_id = $1`

// Read-model upserts, shared by both drivers ('?' rebound on PostgreSQL).
// Each column keeps the state of the latest event time, so redelivered or
// reordered events converge; descriptive fields (email, type, scopes) are
// also filled from an older event when still unknown.
const (
	upsertAgent = `
INSERT INTO compliance_agents (organization_id, agent_id, email, agent_type, status, scopes, agent_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (organization_id, agent_id) DO UPDATE SET
    email = CASE WHEN excluded.email <> '' AND (compliance_agents.email = '' OR compliance_agents.agent_at IS NULL OR excluded.agent_at >= compliance_agents.agent_at) THEN excluded.email ELSE compliance_agents.email END,
    agent_type = CASE WHEN excluded.agent_type <> '' AND (compliance_agents.agent_type = '' OR compliance_agents.agent_at IS NULL OR excluded.agent_at >= compliance_agents.agent_at) THEN excluded.agent_type ELSE compliance_agents.agent_type END,
    status = CASE WHEN (compliance_agents.agent_at IS NULL OR excluded.agent_at >= compliance_agents.agent_at) AND excluded.status <> '' THEN excluded.status ELSE compliance_agents.status END,
    scopes = CASE WHEN excluded.scopes <> '' AND (compliance_agents.scopes = '' OR compliance_agents.agent_at IS NULL OR excluded.agent_at >= compliance_agents.agent_at) THEN excluded.scopes ELSE compliance_agents.scopes END,
    agent_at = CASE WHEN compliance_agents.agent_at IS NULL OR excluded.agent_at >= compliance_agents.agent_at THEN excluded.agent_at ELSE compliance_agents.agent_at END,
    created_at = COALESCE(compliance_agents.created_at, excluded.created_at)`
	upsertDID = `
INSERT INTO compliance_agents (organization_id, agent_id, did, did_at) VALUES (?, ?, ?, ?)
ON CONFLICT (organization_id, agent_id) DO UPDATE SET
    did = CASE WHEN compliance_agents.did_at IS NULL OR excluded.did_at >= compliance_agents.did_at THEN excluded.did ELSE compliance_agents.did END,
    did_at = CASE WHEN compliance_agents.did_at IS NULL OR excluded.did_at >= compliance_agents.did_at THEN excluded.did_at ELSE compliance_agents.did_at END`
	upsertCredential = `
INSERT INTO compliance_credentials (organization_id, credential_id, agent_id, status, expires_at, issued_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (organization_id, credential_id) DO UPDATE SET
    agent_id = CASE WHEN excluded.agent_id <> '' THEN excluded.agent_id ELSE compliance_credentials.agent_id END,
    status = CASE WHEN excluded.updated_at >= compliance_credentials.updated_at AND excluded.status <> '' THEN excluded.status ELSE compliance_credentials.status END,
    expires_at = CASE WHEN excluded.updated_at >= compliance_credentials.updated_at AND excluded.expires_at IS NOT NULL THEN excluded.expires_at ELSE compliance_credentials.expires_at END,
    issued_at = CASE WHEN compliance_credentials.issued_at IS NULL OR excluded.issued_at > compliance_credentials.issued_at THEN COALESCE(excluded.issued_at, compliance_credentials.issued_at) ELSE compliance_credentials.issued_at END,
    updated_at = CASE WHEN excluded.updated_at > compliance_credentials.updated_at THEN excluded.updated_at ELSE compliance_credentials.updated_at END`
)

// eventTime is the event's time, or Date at Hour when it has none.
func eventTime(e counting.Event) time.Time {
	if !e.Time.IsZero() {
		return e.Time.UTC()
	}
	d, err := time.Parse(counting.DateLayout, e.Date)
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	return d.Add(time.Duration(e.Hour) * time.Hour)
}

// readModelStatements returns the upserts of e's read-model change.
func readModelStatements(e counting.Event) []stmt {
	var out []stmt
	if a := e.Agent; a != nil {
		var created any
		if a.Created {
			created = a.At.UTC()
		}
		out = append(out, stmt{upsertAgent, []any{e.OrgID, a.AgentID, a.Email, a.AgentType, a.Status, strings.Join(a.Scopes, " "), a.At.UTC(), created}})
	}
	if d := e.DID; d != nil {
		out = append(out, stmt{upsertDID, []any{e.OrgID, d.AgentID, d.DID, d.At.UTC()}})
	}
	if c := e.Credential; c != nil {
		var expires, issued any
		if c.ExpiresAt != nil {
			expires = c.ExpiresAt.UTC()
		}
		if c.Issued {
			issued = c.At.UTC()
		}
		out = append(out, stmt{upsertCredential, []any{e.OrgID, c.CredentialID, c.AgentID, c.Status, expires, issued, c.At.UTC()}})
	}
	return out
}

type stmt struct {
	q    string
	args []any
}

// chains groups new events by organisation (sorted) with each org's audit
// entries in (time, id) order, leaving out ids already audited.
func chains(fresh []counting.Event, audited map[string]bool) ([]string, map[string][]audit.Entry) {
	sorted := slices.Clone(fresh)
	sort.SliceStable(sorted, func(i, j int) bool {
		ti, tj := eventTime(sorted[i]), eventTime(sorted[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return sorted[i].ID < sorted[j].ID
	})
	by := map[string][]audit.Entry{}
	var orgs []string
	for _, e := range sorted {
		if audited[e.ID] {
			continue
		}
		if _, ok := by[e.OrgID]; !ok {
			orgs = append(orgs, e.OrgID)
		}
		by[e.OrgID] = append(by[e.OrgID], audit.Entry{
			EventID: e.ID, AgentID: e.Subject, Action: e.Metric, Timestamp: eventTime(e), Source: e.Source, Data: e.Data,
		})
	}
	sort.Strings(orgs)
	return orgs, by
}

// Apply implements counting.Store.
func (s *Store) Apply(ctx context.Context, batch []counting.Event, now time.Time) error {
	batch = uniqueSorted(batch)
	if len(batch) == 0 {
		return nil
	}
	now = now.UTC()
	if s.db.Driver() == sqlstore.Postgres {
		var err error
		// Deadlocks remain possible in theory (e.g. against a prune);
		// PostgreSQL aborts one side and a retry is safe because the
		// transaction rolled back entirely.
		for attempt := 0; attempt < 5; attempt++ {
			if err = s.applyPostgres(ctx, batch, now); err == nil || !retryable(err) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("apply %d events: %w", len(batch), err)
		}
		return nil
	}
	return s.applySQLite(ctx, batch, now)
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// applyPostgres is one transaction of four round trips whatever the batch:
// the counting statement, one pipelined batch locking every touched chain
// head (in org order, so concurrent batches cannot deadlock on heads) and
// reading which ids are already audited, one pipelined batch of appends and
// read-model upserts, and the commit.
func (s *Store) applyPostgres(ctx context.Context, batch []counting.Event, now time.Time) error {
	n := len(batch)
	ids, orgs, days, metrics, subjects := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	hours, ats := make([]int32, n), make([]time.Time, n)
	for i, e := range batch {
		ids[i], orgs[i], days[i], metrics[i], subjects[i] = e.ID, e.OrgID, e.Date, e.Metric, e.Subject
		hours[i], ats[i] = int32(e.Hour), audit.NormalizeTime(eventTime(e))
	}
	tx, err := s.db.Pool().Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	rows, err := tx.Query(ctx, ingestPostgres, ids, orgs, days, hours, metrics, subjects, ats, now)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	newIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	if len(newIDs) == 0 {
		return tx.Commit(ctx)
	}
	isNew := make(map[string]bool, len(newIDs))
	for _, id := range newIDs {
		isNew[id] = true
	}
	fresh := make([]counting.Event, 0, len(newIDs))
	for _, e := range batch {
		if isNew[e.ID] {
			fresh = append(fresh, e)
		}
	}
	chainOrgs, _ := chains(fresh, nil)

	lock := &pgx.Batch{}
	for _, org := range chainOrgs {
		lock.Queue(lockHeadPostgres, org)
	}
	lock.Queue(`SELECT event_id FROM audit_events WHERE event_id = ANY($1)`, newIDs)
	br := tx.SendBatch(ctx, lock)
	type head struct {
		seq  int64
		hash string
	}
	heads := make(map[string]head, len(chainOrgs))
	for _, org := range chainOrgs {
		var h head
		if err := br.QueryRow().Scan(&h.seq, &h.hash); err != nil {
			br.Close()
			return fmt.Errorf("lock audit head of %s: %w", org, err)
		}
		heads[org] = h
	}
	audited := map[string]bool{}
	rows, err = br.Query()
	if err == nil {
		var done []string
		done, err = pgx.CollectRows(rows, pgx.RowTo[string])
		for _, id := range done {
			audited[id] = true
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("read audited ids: %w", err)
	}

	chainOrgs, entries := chains(fresh, audited)
	key := s.keys.Current()
	write := &pgx.Batch{}
	for _, org := range chainOrgs {
		h := heads[org]
		recs := audit.Append(key, org, h.seq, h.hash, entries[org])
		k := len(recs)
		seqs, evIDs, agents, actions, outcomes, sources, metas, prevs, hashes :=
			make([]int64, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
		times := make([]time.Time, k)
		for i, r := range recs {
			seqs[i], evIDs[i], agents[i], actions[i], outcomes[i] = r.Seq, r.EventID, r.AgentID, r.Action, r.Outcome
			times[i], sources[i], metas[i], prevs[i], hashes[i] = r.Timestamp, r.Source, r.Metadata, r.PrevHash, r.Hash
		}
		last := recs[k-1]
		write.Queue(appendPostgres, org, seqs, evIDs, agents, actions, outcomes, times, sources, metas, prevs, hashes, last.Seq, last.Hash, audit.VersionKeyed, key.ID)
	}
	for _, e := range fresh {
		for _, st := range readModelStatements(e) {
			write.Queue(sqlstore.Rebind(sqlstore.Postgres, st.q), st.args...)
		}
	}
	if write.Len() > 0 {
		if err := tx.SendBatch(ctx, write).Close(); err != nil {
			return fmt.Errorf("append audit records: %w", err)
		}
	}
	return tx.Commit(ctx)
}

// applySQLite runs the batch in one write transaction (SQLite has a single
// writer, so the chains need no further locking).
func (s *Store) applySQLite(ctx context.Context, batch []counting.Event, now time.Time) error {
	return s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		type dayKey struct{ org, day, metric string }
		type hourKey struct {
			org, day string
			hour     int
		}
		type agentKey struct{ org, day, agent string }
		type agentVal struct {
			n    int64
			last time.Time
		}
		daily, hourly, tokens := map[dayKey]int64{}, map[hourKey]int64{}, map[agentKey]*agentVal{}
		var dayKeys []dayKey
		var hourKeys []hourKey
		var agentKeys []agentKey
		var fresh []counting.Event
		for _, e := range batch {
			res, err := tx.ExecContext(ctx, `INSERT INTO processed_events (event_id, processed_at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING`, e.ID, now)
			if err != nil {
				return fmt.Errorf("record event %s: %w", e.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				if err != nil {
					return fmt.Errorf("record event %s: %w", e.ID, err)
				}
				continue
			}
			fresh = append(fresh, e)
			dk := dayKey{e.OrgID, e.Date, e.Metric}
			if _, ok := daily[dk]; !ok {
				dayKeys = append(dayKeys, dk)
			}
			daily[dk]++
			hk := hourKey{e.OrgID, e.Date, e.Hour}
			if _, ok := hourly[hk]; !ok {
				hourKeys = append(hourKeys, hk)
			}
			hourly[hk]++
			if e.Metric == "token.issued" && e.Subject != "" {
				ak := agentKey{e.OrgID, e.Date, e.Subject}
				v, ok := tokens[ak]
				if !ok {
					v = &agentVal{}
					tokens[ak] = v
					agentKeys = append(agentKeys, ak)
				}
				v.n++
				if at := audit.NormalizeTime(eventTime(e)); at.After(v.last) {
					v.last = at
				}
			}
		}
		for _, k := range dayKeys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_events (organization_id, date, metric_type, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (organization_id, date, metric_type) DO UPDATE SET count = analytics_events.count + excluded.count`,
				k.org, k.day, k.metric, daily[k]); err != nil {
				return fmt.Errorf("increment counter: %w", err)
			}
		}
		for _, k := range hourKeys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_activity (organization_id, date, hour, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (organization_id, date, hour) DO UPDATE SET count = analytics_activity.count + excluded.count`,
				k.org, k.day, k.hour, hourly[k]); err != nil {
				return fmt.Errorf("increment activity: %w", err)
			}
		}
		for _, k := range agentKeys {
			v := tokens[k]
			if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_agent_tokens (organization_id, date, agent_id, count, last_at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (organization_id, date, agent_id) DO UPDATE SET count = analytics_agent_tokens.count + excluded.count,
				last_at = CASE WHEN excluded.last_at > analytics_agent_tokens.last_at THEN excluded.last_at ELSE analytics_agent_tokens.last_at END`,
				k.org, k.day, k.agent, v.n, v.last); err != nil {
				return fmt.Errorf("increment agent tokens: %w", err)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		audited := map[string]bool{}
		for _, e := range fresh {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM audit_events WHERE event_id = ?`, e.ID).Scan(&one)
			if err == nil {
				audited[e.ID] = true
			}
		}
		orgs, entries := chains(fresh, audited)
		for _, org := range orgs {
			var seq int64
			var hash string
			err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_heads WHERE organization_id = ?`, org).Scan(&seq, &hash)
			if err != nil && !errors.Is(err, errNoRows) {
				return fmt.Errorf("read audit head of %s: %w", org, err)
			}
			recs := audit.Append(s.keys.Current(), org, seq, hash, entries[org])
			for _, r := range recs {
				if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (organization_id, seq, event_id, agent_id, action, outcome, timestamp, source, metadata, prev_hash, hash, chain_version, key_id)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					r.OrganizationID, r.Seq, r.EventID, r.AgentID, r.Action, r.Outcome, r.Timestamp, r.Source, r.Metadata, r.PrevHash, r.Hash, r.Version, r.KeyID); err != nil {
					return fmt.Errorf("append audit record %s: %w", r.EventID, err)
				}
			}
			last := recs[len(recs)-1]
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_heads (organization_id, seq, hash) VALUES (?, ?, ?)
				ON CONFLICT (organization_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, org, last.Seq, last.Hash); err != nil {
				return fmt.Errorf("move audit head of %s: %w", org, err)
			}
		}
		for _, e := range fresh {
			for _, st := range readModelStatements(e) {
				if _, err := tx.ExecContext(ctx, st.q, st.args...); err != nil {
					return fmt.Errorf("update read model: %w", err)
				}
			}
		}
		return nil
	})
}
