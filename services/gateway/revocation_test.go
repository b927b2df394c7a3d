package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// putRevocation writes an entry the way the token service mirrors one.
func (e *env) putRevocation(t testing.TB, kind revocation.Kind, key string, notBefore int64) {
	t.Helper()
	kv, err := e.gw.revocations.KV().Status(context.Background())
	if err != nil || kv.Bucket() != revocation.Bucket {
		t.Fatalf("revocations bucket: %v", err)
	}
	if _, err := e.gw.revocations.KV().Put(context.Background(), revocation.Key(kind, key), revocation.FormatValue(notBefore)); err != nil {
		t.Fatal(err)
	}
}

// waitRejected polls until the gateway rejects tok as revoked.
func (e *env) waitRejected(t testing.TB, tok string) response {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		r := e.do(t, "GET", "/api/v1/agents", tok, nil)
		if r.status == http.StatusUnauthorized {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("Got(status) = %d %s within 1s of the revocation; want 401", r.status, r.body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRevokedTokensAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 100000)
	now := time.Now()
	watermark := now.UnixMilli()
	tok := func(mod func(map[string]any)) string {
		c := claims("org-1", "agents:read")
		c["credential_id"] = "cred-1"
		c["iat"] = now.Unix()
		c["iat_ms"] = watermark - 1
		mod(c)
		return e.issuer.token(t, c)
	}
	tests := []struct {
		name    string
		kind    revocation.Kind
		key     string
		tok     string
		revoked bool
	}{
		{"jti", revocation.KindJTI, "jti-revoked", tok(func(c map[string]any) { c["jti"] = "jti-revoked" }), true},
		{"agent watermark", revocation.KindAgent, "agent-2", tok(func(c map[string]any) { c["sub"] = "agent-2" }), true},
		{"agent watermark, same millisecond", revocation.KindAgent, "agent-3", tok(func(c map[string]any) { c["sub"], c["iat_ms"] = "agent-3", watermark }), true},
		{"agent watermark, issued after (reactivated)", revocation.KindAgent, "agent-4", tok(func(c map[string]any) { c["sub"], c["iat_ms"] = "agent-4", watermark+1 }), false},
		{"credential watermark", revocation.KindCredential, "cred-5", tok(func(c map[string]any) { c["credential_id"] = "cred-5" }), true},
		{"delegation actor", revocation.KindAgent, "agent-7", tok(func(c map[string]any) { c["sub"], c["act"] = "agent-8", map[string]any{"sub": "agent-7"} }), true},
		// Last: it revokes every token above.
		{"org watermark", revocation.KindOrg, "org-1", tok(func(c map[string]any) { c["sub"] = "agent-6" }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Cache the verified token first: the check must run on cache hits.
			if tt.kind != revocation.KindOrg {
				if r := e.do(t, "GET", "/api/v1/agents", tt.tok, nil); r.status != http.StatusOK {
					t.Fatalf("Got(before revocation) = %d %s; want 200", r.status, r.body)
				}
			}
			e.putRevocation(t, tt.kind, tt.key, watermark)
			if !tt.revoked {
				time.Sleep(50 * time.Millisecond)
				if r := e.do(t, "GET", "/api/v1/agents", tt.tok, nil); r.status != http.StatusOK {
					t.Errorf("Got(token issued after the watermark) = %d %s; want 200", r.status, r.body)
				}
				return
			}
			r := e.waitRejected(t, tt.tok)
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token", error_description="token revoked"` {
				t.Errorf("Got(WWW-Authenticate) = %q; want the revoked challenge", got)
			}
			if !strings.Contains(r.body, "UNAUTHORIZED") {
				t.Errorf("Got(body) = %s; want a problem with code UNAUTHORIZED", r.body)
			}
		})
	}
	if got := testutil.ToFloat64(e.gw.metrics.denials.WithLabelValues(denyRevoked)); got < 6 {
		t.Errorf("Got(agentidp_gateway_denials_total{reason=revoked}) = %v; want >= 6", got)
	}
}

// TestFreshWatcherLoadsExistingRevocations: a gateway started after a
// revocation knows it from the bucket's initial load (the e2e test covers
// a restarted gateway process).
func TestFreshWatcherLoadsExistingRevocations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 100000)
	c := claims("org-1", "agents:read")
	c["jti"] = "jti-gone"
	tok := e.issuer.token(t, c)
	e.putRevocation(t, revocation.KindJTI, "jti-gone", time.Now().UnixMilli())
	e.waitRejected(t, tok)

	// A second gateway on the same NATS sees the entry in its initial load.
	ctx := context.Background()
	js := e.gw.revocations.KV()
	st, err := js.Status(ctx)
	if err != nil || st.Values() < 1 {
		t.Fatalf("bucket status = %v, %v; want the entry", st, err)
	}
	r2, err := openFresh(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Set().Revoked(revocation.Token{JTI: "jti-gone"}) {
		t.Error("Got(fresh gateway Revoked(jti-gone)) = false after initial load; want true")
	}
}

// openFresh runs a second revocation watcher on e's bucket until it is ready.
func openFresh(ctx context.Context, e *env) (*revocationsHandle, error) {
	h := &revocationsHandle{}
	return h, h.open(ctx, e)
}

type revocationsHandle struct{ set *revocation.Set }

func (h *revocationsHandle) Set() *revocation.Set { return h.set }

func (h *revocationsHandle) open(ctx context.Context, e *env) error {
	h.set = revocation.NewSet()
	w, err := e.gw.revocations.KV().WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for u := range w.Updates() {
		if u == nil {
			h.set.MarkReady()
			return nil
		}
		if u.Operation() == jetstream.KeyValuePut {
			h.set.Apply(u.Key(), u.Value())
		}
	}
	return nil
}

func BenchmarkRevocationCheck(b *testing.B) {
	s := revocation.NewSet()
	for i := range 100_000 {
		s.Put(revocation.KindJTI, "jti-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), int64(i))
	}
	v := newVerifiedToken(&accessClaims{ClientID: "c", Scope: "agents:read", OrganizationID: "0195f1a2-7c1e-7000-8000-00000000000f",
		CredentialID: "0195f1a2-7c1e-7000-8000-00000000000e"}, "kid")
	v.rev.JTI, v.rev.Subject, v.rev.IssuedAtMs = "0195f1a2-7c1e-7000-8000-00000000000d", "0195f1a2-7c1e-7000-8000-00000000000c", time.Now().UnixMilli()
	b.ReportAllocs()
	for b.Loop() {
		if s.Revoked(v.rev) {
			b.Fatal("revoked")
		}
	}
}
