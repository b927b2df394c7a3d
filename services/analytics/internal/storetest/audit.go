package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// FullStore is every store interface the SQL store implements.
type FullStore interface {
	counting.Store
	audit.Store
	compliance.Store
}

// Exec runs raw SQL ('?' placeholders) against the store's database on a
// connection of its own, to tamper with it the way an attacker with
// database access would.
type Exec func(t *testing.T, query string, args ...any)

// AuditDB is one empty database of a backend under test.
type AuditDB struct {
	// Exec tampers with the database directly.
	Exec Exec
	// Open applies every migration (idempotent) and returns a store on the
	// database whose appends are keyed by keys.
	Open func(keys *audit.Keyring) FullStore
}

// NewAuditDB returns an empty database. With legacy true it holds only
// the schema the code before the keyed chain migrated (migrations up to
// LegacyMigration), until Open migrates the rest.
type NewAuditDB func(t *testing.T, legacy bool) AuditDB

// LegacyMigration is the last migration of the unkeyed chain's schema.
const LegacyMigration = "0002"

// RunAudit runs the audit chain, retention and read-model suite; newDB
// must return an empty database each call. The attacks (AttackRewrite,
// AttackKeyMismatch, AttackUpgradedRewrite) are run by tests of their own
// name on each backend.
func RunAudit(t *testing.T, newDB NewAuditDB) {
	newStore := func(t *testing.T) (FullStore, Exec) {
		db := newDB(t, false)
		return db.Open(Keys), db.Exec
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s FullStore, exec Exec)
	}{
		{"ChainAcrossBatchesAndRedelivery", testChain},
		{"TamperedFieldIsMACMismatch", testTamperField},
		{"TamperedRecordRehashedIsMACMismatch", testTamperLink},
		{"DeletedMiddleRowIsGap", testDeleteMiddle},
		{"DeletedLastRowIsTruncatedHead", testDeleteLast},
		{"ConcurrentWritersNeverFork", testConcurrentChain},
		{"RetentionCheckpointKeepsVerifyValid", testRetention},
		{"ForgedCheckpointRejected", testForgedCheckpoint},
		{"ListFiltersAndTenancy", testList},
		{"ReadModelLastWriterWins", testReadModel},
		{"ActivityAndAgentUsage", testActivity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, exec := newStore(t)
			tc.fn(t, s, exec)
		})
	}
}

var key = []byte("0123456789abcdef0123456789abcdef")

// Keys is the keyring of the suite's stores and services.
var Keys = mustKeyring(key)

func mustKeyring(current []byte, previous ...[]byte) *audit.Keyring {
	r, err := audit.NewKeyring(current, previous...)
	if err != nil {
		panic(err)
	}
	return r
}

func svc(s FullStore) *audit.Service { return audit.NewService(s, Keys, nil) }

// auditEvs returns events i in [from, to) of org, one minute apart, with
// alternating agents and actions.
func auditEvs(orgID string, from, to int) []counting.Event {
	var out []counting.Event
	base := now.Add(-2 * time.Hour)
	for i := from; i < to; i++ {
		at := base.Add(time.Duration(i) * time.Minute).Add(123456789 * time.Nanosecond)
		action := "token.issued"
		if i%3 == 0 {
			action = "auth.failed"
		}
		out = append(out, counting.Event{
			ID: fmt.Sprintf("%s-ev-%05d", orgID[len(orgID)-4:], i), OrgID: orgID, Date: at.Format(counting.DateLayout), Hour: at.Hour(),
			Time: at, Metric: action, Subject: fmt.Sprintf("agent-%d", i%2), Source: "token",
			Data: []byte(fmt.Sprintf(`{ "n": %d, "jti": "j-%d" }`, i, i)),
		})
	}
	return out
}

func verify(t *testing.T, s FullStore, orgID string) audit.Verification {
	t.Helper()
	v, err := svc(s).Verify(context.Background(), orgID)
	if err != nil {
		t.Fatalf("Verify(%s) = %v", orgID, err)
	}
	return v
}

func wantValid(t *testing.T, v audit.Verification, checked, first, last int64) {
	t.Helper()
	if !v.Valid || v.Checked != checked || v.FirstSeq != first || v.LastSeq != last || v.BrokenAt != nil {
		t.Errorf("Verify = %+v (brokenAt %+v); want valid, checked %d, seq %d..%d", v, v.BrokenAt, checked, first, last)
	}
}

func wantBroken(t *testing.T, v audit.Verification, seq int64, reason string) {
	t.Helper()
	if v.Valid || v.BrokenAt == nil || v.BrokenAt.Seq != seq || v.BrokenAt.Reason != reason {
		t.Errorf("Verify = %+v (brokenAt %+v); want broken at seq %d: %s", v, v.BrokenAt, seq, reason)
	}
}

// chainOf reads the whole chain in seq order and checks it is contiguous
// and linked, with every event at most once.
func chainOf(t *testing.T, s FullStore, orgID string) []audit.Record {
	t.Helper()
	recs, err := s.Range(context.Background(), orgID, 0, 1<<62, 100000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	prev := ""
	for i, r := range recs {
		if r.Seq != int64(i+1) || r.PrevHash != prev || seen[r.EventID] || r.ComputeMAC(Keys.Current()) != r.Hash {
			t.Fatalf("Got(record %d) = seq %d prev %q event %s; want seq %d prev %q, event once, hash ok", i, r.Seq, r.PrevHash, r.EventID, i+1, prev)
		}
		seen[r.EventID] = true
		prev = r.Hash
	}
	return recs
}

func testChain(t *testing.T, s FullStore, _ Exec) {
	for i := 0; i < 100; i += 10 {
		apply(t, s, auditEvs(org, i, i+15)) // overlaps the next batch: redelivery
	}
	apply(t, s, auditEvs(org, 0, 50)) // a full redelivery
	apply(t, s, auditEvs(other, 0, 5))
	wantValid(t, verify(t, s, org), 105, 1, 105)
	wantValid(t, verify(t, s, other), 5, 1, 5)
	recs := chainOf(t, s, org)
	if len(recs) != 105 {
		t.Fatalf("Got(len chain) = %d; want 105", len(recs))
	}
	r := recs[0]
	if r.Action != "auth.failed" || r.Outcome != audit.OutcomeFailure || r.AgentID != "agent-0" || r.Source != "token" ||
		r.Metadata != `{"n":0,"jti":"j-0"}` || r.PrevHash != "" || !r.Timestamp.Equal(audit.NormalizeTime(auditEvs(org, 0, 1)[0].Time)) {
		t.Errorf("Got(first record) = %+v; want the event's fields, compact metadata, µs time", r)
	}
	if recs[1].Outcome != audit.OutcomeSuccess {
		t.Errorf("Got(outcome of token.issued) = %q; want success", recs[1].Outcome)
	}
	// The counters saw each event once too.
	wantCounts(t, s, org, "auth.failed", "2026-05-01", "2026-05-31", map[string]int64{"2026-05-10": 35})
	// An empty chain verifies.
	wantValid(t, verify(t, s, "nobody"), 0, 0, 0)
}

func testTamperField(t *testing.T, s FullStore, exec Exec) {
	apply(t, s, auditEvs(org, 0, 20))
	apply(t, s, auditEvs(other, 0, 5))
	// Record 7 is event 6, an auth.failed: its outcome is "failure".
	exec(t, `UPDATE audit_events SET outcome = 'success' WHERE organization_id = ? AND seq = 7`, org)
	wantBroken(t, verify(t, s, org), 7, audit.ReasonMACMismatch)
	wantValid(t, verify(t, s, other), 5, 1, 5)
	exec(t, `UPDATE audit_events SET outcome = 'failure' WHERE organization_id = ? AND seq = 7`, org)
	wantValid(t, verify(t, s, org), 20, 1, 20)
	exec(t, `UPDATE audit_events SET metadata = '{"n":13,"jti":"forged"}' WHERE organization_id = ? AND seq = 14`, org)
	wantBroken(t, verify(t, s, org), 14, audit.ReasonMACMismatch)
}

func testTamperLink(t *testing.T, s FullStore, exec Exec) {
	apply(t, s, auditEvs(org, 0, 20))
	// The attacker rewrites record 7 and recomputes its hash the unkeyed
	// way: without the key its chain value cannot be right.
	recs := chainOf(t, s, org)
	r := recs[6]
	r.AgentID = "someone-else"
	exec(t, `UPDATE audit_events SET agent_id = ?, hash = ? WHERE organization_id = ? AND seq = 7`, r.AgentID, r.ComputeHash(), org)
	wantBroken(t, verify(t, s, org), 7, audit.ReasonMACMismatch)
	// Restoring the record but not its value leaves the next link broken.
	exec(t, `UPDATE audit_events SET agent_id = ? WHERE organization_id = ? AND seq = 7`, recs[6].AgentID, org)
	exec(t, `UPDATE audit_events SET hash = ? WHERE organization_id = ? AND seq = 7`, recs[6].Hash, org)
	exec(t, `UPDATE audit_events SET prev_hash = ? WHERE organization_id = ? AND seq = 8`, r.ComputeHash(), org)
	wantBroken(t, verify(t, s, org), 8, audit.ReasonBrokenLink)
}

func testDeleteMiddle(t *testing.T, s FullStore, exec Exec) {
	apply(t, s, auditEvs(org, 0, 20))
	exec(t, `DELETE FROM audit_events WHERE organization_id = ? AND seq = 9`, org)
	wantBroken(t, verify(t, s, org), 9, audit.ReasonGap)
}

func testDeleteLast(t *testing.T, s FullStore, exec Exec) {
	apply(t, s, auditEvs(org, 0, 20))
	exec(t, `DELETE FROM audit_events WHERE organization_id = ? AND seq >= 19`, org)
	wantBroken(t, verify(t, s, org), 19, audit.ReasonTruncated)
}

// testConcurrentChain applies overlapping batches of one organisation from
// four goroutines: the chain never forks and holds every event once.
func testConcurrentChain(t *testing.T, s FullStore, _ Exec) {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i += 10 {
				from := i
				if g%2 == 1 {
					from = 190 - i
				}
				b := auditEvs(org, from, from+15+g)
				b = append(b, auditEvs(other, from/2, from/2+5)...)
				if err := s.Apply(context.Background(), b, now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Apply = %v; want nil", err)
	}
	recs := chainOf(t, s, org)
	if len(recs) != 208 { // events 0..207 (goroutine 3's last batch ends at 190+18)
		t.Errorf("Got(len chain) = %d; want 208", len(recs))
	}
	wantValid(t, verify(t, s, org), int64(len(recs)), 1, int64(len(recs)))
	if v := verify(t, s, other); !v.Valid {
		t.Errorf("Verify(other) = %+v; want valid", v)
	}
}

func testRetention(t *testing.T, s FullStore, _ Exec) {
	ctx := context.Background()
	old := auditEvs(org, 0, 10)
	for i := range old {
		old[i].Time = time.Now().UTC().AddDate(0, 0, -100).Add(time.Duration(i) * time.Second)
		old[i].Date = old[i].Time.Format(counting.DateLayout)
	}
	apply(t, s, old)
	recent := auditEvs(org, 10, 25)
	for i := range recent {
		recent[i].Time = time.Now().UTC().Add(-time.Hour).Add(time.Duration(i) * time.Second)
	}
	apply(t, s, recent)
	a := svc(s)
	n, err := a.Retain(ctx, org, 90*24*time.Hour)
	if err != nil || n != 10 {
		t.Fatalf("Retain = %d, %v; want 10, nil", n, err)
	}
	v := verify(t, s, org)
	wantValid(t, v, 15, 11, 25)
	if v.Checkpoint == nil || v.Checkpoint.Seq != 10 || v.Checkpoint.KeyID != Keys.Current().ID {
		t.Errorf("Got(checkpoint) = %+v; want seq 10", v.Checkpoint)
	}
	if n, err := a.Retain(ctx, org, 90*24*time.Hour); err != nil || n != 0 {
		t.Errorf("Retain again = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.Get(ctx, org, old[0].ID); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Get(purged) = %v; want ErrNotFound", err)
	}
	// The chain keeps growing from the head, past the checkpoint.
	apply(t, s, auditEvs(org, 25, 30))
	wantValid(t, verify(t, s, org), 20, 11, 30)
	// Unlimited retention deletes nothing.
	if n, err := a.Retain(ctx, org, 0); err != nil || n != 0 {
		t.Errorf("Retain(0) = %d, %v; want 0, nil", n, err)
	}
	// A checkpoint signed with another key is rejected.
	other := audit.NewService(s, mustKeyring([]byte("another key, also 32 bytes long!")), nil)
	if v, err := other.Verify(ctx, org); err != nil || v.Valid || v.BrokenAt.Reason != audit.ReasonInvalidCheckpoint {
		t.Errorf("Verify(other key) = %+v, %v; want invalid checkpoint", v, err)
	}
}

func testForgedCheckpoint(t *testing.T, s FullStore, exec Exec) {
	apply(t, s, auditEvs(org, 0, 20))
	recs := chainOf(t, s, org)
	// An attacker deletes records 1..12 and plants a checkpoint without the
	// key.
	exec(t, `DELETE FROM audit_events WHERE organization_id = ? AND seq <= 12`, org)
	guessed := audit.Key{ID: Keys.Current().ID, Secret: []byte("guessed-key-guessed-key-guessed!")}
	exec(t, `INSERT INTO audit_checkpoints (organization_id, seq, hash, created_at, key_id, signature) VALUES (?, 12, ?, ?, ?, ?)`,
		org, recs[11].Hash, now, guessed.ID, audit.SignCheckpoint(guessed, org, 12, recs[11].Hash))
	wantBroken(t, verify(t, s, org), 12, audit.ReasonInvalidCheckpoint)
	// So is one in the format of before the upgrade, even when signed with
	// the real key: only the one-time upgrade reads those.
	exec(t, `UPDATE audit_checkpoints SET key_id = '', signature = ? WHERE organization_id = ? AND seq = 12`,
		audit.SignLegacyCheckpoint(key, org, 12, recs[11].Hash), org)
	wantBroken(t, verify(t, s, org), 12, audit.ReasonInvalidCheckpoint)
	// Retention refuses to run on a chain that does not verify.
	if n, err := svc(s).Retain(context.Background(), org, time.Hour); err == nil || n != 0 {
		t.Errorf("Retain(broken chain) = %d, %v; want 0 and an error", n, err)
	}
}

func testList(t *testing.T, s FullStore, _ Exec) {
	ctx := context.Background()
	apply(t, s, auditEvs(org, 0, 30))
	apply(t, s, auditEvs(other, 0, 4))
	evs := auditEvs(org, 0, 30)
	tests := []struct {
		name  string
		f     audit.Filter
		total int64
	}{
		{"all", audit.Filter{}, 30},
		{"agent", audit.Filter{AgentID: "agent-1"}, 15},
		{"action", audit.Filter{Action: "auth.failed"}, 10},
		{"outcome", audit.Filter{Outcome: "success"}, 20},
		{"from", audit.Filter{From: evs[20].Time}, 10},
		{"to", audit.Filter{To: evs[4].Time}, 5},
		{"range and agent", audit.Filter{From: evs[10].Time, To: evs[19].Time, AgentID: "agent-0"}, 5},
		{"nothing", audit.Filter{Action: "org.deleted"}, 0},
	}
	for _, tc := range tests {
		recs, total, err := s.List(ctx, org, tc.f, 0, 100)
		if err != nil || total != tc.total || int64(len(recs)) != tc.total {
			t.Errorf("List(%s) = %d records, total %d, %v; want %d", tc.name, len(recs), total, err, tc.total)
		}
	}
	page, total, err := s.List(ctx, org, audit.Filter{}, 5, 5)
	if err != nil || total != 30 || len(page) != 5 || page[0].Seq != 25 || page[4].Seq != 21 {
		t.Errorf("List(page 2 of 5) = %v, %d, %v; want seq 25..21 newest first", page, total, err)
	}
	if _, err := s.Get(ctx, other, evs[0].ID); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Get(other org's event) = %v; want ErrNotFound", err)
	}
	if r, err := s.Get(ctx, org, evs[3].ID); err != nil || r.Seq != 4 {
		t.Errorf("Get(%s) = %+v, %v; want seq 4", evs[3].ID, r, err)
	}
}

func testReadModel(t *testing.T, s FullStore, _ Exec) {
	ctx := context.Background()
	t0 := now.Add(-time.Hour)
	ev := func(id string, at time.Time, set func(e *counting.Event)) counting.Event {
		e := counting.Event{ID: id, OrgID: org, Date: at.Format(counting.DateLayout), Hour: at.Hour(), Time: at, Metric: "x", Data: json.RawMessage(`{}`)}
		set(&e)
		return e
	}
	exp := now.Add(24 * time.Hour)
	apply(t, s, []counting.Event{
		// Out of order: the suspension (later) arrives before the creation.
		ev("a2", t0.Add(2*time.Minute), func(e *counting.Event) {
			e.Agent = &counting.AgentUpdate{AgentID: "b", Status: "suspended", At: e.Time}
		}),
		ev("d1", t0.Add(time.Minute), func(e *counting.Event) {
			e.DID = &counting.DIDUpdate{AgentID: "a", DID: "did:web:x:agents:a", At: e.Time}
		}),
		ev("c1", t0, func(e *counting.Event) {
			e.Credential = &counting.CredentialUpdate{CredentialID: "c1", AgentID: "a", Status: "active", ExpiresAt: &exp, Issued: true, At: e.Time}
		}),
	})
	apply(t, s, []counting.Event{
		ev("a1", t0, func(e *counting.Event) {
			e.Agent = &counting.AgentUpdate{AgentID: "a", Email: "a@x.io", AgentType: "custom", Status: "active", Scopes: []string{"agents:read", "tokens:read"}, Created: true, At: e.Time}
		}),
		ev("a3", t0, func(e *counting.Event) {
			e.Agent = &counting.AgentUpdate{AgentID: "b", Email: "b@x.io", AgentType: "custom", Status: "active", Created: true, At: e.Time}
		}),
		ev("c2", t0.Add(3*time.Minute), func(e *counting.Event) {
			e.Credential = &counting.CredentialUpdate{CredentialID: "c1", AgentID: "a", Status: "revoked", At: e.Time}
		}),
	})
	agents, err := s.Agents(ctx, org)
	if err != nil || len(agents) != 2 {
		t.Fatalf("Agents = %+v, %v; want 2", agents, err)
	}
	a, b := agents[0], agents[1]
	if a.AgentID != "a" || a.Email != "a@x.io" || a.Status != "active" || a.DID != "did:web:x:agents:a" || len(a.Scopes) != 2 ||
		!a.CreatedAt.Equal(t0) || !a.DIDAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("Got(agent a) = %+v; want active with DID and scopes", a)
	}
	if b.Status != "suspended" || b.Email != "b@x.io" || !b.CreatedAt.Equal(t0) {
		t.Errorf("Got(agent b) = %+v; want suspended (later event wins), email kept", b)
	}
	creds, err := s.Credentials(ctx, org)
	if err != nil || len(creds) != 1 || creds[0].Status != "revoked" || !creds[0].IssuedAt.Equal(t0) || !creds[0].ExpiresAt.Equal(exp) {
		t.Errorf("Credentials = %+v, %v; want c1 revoked, issued at t0, expiry kept", creds, err)
	}
	if other, err := s.Agents(ctx, "nobody"); err != nil || len(other) != 0 {
		t.Errorf("Agents(other org) = %+v, %v; want none", other, err)
	}
}

func testActivity(t *testing.T, s FullStore, _ Exec) {
	ctx := context.Background()
	evs := auditEvs(org, 0, 130) // two hours and ten minutes from 06:00:00.123
	apply(t, s, evs)
	apply(t, s, evs[:50])
	hours, err := s.Activity(ctx, org, "2026-05-10", "2026-05-10")
	want := []counting.HourCount{{Date: "2026-05-10", Hour: 6, Count: 60}, {Date: "2026-05-10", Hour: 7, Count: 60}, {Date: "2026-05-10", Hour: 8, Count: 10}}
	if err != nil || fmt.Sprint(hours) != fmt.Sprint(want) {
		t.Errorf("Activity = %v, %v; want %v", hours, err, want)
	}
	usage, err := s.AgentUsage(ctx, org, "2026-05-01", "2026-05-31")
	if err != nil || len(usage) != 2 {
		t.Fatalf("AgentUsage = %v, %v; want two agents", usage, err)
	}
	// token.issued are the i not divisible by 3: 86 of 0..129; agent-0 has
	// the even ones.
	var tokens0, tokens1 int64
	var last0 time.Time
	for i, e := range evs {
		if i%3 == 0 {
			continue
		}
		if i%2 == 0 {
			tokens0++
			last0 = e.Time
		} else {
			tokens1++
		}
	}
	if usage[0].AgentID != "agent-0" || usage[0].Tokens != tokens0 || usage[1].Tokens != tokens1 || !usage[0].LastActiveAt.Equal(last0.Truncate(time.Microsecond)) {
		t.Errorf("AgentUsage = %+v; want agent-0 %d (last %s), agent-1 %d", usage, tokens0, last0, tokens1)
	}
}
