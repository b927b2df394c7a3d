package revocation

import (
	"testing"
	"time"
)

func TestIssuedAtMs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		iat, iatMs int64
		want       int64
	}{
		{"consistent iat_ms", 1_700_000_000, 1_700_000_000_123, 1_700_000_000_123},
		{"missing iat_ms fails closed to the start of the second", 1_700_000_000, 0, 1_700_000_000_000},
		{"iat_ms from another second is ignored", 1_700_000_000, 1_700_000_005_000, 1_700_000_000_000},
		{"negative iat_ms is ignored", 1_700_000_000, -1, 1_700_000_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IssuedAtMs(tt.iat, tt.iatMs); got != tt.want {
				t.Errorf("IssuedAtMs(%d, %d) = %d; want %d", tt.iat, tt.iatMs, got, tt.want)
			}
		})
	}
}

func TestRevoked(t *testing.T) {
	t.Parallel()
	const w = int64(1_700_000_000_500) // watermark: 500 ms into a second
	s := NewSet()
	s.Put(KindAgent, "agent-1", w)
	s.Put(KindCredential, "cred-1", w)
	s.Put(KindOrg, "org-1", w)
	s.Put(KindJTI, "jti-1", w)
	s.Put(KindChain, "chain-1", w)
	tok := func(mod func(*Token)) Token {
		t := Token{JTI: "jti-x", Subject: "agent-x", CredentialID: "cred-x", OrgID: "org-x", IssuedAtMs: w - 1000}
		mod(&t)
		return t
	}
	tests := []struct {
		name string
		tok  Token
		want bool
	}{
		{"unrelated token", tok(func(*Token) {}), false},
		{"revoked jti, issued later", tok(func(t *Token) { t.JTI, t.IssuedAtMs = "jti-1", w+10_000 }), true},
		{"agent: issued before", tok(func(t *Token) { t.Subject = "agent-1" }), true},
		{"agent: issued in the same millisecond", tok(func(t *Token) { t.Subject, t.IssuedAtMs = "agent-1", w }), true},
		{"agent: issued one millisecond after (reactivation)", tok(func(t *Token) { t.Subject, t.IssuedAtMs = "agent-1", w+1 }), false},
		{"agent: same second, no iat_ms fails closed", tok(func(t *Token) { t.Subject, t.IssuedAtMs = "agent-1", IssuedAtMs(w/1000, 0) }), true},
		{"agent: same second, iat_ms after the watermark", tok(func(t *Token) { t.Subject, t.IssuedAtMs = "agent-1", IssuedAtMs(w/1000, w+200) }), false},
		{"actor in the delegation chain", tok(func(t *Token) { t.Actors = []string{"agent-z", "agent-1"} }), true},
		{"actor revoked before issuance", tok(func(t *Token) { t.Actors, t.IssuedAtMs = []string{"agent-1"}, w+1 }), false},
		{"credential: issued before", tok(func(t *Token) { t.CredentialID = "cred-1" }), true},
		{"credential: issued after (rotated secret)", tok(func(t *Token) { t.CredentialID, t.IssuedAtMs = "cred-1", w+1 }), false},
		{"org: issued before", tok(func(t *Token) { t.OrgID = "org-1" }), true},
		{"org: issued after", tok(func(t *Token) { t.OrgID, t.IssuedAtMs = "org-1", w+1 }), false},
		{"empty ids never match", Token{IssuedAtMs: 0}, false},
		{"own chain revoked, issued later", tok(func(t *Token) { t.Chains, t.IssuedAtMs = []string{"chain-1"}, w+10_000 }), true},
		{"ancestor chain revoked", tok(func(t *Token) { t.Chains = []string{"chain-1", "chain-2"} }), true},
		{"unrelated chains", tok(func(t *Token) { t.Chains = []string{"chain-2", "chain-3"} }), false},
		{"parent token's jti revoked", tok(func(t *Token) { t.Parents = []Token{{JTI: "jti-9"}, {JTI: "jti-1"}} }), true},
		{"parent's credential revoked after parent issued", tok(func(t *Token) {
			t.IssuedAtMs = w + 5000
			t.Parents = []Token{{JTI: "jti-9", CredentialID: "cred-1", IssuedAtMs: w - 1}}
		}), true},
		{"parent issued after its credential's watermark", tok(func(t *Token) {
			t.Parents = []Token{{JTI: "jti-9", CredentialID: "cred-1", IssuedAtMs: w + 1}}
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Revoked(tt.tok); got != tt.want {
				t.Errorf("Revoked(%+v) = %v; want %v", tt.tok, got, tt.want)
			}
		})
	}
}

func TestWatermarkOnlyMovesForward(t *testing.T) {
	t.Parallel()
	s := NewSet()
	s.Put(KindAgent, "a", 2000)
	s.Put(KindAgent, "a", 1000) // a stale, replayed KV entry
	if v, _ := s.Get(KindAgent, "a"); v != 2000 {
		t.Errorf("Get(agent a) = %d; want 2000", v)
	}
	if !s.Revoked(Token{Subject: "a", IssuedAtMs: 1500}) {
		t.Error("Revoked(issued between the two watermarks) = false; want true")
	}
}

func TestApplyAndPrune(t *testing.T) {
	t.Parallel()
	s := NewSet()
	for _, tt := range []struct {
		key   string
		value []byte
		ok    bool
	}{
		{"jti.j1", FormatValue(1000), true},
		{"agent.a1", FormatValue(5000), true},
		{"bogus.a1", FormatValue(5000), false},
		{"agent.", FormatValue(5000), false},
		{"agent.a2", []byte("x"), false},
		{"agent.a3", []byte("-5"), false},
	} {
		if got := s.Apply(tt.key, tt.value); got != tt.ok {
			t.Errorf("Apply(%q, %q) = %v; want %v", tt.key, tt.value, got, tt.ok)
		}
	}
	if s.Len() != 2 {
		t.Fatalf("Len() = %d; want 2", s.Len())
	}
	// jti expiry: once the entry is pruned the jti no longer matches.
	if !s.Revoked(Token{JTI: "j1"}) {
		t.Error("Revoked(j1) = false before pruning; want true")
	}
	if n := s.Prune(2000); n != 1 {
		t.Errorf("Prune(2000) = %d; want 1", n)
	}
	if s.Revoked(Token{JTI: "j1"}) {
		t.Error("Revoked(j1) = true after its entry expired; want false")
	}
	s.Apply("agent.a1", nil)
	if s.Len() != 0 {
		t.Errorf("Len() after delete = %d; want 0", s.Len())
	}
	snap := s.Snapshot()
	if len(snap) != 0 {
		t.Errorf("Snapshot() = %v; want empty", snap)
	}
	if s.Ready() {
		t.Error("Ready() = true before MarkReady")
	}
}

func TestValidKeyPart(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]bool{"0195f3a2-7b1c-7e3d-9a4b-123456789abc": true, "": false, "a.b": false, "a*": false, "a b": false} {
		if got := ValidKeyPart(k); got != want {
			t.Errorf("ValidKeyPart(%q) = %v; want %v", k, got, want)
		}
	}
}

func BenchmarkRevoked(b *testing.B) {
	s := NewSet()
	for i := range 10_000 {
		s.Put(KindJTI, "jti-"+time.Duration(i).String(), int64(i))
		s.Put(KindAgent, "agent-"+time.Duration(i).String(), int64(i))
	}
	tok := Token{JTI: "0195f3a2-7b1c-7e3d-9a4b-123456789abc", Subject: "0195f3a2-7b1c-7e3d-9a4b-123456789abd",
		CredentialID: "0195f3a2-7b1c-7e3d-9a4b-123456789abe", OrgID: "0195f3a2-7b1c-7e3d-9a4b-123456789abf", IssuedAtMs: 1}
	b.ReportAllocs()
	for b.Loop() {
		if s.Revoked(tok) {
			b.Fatal("revoked")
		}
	}
}

func TestHeartbeatKeysAreNotEntries(t *testing.T) {
	s := NewSet()
	key := HeartbeatKey("token-7f9.example.com")
	if key != "heartbeat.token-7f9_example_com" {
		t.Fatalf("HeartbeatKey = %q", key)
	}
	if !IsHeartbeat(key) || IsHeartbeat("jti.x") {
		t.Fatal("IsHeartbeat misclassifies")
	}
	if !s.Apply(key, []byte("1700000000000")) {
		t.Fatal("Apply(heartbeat) = false; want true (ignored, not malformed)")
	}
	if s.Len() != 0 {
		t.Fatalf("Len after heartbeat = %d; want 0", s.Len())
	}
}

// A heartbeat vouches only for its own replica: the copy is as old as the
// least recently heard replica, until a silent one is forgotten.
func TestFreshnessIsTheOldestReplica(t *testing.T) {
	const s = int64(time.Second)
	f := NewFreshness()
	if f.HeardNanos() != 0 {
		t.Fatal("fresh tracker heard something")
	}
	f.Loaded(1 * s)
	if got := f.HeardNanos(); got != 1*s {
		t.Fatalf("after load = %d; want 1s", got)
	}
	a, b := HeartbeatKey("a"), HeartbeatKey("b")
	f.Heard(a, false, 2*s)
	f.Heard(b, false, 3*s)
	f.Heard(a, false, 4*s)
	f.Heard("jti.x", false, 5*s) // an entry proves nothing about b
	if got := f.HeardNanos(); got != 3*s {
		t.Fatalf("with b silent since 3s = %d; want 3s", got)
	}
	f.Tick(3*s + int64(ForgetReplicaAfter))
	if got := f.HeardNanos(); got != 3*s {
		t.Fatalf("b at the forget bound = %d; want 3s", got)
	}
	f.Tick(4*s + int64(ForgetReplicaAfter))
	if got := f.HeardNanos(); got != 4*s {
		t.Fatalf("b forgotten = %d; want a's 4s", got)
	}
	f.Heard(a, false, 39*s)
	f.Heard(b, false, 40*s)
	f.Heard(b, true, 41*s) // b shut down and deleted its key
	if got := f.HeardNanos(); got != 39*s {
		t.Fatalf("b deleted = %d; want a's 39s", got)
	}
	f.Heard(a, true, 42*s)
	if got := f.HeardNanos(); got != 42*s {
		t.Fatalf("no replica left = %d; want the last update, 42s", got)
	}
}
