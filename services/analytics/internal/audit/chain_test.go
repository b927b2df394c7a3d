package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"
)

// TestHashMatchesDocumentedEncoding recomputes a record hash the way an
// auditor would from the package documentation.
func TestHashMatchesDocumentedEncoding(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 10, 8, 0, 0, 123456789, time.FixedZone("x", 3600))
	recs := Append("org-1", 41, "abc", []Entry{{EventID: "e1", AgentID: "a1", Action: "auth.failed", Timestamp: at, Source: "token", Data: []byte(`{ "reason": "bad" }`)}})
	r := recs[0]
	var buf []byte
	for _, f := range []string{"org-1", "42", "e1", "2026-05-10T07:00:00.123456Z", "auth.failed", "failure", "a1", "token", `{"reason":"bad"}`, "abc"} {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	sum := sha256.Sum256(buf)
	if want := hex.EncodeToString(sum[:]); r.Hash != want || r.ComputeHash() != want {
		t.Errorf("Got(hash) = %s; want %s", r.Hash, want)
	}
	if r.Seq != 42 || r.PrevHash != "abc" || r.Outcome != OutcomeFailure {
		t.Errorf("Got(record) = %+v; want seq 42 after abc, failure", r)
	}
	c := Checkpoint{OrganizationID: "org-1", Seq: 42, Hash: r.Hash}
	key := []byte("0123456789abcdef0123456789abcdef")
	c.Signature = SignCheckpoint(key, c.OrganizationID, c.Seq, c.Hash)
	if !ValidCheckpoint(key, c) {
		t.Error("ValidCheckpoint(signed) = false; want true")
	}
	c.Seq = 43
	if ValidCheckpoint(key, c) {
		t.Error("ValidCheckpoint(altered seq) = true; want false")
	}
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for action, want := range map[string]string{"auth.failed": "failure", "webhook.delivery.failed": "failure", "token.issued": "success", "agent.created": "success"} {
		if got := OutcomeOf(action); got != want {
			t.Errorf("OutcomeOf(%q) = %q; want %q", action, got, want)
		}
	}
}
