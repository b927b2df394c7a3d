package analytics_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/analytics"
	"github.com/google/uuid"
)

// TestAttackAuditTruncateNewestRecords: a database writer deletes the
// newest records of a chain and lowers the stored head, which the keyed
// chain alone cannot tell from a shorter chain. The head recorded outside
// the database (NATS KV) catches it, and keeps catching it after the chain
// has grown again past the cut.
func TestAttackAuditTruncateNewestRecords(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	svc, _ := h.start(t, analytics.DefaultConfig())
	org := uuid.NewString()
	auditor := &authn.Identity{Subject: "auditor", OrgID: org, Scopes: []string{"audit:read"}}
	t0 := time.Now().UTC().Add(-time.Hour)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			e := event(t, events.TokenIssued, org, "agent", t0.Add(time.Duration(i)*time.Second), events.TokenIssuedData{JTI: uuid.NewString()})
			publish(t, h.js, e, e.ID)
		}
	}
	type verification struct {
		Valid      bool   `json:"valid"`
		LastSeq    int64  `json:"lastSeq"`
		HeadLedger string `json:"headLedger"`
		BrokenAt   *struct {
			Seq    int64  `json:"seq"`
			Reason string `json:"reason"`
		} `json:"brokenAt"`
	}
	verify := func() verification {
		code, _, raw := h.call(t, svc, auditor, "/api/v1/audit/verify")
		if code != http.StatusOK {
			t.Fatalf("GET /audit/verify = %d %s; want 200", code, raw)
		}
		return decode[verification](t, raw)
	}
	dbHead := func() int64 {
		var seq int64
		_ = h.deps.DB.QueryRowContext(context.Background(), `SELECT seq FROM audit_heads WHERE organization_id = ?`, org).Scan(&seq)
		return seq
	}
	send(0, 6)
	// The ledger is written after each batch commits: wait until it holds 6.
	waitFor(t, 10*time.Second, func() bool {
		v := verify()
		return v.Valid && v.LastSeq == 6 && v.HeadLedger == "checked" && h.pending(t) == 0
	})

	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := h.deps.DB.ExecContext(context.Background(), q, args...); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
	exec(`DELETE FROM audit_events WHERE organization_id = ? AND seq > 4`, org)
	exec(`UPDATE audit_heads SET seq = 4, hash = (SELECT hash FROM audit_events WHERE organization_id = ? AND seq = 4) WHERE organization_id = ?`, org, org)
	if v := verify(); v.Valid || v.BrokenAt == nil || v.BrokenAt.Seq != 5 || v.BrokenAt.Reason != "truncated head" {
		t.Errorf("Verify(after truncation) = %+v %+v; want broken at 5: truncated head", v, v.BrokenAt)
	}

	// New events refill seq 5.. with other records; the ledger does not
	// move past the evidence, and verify names the replaced record.
	send(6, 9)
	waitFor(t, 10*time.Second, func() bool { return dbHead() == 7 && h.pending(t) == 0 })
	if v := verify(); v.Valid || v.BrokenAt == nil || v.BrokenAt.Seq != 6 || v.BrokenAt.Reason != "ledger mismatch" {
		t.Errorf("Verify(after the chain grew again) = %+v %+v; want broken at 6: ledger mismatch", v, v.BrokenAt)
	}
}
