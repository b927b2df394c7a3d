package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"
)

// TestHashMatchesDocumentedEncoding recomputes a record's chain value, its
// unkeyed version 1 hash and the signatures the way an auditor would from
// the package documentation.
func TestHashMatchesDocumentedEncoding(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	ring, err := NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	k := ring.Current()
	idSum := sha256.Sum256(append([]byte("agentidp-audit-key-id"), secret...))
	if want := hex.EncodeToString(idSum[:8]); k.ID != want {
		t.Errorf("Got(key id) = %s; want %s", k.ID, want)
	}
	at := time.Date(2026, 5, 10, 8, 0, 0, 123456789, time.FixedZone("x", 3600))
	recs := Append(k, "org-1", 41, "abc", []Entry{{EventID: "e1", AgentID: "a1", Action: "auth.failed", Timestamp: at, Source: "token", Data: []byte(`{ "reason": "bad" }`)}})
	r := recs[0]
	enc := func(fields ...string) []byte {
		var buf []byte
		for _, f := range fields {
			buf = binary.BigEndian.AppendUint64(buf, uint64(len(f)))
			buf = append(buf, f...)
		}
		return buf
	}
	recordFields := []string{"org-1", "42", "e1", "2026-05-10T07:00:00.123456Z", "auth.failed", "failure", "a1", "token", `{"reason":"bad"}`, "abc"}
	m := hmac.New(sha256.New, secret)
	m.Write(enc(append([]string{"agentidp-audit-record-v2", k.ID}, recordFields...)...))
	if want := hex.EncodeToString(m.Sum(nil)); r.Hash != want || r.ComputeMAC(k) != want {
		t.Errorf("Got(chain value) = %s; want %s", r.Hash, want)
	}
	sum := sha256.Sum256(enc(recordFields...))
	if want := hex.EncodeToString(sum[:]); r.ComputeHash() != want {
		t.Errorf("Got(version 1 hash) = %s; want %s", r.ComputeHash(), want)
	}
	if r.Seq != 42 || r.PrevHash != "abc" || r.Outcome != OutcomeFailure || r.Version != VersionKeyed || r.KeyID != k.ID {
		t.Errorf("Got(record) = %+v; want seq 42 after abc, failure, version 2 under %s", r, k.ID)
	}
	for domain, got := range map[string]string{
		"agentidp-audit-checkpoint-v2": SignCheckpoint(k, "org-1", 42, r.Hash),
		"agentidp-audit-anchor-v2":     SignAnchor(k, "org-1", 42, r.Hash),
	} {
		m := hmac.New(sha256.New, secret)
		m.Write(enc(domain, k.ID, "org-1", "42", r.Hash))
		if want := hex.EncodeToString(m.Sum(nil)); got != want {
			t.Errorf("Got(%s signature) = %s; want %s", domain, got, want)
		}
	}
	c := Checkpoint{OrganizationID: "org-1", Seq: 42, Hash: r.Hash, KeyID: k.ID}
	c.Signature = SignCheckpoint(k, c.OrganizationID, c.Seq, c.Hash)
	if !ValidCheckpoint(ring, c) {
		t.Error("ValidCheckpoint(signed) = false; want true")
	}
	c.Seq = 43
	if ValidCheckpoint(ring, c) {
		t.Error("ValidCheckpoint(altered seq) = true; want false")
	}
	legacy := Checkpoint{OrganizationID: "org-1", Seq: 42, Hash: r.Hash, Signature: SignLegacyCheckpoint(secret, "org-1", 42, r.Hash)}
	if ValidCheckpoint(ring, legacy) {
		t.Error("ValidCheckpoint(no key id) = true; want false: only the upgrade reads legacy checkpoints")
	}
}

// TestKeyringRotation: records written under a previous key still verify,
// new ones use the current key, and an unknown id is no key.
func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := []byte("old key, thirty-two bytes long!!"), []byte("new key, thirty-two bytes long!!")
	before, _ := NewKeyring(oldKey)
	after, err := NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.Current().ID == before.Current().ID || after.Current().ID != KeyID(newKey) {
		t.Fatalf("Got(current id) = %s; want %s", after.Current().ID, KeyID(newKey))
	}
	if k, ok := after.Lookup(before.Current().ID); !ok || string(k.Secret) != string(oldKey) {
		t.Errorf("Lookup(previous id) = %v; want the previous key", ok)
	}
	if _, ok := after.Lookup(""); ok {
		t.Error(`Lookup("") = true; want false`)
	}
	if _, err := NewKeyring([]byte("short")); err == nil {
		t.Error("NewKeyring(short key) = nil; want an error")
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
