package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/policies"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestValidTokenIsProxiedWithSignedContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 100)
	c := claims("org-1", "agents:write agents:read")
	c["act"] = map[string]any{"sub": "agent-2", "act": map[string]any{"sub": "agent-3"}}
	forged, err := e.codec.Sign(authn.Identity{Subject: "admin", OrgID: "other", Scopes: []string{"admin:orgs"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: "GET", Path: "/api/v1/agents/abc/"})
	if err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "GET", "/api/v1/agents/abc/", e.issuer.token(t, c), map[string]string{
		authn.Header: forged, "X-User-Id": "admin", "X-Request-Id": "req-123", "X-Forwarded-For": "6.6.6.6",
	})
	if r.status != http.StatusOK {
		t.Fatalf("Got(status) = %d %s; want 200", r.status, r.body)
	}
	if r.echo.Service != "token" || r.echo.Path != "/api/v1/agents/abc/" {
		t.Errorf("Got(upstream) = %s %s; want token /api/v1/agents/abc/", r.echo.Service, r.echo.Path)
	}
	if r.echo.Contexts != 1 || r.echo.Identity == nil {
		t.Fatalf("Got(contexts) = %d, identity %v, err %q; want exactly one valid context", r.echo.Contexts, r.echo.Identity, r.echo.VerifyErr)
	}
	id := *r.echo.Identity
	want := authn.Identity{Subject: "agent-1", OrgID: "org-1", ClientID: "agent-1", Scopes: []string{"agents:read", "agents:write"},
		Actors: []string{"agent-2", "agent-3"}, JTI: c["jti"].(string), ExpiresAt: c["exp"].(int64), RequestID: "req-123",
		IssuedAtMs: c["iat"].(int64) * 1000, // no iat_ms claim: second precision
		Method:     "GET", Path: "/api/v1/agents/abc/"}
	id.SignedAt = 0
	if fmt.Sprint(id) != fmt.Sprint(want) {
		t.Errorf("Got(identity) = %+v; want %+v", id, want)
	}
	if len(r.echo.Injected) != 0 {
		t.Errorf("Got(X-User-Id upstream) = %v; want stripped", r.echo.Injected)
	}
	if r.echo.ForwardFor != "127.0.0.1" {
		t.Errorf("Got(X-Forwarded-For) = %q; want only the real client 127.0.0.1", r.echo.ForwardFor)
	}
	if got := r.header.Get("X-Request-Id"); got != "req-123" {
		t.Errorf("Got(X-Request-Id) = %q; want req-123", got)
	}
	if r.header.Get("RateLimit-Limit") != "100" || r.header.Get("RateLimit-Remaining") != "99" || r.header.Get("RateLimit-Reset") == "" {
		t.Errorf("Got(RateLimit headers) = %q %q %q; want 100 99 <seconds>", r.header.Get("RateLimit-Limit"),
			r.header.Get("RateLimit-Remaining"), r.header.Get("RateLimit-Reset"))
	}

	// A request id is assigned when the client sends none.
	r = e.do(t, "GET", "/api/v1/agents", e.issuer.token(t, claims("org-1", "agents:read")), nil)
	if r.status != http.StatusOK || r.echo.RequestID == "" || r.header.Get("X-Request-Id") != r.echo.RequestID {
		t.Errorf("Got(request id) = %d %q / %q; want 200 and the same generated id both ways", r.status, r.echo.RequestID, r.header.Get("X-Request-Id"))
	}
}

// TestForwardedContextNamesForwardedMethodAndPath: the gateway binds the
// internal context to the method and the path the upstream receives (with
// the upstream URL's base path, without the query string), so a service
// can refuse it on any other route (TestAttackInternalContextReplayedOnAnotherRoute).
func TestForwardedContextNamesForwardedMethodAndPath(t *testing.T) {
	t.Parallel()
	var tokenBase string
	e := newEnv(t, envOptions{configure: func(c *Config) {
		tokenBase = c.Upstreams[ServiceToken]
		c.Upstreams[ServiceToken] = tokenBase + "/svc/"
	}})
	e.putOrg(t, "org-1", "active", 100)
	tok := e.issuer.token(t, claims("org-1", "agents:write agents:read"))
	for _, tc := range []struct{ method, path, wantPath string }{
		{"GET", "/api/v1/agents?limit=1&page=2", "/svc/api/v1/agents"},
		{"DELETE", "/api/v1/agents/x", "/svc/api/v1/agents/x"},
		{"PATCH", "/api/v1/agents/x/", "/svc/api/v1/agents/x/"},
	} {
		r := e.do(t, tc.method, tc.path, tok, nil)
		if r.status != http.StatusOK || r.echo.Path != tc.wantPath {
			t.Fatalf("Got(%s %s) = %d %s at %q; want 200 at %q", tc.method, tc.path, r.status, r.body, r.echo.Path, tc.wantPath)
		}
		if r.echo.Identity == nil {
			t.Fatalf("Got(%s %s context) = none, verify error %q; want one bound to %s %s", tc.method, tc.path, r.echo.VerifyErr, tc.method, tc.wantPath)
		}
		if id := r.echo.Identity; id.Method != tc.method || id.Path != tc.wantPath {
			t.Errorf("Got(%s %s context route) = %s %s; want %s %s", tc.method, tc.path, id.Method, id.Path, tc.method, tc.wantPath)
		}
	}
}

// TestAttackSpoofedForwardedForDoesNotChangeClientAddr: on the public
// token endpoint the gateway hands the token service the client's address
// signed (the TCP peer's, here 127.0.0.1); whatever X-Forwarded-For,
// X-Real-Ip or X-Agentidp-Client-Addr the client sends, that address stays
// the same, so rotating those headers cannot reset the per-address count
// of failed authentications.
func TestAttackSpoofedForwardedForDoesNotChangeClientAddr(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other, _ := authn.NewCodec(randBytes(32))
	for _, h := range []map[string]string{
		nil,
		{"X-Forwarded-For": "6.6.6.6"},
		{"X-Forwarded-For": "6.6.6.7, 10.0.0.1", "X-Real-Ip": "6.6.6.8", "Forwarded": "for=6.6.6.9"},
		{authn.ClientAddrHeader: other.SignClientAddr("6.6.6.10")},
		{authn.ClientAddrHeader: "6.6.6.11 1800000000 AAAA"},
	} {
		r := e.do(t, "POST", "/oauth2/token", "", h)
		if r.status != http.StatusOK || r.echo.Service != "token" {
			t.Fatalf("Got(POST /oauth2/token with %v) = %d %s; want 200 from token", h, r.status, r.body)
		}
		if r.echo.ClientAddrs != 1 || r.echo.ClientAddr != "127.0.0.1" {
			t.Errorf("Got(client address with %v) = %d header(s), %q; want one, signed, 127.0.0.1", h, r.echo.ClientAddrs, r.echo.ClientAddr)
		}
	}
}

func TestPublicRouteSkipsAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	forged, _ := e.codec.Sign(authn.Identity{Subject: "x", OrgID: "y", ExpiresAt: time.Now().Add(time.Hour).Unix(), Method: "POST", Path: "/oauth2/token"})
	for _, tc := range []struct{ method, path string }{
		{"POST", "/oauth2/token"},
		{"POST", "/api/v1/token"},
		{"GET", "/.well-known/jwks.json"},
		{"GET", "/.well-known/openid-configuration"},
		{"GET", "/.well-known/oauth-authorization-server"},
	} {
		r := e.do(t, tc.method, tc.path, "", map[string]string{authn.Header: forged})
		if r.status != http.StatusOK || r.echo.Service != "token" || r.echo.Path != tc.path {
			t.Errorf("Got(%s %s) = %d %s; want 200 from token", tc.method, tc.path, r.status, r.body)
		}
		if r.echo.Contexts != 0 {
			t.Errorf("Got(%s %s context headers) = %d; want 0 (client's stripped, none added)", tc.method, tc.path, r.echo.Contexts)
		}
	}
	// The token path with another method is not public.
	if r := e.do(t, "GET", "/api/v1/token", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("Got(GET /api/v1/token) = %d; want 401", r.status)
	}
}

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 100)
	tok := e.issuer.token(t, claims("org-1", "agents:read admin:orgs"))
	tests := []struct {
		name, path string
		status     int
	}{
		{"unknown path", "/nope", http.StatusNotFound},
		{"prefix on a segment boundary only", "/api/v1/agentsx", http.StatusNotFound},
		{"encoded slash", "/api/v1/agents/a%2Fb", http.StatusBadRequest},
		{"dot segment", "/api/v1/agents/%2E%2E/x", http.StatusBadRequest},
		{"tier route", "/api/v1/organizations", http.StatusOK},
	}
	for _, tc := range tests {
		r := e.do(t, "GET", tc.path, tok, nil)
		if r.status != tc.status {
			t.Errorf("%s: Got(GET %s) = %d %s; want %d", tc.name, tc.path, r.status, r.body, tc.status)
		}
	}
	if r := e.do(t, "GET", "/api/v1/organizations", tok, nil); r.echo.Service != "tier" {
		t.Errorf("Got(/api/v1/organizations upstream) = %q; want tier", r.echo.Service)
	}
}

func TestRejectedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 1000)
	kid := e.issuer.key.KID
	hdr := func(alg string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	edit := func(f func(map[string]any)) string {
		c := claims("org-1", "agents:read")
		f(c)
		return e.issuer.token(t, c)
	}
	_, otherSigner, _ := newKey(t)
	tests := []struct{ name, token string }{
		{"garbage", "not-a-jwt"},
		{"garbage with dots", "a.b.c"},
		{"alg none", rawToken(hdr("none"), claims("org-1", "agents:read"), nil)},
		{"HS256 signed with the public key", rawToken(hdr("HS256"), claims("org-1", "agents:read"), []byte(e.issuer.jwk.X+e.issuer.jwk.Y))},
		{"wrong audience", edit(func(c map[string]any) { c["aud"] = "someone-else" })},
		{"wrong issuer", edit(func(c map[string]any) { c["iss"] = "https://evil.example" })},
		{"no exp", edit(func(c map[string]any) { delete(c, "exp") })},
		{"expired", edit(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })},
		{"missing organization", edit(func(c map[string]any) { delete(c, "organization_id") })},
		{"missing subject", edit(func(c map[string]any) { delete(c, "sub") })},
		{"unknown kid", func() string { tok, _ := otherSigner.Sign(claims("org-1", "agents:read")); return tok }()},
		{"bad signature", e.issuer.token(t, claims("org-1", "agents:read"))[:40] + "x" + e.issuer.token(t, claims("org-1", "agents:read"))[41:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "GET", "/api/v1/agents", tc.token, nil)
			if r.status != http.StatusUnauthorized || r.prob["code"] != "UNAUTHORIZED" {
				t.Errorf("Got(status, code) = %d %v; want 401 UNAUTHORIZED (%s)", r.status, r.prob["code"], r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("Got(WWW-Authenticate) = %q", got)
			}
		})
	}
	for _, auth := range []string{"", "Basic abc", "Bearer ", "Bearer"} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/agents", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Got(Authorization %q) = %d; want 401 with WWW-Authenticate", auth, resp.StatusCode)
		}
	}
	if e.token.hits.Load() != 0 {
		t.Errorf("Got(upstream hits) = %d; want 0", e.token.hits.Load())
	}
	if got := testutil.ToFloat64(e.gw.metrics.denyAuth); got < float64(len(tests)) {
		t.Errorf("Got(denials{auth}) = %v; want >= %d", got, len(tests))
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	// The clock moves only when the test says, so the flood below falls in
	// one interval however slowly it runs.
	// Tokens below live 10 minutes, so the clock moves a minute at a time.
	var offset atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	e := newEnv(t, envOptions{configure: func(c *Config) { c.JWKSMinInterval = time.Minute; c.Now = now }})
	e.putOrg(t, "org-1", "active", 100000)
	// advance moves the clock and waits until a token-service heartbeat is
	// heard at the new time, so the revocation state stays fresh.
	advance := func(d time.Duration) {
		t.Helper()
		offset.Add(int64(d))
		want := now().UnixNano()
		waitUntil(t, "a heartbeat heard", func() bool { return e.gw.revocations.HeardNanos() >= want })
	}
	advance(time.Minute + time.Second) // the start-up fetch leaves the interval
	before := e.issuer.fetches.Load()

	var wg sync.WaitGroup
	var unauthorized atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _, _ := newKey(t)
			k.KID = hex.EncodeToString(randBytes(8))
			s, err := jose.NewSigner(k, "at+jwt")
			if err != nil {
				t.Error(err)
				return
			}
			tok, _ := s.Sign(claims("org-1", "agents:read"))
			if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status == http.StatusUnauthorized {
				unauthorized.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := e.issuer.fetches.Load() - before; got != 1 {
		t.Errorf("Got(JWKS fetches for 100 random kids) = %d; want 1 (one per interval)", got)
	}
	if unauthorized.Load() != 100 {
		t.Errorf("Got(401s) = %d; want 100", unauthorized.Load())
	}

	// Key rotation: a new key published later is picked up by a refetch.
	_, newSigner, newJWK := newKey(t)
	e.issuer.mu.Lock()
	e.issuer.jwks.Keys = append(e.issuer.jwks.Keys, newJWK)
	e.issuer.mu.Unlock()
	advance(time.Minute + time.Second)
	tok, _ := newSigner.Sign(claims("org-1", "agents:read"))
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
		t.Errorf("Got(token signed by rotated key) = %d %s; want 200", r.status, r.body)
	}
}

func TestPolicyAndOrgDenials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-ok", "active", 1000)
	e.putOrg(t, "org-suspended", "suspended", 1000)
	e.putOrg(t, "org-deleted", "deleted", 1000)
	tests := []struct {
		name, method, path, org, scope string
		status                         int
		reason                         string
	}{
		{"missing scope", "POST", "/api/v1/agents", "org-ok", "agents:read", 403, "missing scope agents:write"},
		{"org admin only", "GET", "/api/v1/organizations/x", "org-ok", "agents:read agents:write", 403, "missing scope admin:orgs"},
		{"no policy for route", "GET", "/api/v1/agents/a/b/c/d", "org-ok", "agents:read", 403, "no policy for route"},
		{"suspended org", "GET", "/api/v1/agents", "org-suspended", "agents:read", 403, "organization is not active"},
		{"deleted org", "GET", "/api/v1/agents", "org-deleted", "agents:read", 403, "organization is not active"},
		{"unknown org gets the free tier", "GET", "/api/v1/agents", "org-unknown", "agents:read", 200, ""},
		{"allowed", "POST", "/api/v1/agents/a/credentials", "org-ok", "agents:write", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, e.issuer.token(t, claims(tc.org, tc.scope)), nil)
			if r.status != tc.status {
				t.Fatalf("Got(status) = %d %s; want %d", r.status, r.body, tc.status)
			}
			if tc.status == 403 && (r.prob["code"] != "FORBIDDEN" || r.prob["message"] != tc.reason) {
				t.Errorf("Got(problem) = %v %v; want FORBIDDEN %q", r.prob["code"], r.prob["message"], tc.reason)
			}
			if tc.status == 200 && tc.org == "org-unknown" && r.header.Get("RateLimit-Limit") != "1000" {
				t.Errorf("Got(RateLimit-Limit) = %q; want 1000 (free tier)", r.header.Get("RateLimit-Limit"))
			}
		})
	}
}

func testTierLimit(t *testing.T, c cache.Cache) {
	e := newEnv(t, envOptions{cache: c})
	org := "org-" + hex.EncodeToString(randBytes(4))
	e.putOrg(t, org, "active", 3)
	tok := e.issuer.token(t, claims(org, "agents:read"))
	for i := 1; i <= 3; i++ {
		r := e.do(t, "GET", "/api/v1/agents", tok, nil)
		if r.status != 200 || r.header.Get("RateLimit-Remaining") != strconv.Itoa(3-i) {
			t.Fatalf("call %d: Got(status, remaining) = %d %q; want 200 %d", i, r.status, r.header.Get("RateLimit-Remaining"), 3-i)
		}
	}
	r := e.do(t, "GET", "/api/v1/agents", tok, nil)
	if r.status != http.StatusTooManyRequests || r.prob["code"] != "TIER_LIMIT_EXCEEDED" {
		t.Fatalf("Got(limit+1) = %d %s; want 429 TIER_LIMIT_EXCEEDED", r.status, r.body)
	}
	now := time.Now().UTC()
	toMidnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || time.Duration(ra)*time.Second > toMidnight+2*time.Second || time.Duration(ra)*time.Second < toMidnight-5*time.Second {
		t.Errorf("Got(Retry-After) = %q; want ~%v", r.header.Get("Retry-After"), toMidnight.Round(time.Second))
	}
	if r.header.Get("RateLimit-Limit") != "3" || r.header.Get("RateLimit-Remaining") != "0" || r.header.Get("RateLimit-Reset") != r.header.Get("Retry-After") {
		t.Errorf("Got(RateLimit headers) = %q %q %q; want 3 0 %s", r.header.Get("RateLimit-Limit"), r.header.Get("RateLimit-Remaining"),
			r.header.Get("RateLimit-Reset"), r.header.Get("Retry-After"))
	}

	// Concurrency: exactly the limit is admitted.
	org2 := "org-" + hex.EncodeToString(randBytes(4))
	e.putOrg(t, org2, "active", 40)
	tok2 := e.issuer.token(t, claims(org2, "agents:read"))
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch e.do(t, "GET", "/api/v1/agents", tok2, nil).status {
			case 200:
				ok.Add(1)
			case 429:
				limited.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 40 || limited.Load() != 60 {
		t.Errorf("Got(admitted, limited) = %d, %d; want 40, 60", ok.Load(), limited.Load())
	}
	if got := testutil.ToFloat64(e.gw.metrics.fallback); got != 0 {
		t.Errorf("Got(fallback_total) = %v; want 0", got)
	}
}

func TestTierLimitMemory(t *testing.T) {
	t.Parallel()
	testTierLimit(t, cache.NewMemory(cache.MemoryOptions{}))
}

func TestTierLimitRedis(t *testing.T) {
	t.Parallel()
	url := testkit.RedisURL(t)
	c, err := cache.NewRedis(cache.RedisOptions{URL: url, Prefix: testkit.RedisPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	testTierLimit(t, c)
}

func TestTierLimitFallbackWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	c, err := cache.NewRedis(cache.RedisOptions{URL: "redis://127.0.0.1:1/0", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{cache: c})
	e.putOrg(t, "org-1", "active", 20)
	e.putOrg(t, "org-unlimited", "active", -1)
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	// Redis was never reached, so nothing is known of org-1's count: the
	// one replica admits limit / (1 × quota.UnknownShareDivisor) = 2.
	for i, want := range []int{200, 200, 429, 429} {
		if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != want {
			t.Errorf("call %d: Got(status) = %d %s; want %d", i+1, r.status, r.body, want)
		}
	}
	r := e.do(t, "GET", "/api/v1/agents", e.issuer.token(t, claims("org-unlimited", "agents:read")), nil)
	if r.status != 200 || r.header.Get("RateLimit-Limit") != "" {
		t.Errorf("Got(unlimited org) = %d, RateLimit-Limit %q; want 200 without RateLimit headers", r.status, r.header.Get("RateLimit-Limit"))
	}
	// The four limited calls fell back at once; the unlimited one is
	// batched, and every flush that cannot add the batch counts once more
	// (the batch is kept for the next flush, not lost).
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(e.gw.metrics.fallback) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("Got(agentidp_gateway_tier_fallback_total) = %v; want >= 5 after the flush", testutil.ToFloat64(e.gw.metrics.fallback))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnlimitedCallsAreCountedInBatches checks that an unlimited
// organisation's calls cost no cache round trip but still reach the shared
// counter, exactly.
func TestUnlimitedCallsAreCountedInBatches(t *testing.T) {
	t.Parallel()
	mem := cache.NewMemory(cache.MemoryOptions{})
	e := newEnv(t, envOptions{cache: mem})
	e.putOrg(t, "org-big", "active", -1)
	tok := e.issuer.token(t, claims("org-big", "agents:read"))
	for range 7 {
		if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != 200 {
			t.Fatalf("Got(status) = %d %s; want 200", r.status, r.body)
		}
	}
	key := "usage:calls:org-big:" + time.Now().UTC().Format("20060102")
	deadline := time.Now().Add(3 * time.Second)
	for {
		n, err := mem.Counters(context.Background(), key)
		if err == nil && len(n) == 1 && n[0] == 7 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Got(%s) = %v, %v; want [7]", key, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: func(c *Config) { c.Upstreams[ServiceTier] = "http://127.0.0.1:1" }})
	e.putOrg(t, "org-1", "active", 100)
	start := time.Now()
	r := e.do(t, "GET", "/api/v1/tiers/status", e.issuer.token(t, claims("org-1", "tokens:read")), nil)
	if r.status != http.StatusBadGateway || r.prob["code"] != "SERVICE_UNAVAILABLE" {
		t.Errorf("Got(upstream down) = %d %s; want 502 problem", r.status, r.body)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Got(latency) = %v; want a fast failure", time.Since(start))
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.putOrg(t, "org-1", "active", 100)
	e.do(t, "GET", "/api/v1/agents", e.issuer.token(t, claims("org-1", "agents:read")), nil)
	e.do(t, "POST", "/api/v1/agents", e.issuer.token(t, claims("org-1", "agents:read")), nil)
	e.do(t, "GET", "/nope", "", nil)
	for _, tc := range []struct {
		route, code string
		want        float64
	}{{"/api/v1/agents", "200", 1}, {"/api/v1/agents", "403", 1}, {"unmatched", "404", 1}} {
		if got := testutil.ToFloat64(e.gw.metrics.requests.WithLabelValues(tc.route, tc.code)); got != tc.want {
			t.Errorf("Got(requests_total{%s,%s}) = %v; want %v", tc.route, tc.code, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(e.gw.metrics.denyPolicy); got != 1 {
		t.Errorf("Got(denials{policy}) = %v; want 1", got)
	}
	mfs, err := e.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"agentidp_gateway_requests_total", "agentidp_gateway_denials_total", "agentidp_gateway_upstream_duration_seconds"} {
		if !slices.Contains(names, want) {
			t.Errorf("Got(metrics) = %v; want %s", names, want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"TOKEN_SERVICE_URL": "http://token:8081/", "GATEWAY_AUDIENCE": "aud2",
		"GATEWAY_ROUTES": `[{"path":"/x","service":"token","public":true,"methods":["get"]}]`,
	}
	env := configEnv(vars)
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Upstreams[ServiceToken] != "http://token:8081" || cfg.Audience != "aud2" || len(cfg.Routes) != 1 || cfg.Routes[0].Path != "/x" {
		t.Errorf("Got(config) = %+v", cfg)
	}
	env = configEnv(map[string]string{"TIER_SERVICE_URL": "ftp://x", "GATEWAY_ROUTES": `{"bad":1}`})
	ConfigFromEnv(env)
	if err := env.Err(); err == nil || !strings.Contains(err.Error(), "TIER_SERVICE_URL") || !strings.Contains(err.Error(), "GATEWAY_ROUTES") {
		t.Errorf("Got(errors) = %v; want both problems reported", err)
	}
}

func TestVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	e := newEnv(t, envOptions{configure: func(c *Config) { c.JWKSMinInterval = time.Millisecond },
		now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	e.putOrg(t, "org-1", "active", 1000)
	c := claims("org-1", "agents:read")
	c["exp"] = time.Now().Add(2 * time.Minute).Unix()
	tok := e.issuer.token(t, c)
	for i := 0; i < 2; i++ { // the second call is served from the cache
		if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != 200 || r.echo.Identity == nil || r.echo.Identity.JTI != c["jti"] {
			t.Fatalf("call %d: Got(status) = %d %s; want 200 with the token's identity", i+1, r.status, r.body)
		}
	}
	// Past exp + leeway the cached token is refused.
	offset.Store(int64(3 * time.Minute))
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusUnauthorized {
		t.Errorf("Got(cached token after expiry) = %d; want 401", r.status)
	}
	offset.Store(0)

	// A withdrawn key invalidates tokens cached under it.
	tok2 := e.issuer.token(t, claims("org-1", "agents:read"))
	if r := e.do(t, "GET", "/api/v1/agents", tok2, nil); r.status != 200 {
		t.Fatalf("Got(status) = %d; want 200", r.status)
	}
	_, _, other := newKey(t)
	e.issuer.mu.Lock()
	e.issuer.jwks.Keys = []jose.JWK{other}
	e.issuer.mu.Unlock()
	if err := e.gw.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/api/v1/agents", tok2, nil); r.status != http.StatusUnauthorized {
		t.Errorf("Got(cached token after its key was withdrawn) = %d; want 401", r.status)
	}
}

func TestPolicyDirIsLoadedAndWatched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rego, err := fs.ReadFile(policies.FS, policies.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, policies.PolicyPath), string(rego))
	writeFile(t, filepath.Join(dir, policies.ScopesPath), `{"GET /api/v1/agents": ["admin:orgs"]}`)
	e := newEnv(t, envOptions{configure: func(c *Config) { c.PolicyDir = dir; c.PolicyPoll = 20 * time.Millisecond }})
	e.putOrg(t, "org-1", "active", 1000)
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != 403 || r.prob["message"] != "missing scope admin:orgs" {
		t.Fatalf("Got(directory policy) = %d %s; want 403 missing scope admin:orgs", r.status, r.body)
	}
	writeFile(t, filepath.Join(dir, policies.ScopesPath), `{"GET /api/v1/agents": ["agents:read"]}`)
	deadline := time.Now().Add(5 * time.Second)
	for e.do(t, "GET", "/api/v1/agents", tok, nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("changed scopes.json never applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKeysChangedNoticeRefreshesJWKS checks that the token service's
// signing-key change notice makes the gateway refetch its JWKS at once
// (not rate-limited, not waiting for the periodic refresh), so a withdrawn
// key stops verifying within milliseconds.
func TestKeysChangedNoticeRefreshesJWKS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	before := e.gw.keys.Fetches()
	if err := e.nc.Publish(events.KeysChangedSubject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.gw.keys.Fetches() == before {
		if time.Now().After(deadline) {
			t.Fatalf("JWKS fetches = %d after a keys-changed notice; want a refetch", e.gw.keys.Fetches())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
