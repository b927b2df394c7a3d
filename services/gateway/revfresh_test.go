package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testClock is a clock the test moves by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeTokenService answers RFC 7662 introspection from its own revoked
// set (as the token service does from its database-backed set) and 200
// to everything else.
type fakeTokenService struct {
	t       testing.TB
	codec   atomic.Pointer[authn.Codec] // set once the gateway's exists
	srv     *httptest.Server
	calls   atomic.Int64
	down    atomic.Bool
	mu      sync.Mutex
	revoked map[string]bool
}

func newFakeTokenService(t testing.TB) *fakeTokenService {
	f := &fakeTokenService{t: t, revoked: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth2/introspect" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{}")
			return
		}
		f.calls.Add(1)
		if f.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		id, err := f.codec.Load().Verify(r.Header.Get(authn.Header), r.Method, r.URL.Path)
		if err != nil || !id.HasScope("tokens:read") || id.OrgID == "" {
			t.Errorf("introspection context = %+v, %v; want a verified identity with tokens:read and the token's org", id, err)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		f.mu.Lock()
		active := !f.revoked[form.Get("token")]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"active": active})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTokenService) revoke(tok string) {
	f.mu.Lock()
	f.revoked[tok] = true
	f.mu.Unlock()
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), `"msg":"`+msg)
}

// freshnessEnv is a gateway on a hand-moved clock whose token service is
// fake.
func freshnessEnv(t *testing.T) (*env, *testClock, *fakeTokenService, *logBuffer) {
	t.Helper()
	clock := newTestClock()
	logs := &logBuffer{}
	fake := newFakeTokenService(t)
	e := newEnv(t, envOptions{now: clock.now, logger: slog.New(slog.NewJSONHandler(logs, nil)),
		health:    httpx.NewHealth(prometheus.NewRegistry()),
		configure: func(c *Config) { c.Upstreams[ServiceToken] = fake.srv.URL }})
	fake.codec.Store(e.codec)
	e.putOrg(t, "org-1", "active", 100000)
	return e, clock, fake, logs
}

func (e *env) fallbacks(outcome string) float64 {
	return testutil.ToFloat64(e.gw.metrics.revocationFallback.WithLabelValues(outcome))
}

func (e *env) noFallbacks(t *testing.T) {
	t.Helper()
	for _, o := range []string{fallbackActive, fallbackRevoked, fallbackCached, fallbackError} {
		if got := e.fallbacks(o); got != 0 {
			t.Errorf("fallback checks (%s) = %v while the revocation state is fresh; want 0", o, got)
		}
	}
}

// waitUntil polls cond (a condition, not a fixed sleep) for up to 5s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A gateway cut from NATS stops trusting its revocation state once it is
// older than the bound: a token revoked in the token service during the
// cut (which the gateway's feed cannot deliver) is refused through the
// introspection fallback.
func TestAttackRevokedTokenAcceptedByGatewayCutFromNATS(t *testing.T) {
	t.Parallel()
	e, clock, fake, _ := freshnessEnv(t)
	bound := e.gw.cfg.RevocationMaxStaleness
	revoked := e.issuer.token(t, claims("org-1", "agents:read"))
	kept := e.issuer.token(t, claims("org-1", "agents:read"))
	for _, tok := range []string{revoked, kept} {
		if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
			t.Fatalf("Got(before the cut) = %d %s; want 200", r.status, r.body)
		}
	}
	e.noFallbacks(t)

	e.pauseHeartbeats(t)
	e.nc.Close() // the gateway's connection: its feed hears nothing more
	fake.revoke(revoked)

	// Within the bound the local copy is still trusted, with no call.
	clock.advance(bound)
	if r := e.do(t, "GET", "/api/v1/agents", kept, nil); r.status != http.StatusOK {
		t.Fatalf("Got(at the bound) = %d %s; want 200", r.status, r.body)
	}
	if n := fake.calls.Load(); n != 0 {
		t.Fatalf("introspection calls at the bound = %d; want 0", n)
	}

	clock.advance(time.Millisecond)
	r := e.do(t, "GET", "/api/v1/agents", revoked, nil)
	if r.status != http.StatusUnauthorized || r.prob["code"] != "UNAUTHORIZED" {
		t.Fatalf("Got(revoked token past the bound) = %d %v; want 401 UNAUTHORIZED (%s)", r.status, r.prob["code"], r.body)
	}
	if r := e.do(t, "GET", "/api/v1/agents", revoked, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("Got(revoked token again) = %d; want 401", r.status)
	}
	// A token nobody revoked is still served, one call per jti however
	// many requests present it at once.
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- e.do(t, "GET", "/api/v1/agents", kept, nil).status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("Got(unrevoked token past the bound) = %d; want 200", s)
		}
	}
	if n := fake.calls.Load(); n != 2 {
		t.Errorf("introspection calls = %d; want 2 (one per jti)", n)
	}
	if got := e.fallbacks(fallbackRevoked); got != 1 {
		t.Errorf("fallback checks (revoked) = %v; want 1", got)
	}
	if got := e.fallbacks(fallbackActive); got < 1 || got+e.fallbacks(fallbackCached) != 21 {
		t.Errorf("fallback checks (active %v + cached %v) want 21 with active ≥ 1", got, e.fallbacks(fallbackCached))
	}
	// An answer is remembered for at most the bound.
	clock.advance(bound + time.Millisecond)
	if r := e.do(t, "GET", "/api/v1/agents", kept, nil); r.status != http.StatusOK {
		t.Fatalf("Got(after the cached answer expired) = %d; want 200", r.status)
	}
	if n := fake.calls.Load(); n != 3 {
		t.Errorf("introspection calls after the cached answer expired = %d; want 3", n)
	}
}

// Two token replicas; one is cut from NATS (its heartbeats stop, and so
// would the mirroring of what it revokes) while the other heartbeats on.
// The healthy replica's heartbeat vouches only for its own commits: the
// gateway must count its state as old as the silent replica's last
// heartbeat, and check tokens with the token service.
func TestAttackHealthyReplicaHeartbeatHidesSilentReplica(t *testing.T) {
	t.Parallel()
	e, clock, fake, _ := freshnessEnv(t)
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	e.pauseHeartbeats(t)
	e.putHeartbeat(t, "token-test", false)
	e.putHeartbeat(t, "token-b", false)
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
		t.Fatalf("Got(both replicas heard) = %d %s; want 200", r.status, r.body)
	}
	// token-b is cut and revokes the token; token-test heartbeats on.
	fake.revoke(tok)
	clock.advance(e.gw.cfg.RevocationMaxStaleness + time.Millisecond)
	e.putHeartbeat(t, "token-test", false)
	r := e.do(t, "GET", "/api/v1/agents", tok, nil)
	if r.status != http.StatusUnauthorized || fake.calls.Load() != 1 {
		t.Fatalf("Got(token-b silent past the bound) = %d, %d introspection calls; want 401 after 1 call (%s)",
			r.status, fake.calls.Load(), r.body)
	}
	// token-b shuts down cleanly (deletes its key): fresh again, no calls.
	e.putHeartbeat(t, "token-b", true)
	other := e.issuer.token(t, claims("org-1", "agents:read"))
	if r := e.do(t, "GET", "/api/v1/agents", other, nil); r.status != http.StatusOK || fake.calls.Load() != 1 {
		t.Fatalf("Got(token-b gone) = %d, %d introspection calls; want 200, still 1", r.status, fake.calls.Load())
	}
}

// Cut from NATS with the token service unreachable too, the gateway
// accepts nothing: 503 with Retry-After, never 200.
func TestAttackGatewayCutFromNATSAndTokenServiceServesUncheckedTokens(t *testing.T) {
	t.Parallel()
	e, clock, fake, _ := freshnessEnv(t)
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
		t.Fatalf("Got(before the cut) = %d %s; want 200", r.status, r.body)
	}
	revoked := e.issuer.token(t, claims("org-1", "agents:read"))
	fake.revoke(revoked)
	e.pauseHeartbeats(t)
	e.nc.Close()
	clock.advance(e.gw.cfg.RevocationMaxStaleness + time.Millisecond)
	if r := e.do(t, "GET", "/api/v1/agents", revoked, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("Got(revoked, token service up) = %d; want 401", r.status)
	}
	fake.down.Store(true)
	clock.advance(e.gw.cfg.RevocationMaxStaleness + time.Millisecond)
	// A revoked answer stays valid while the token could be presented.
	if r := e.do(t, "GET", "/api/v1/agents", revoked, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("Got(revoked, token service down) = %d; want 401 (remembered)", r.status)
	}
	for i := range 3 {
		r := e.do(t, "GET", "/api/v1/agents", tok, nil)
		if r.status != http.StatusServiceUnavailable || r.prob["code"] != "SERVICE_UNAVAILABLE" || r.header.Get("Retry-After") == "" {
			t.Fatalf("Got(request %d) = %d %v Retry-After %q; want 503 SERVICE_UNAVAILABLE with Retry-After (%s)",
				i, r.status, r.prob["code"], r.header.Get("Retry-After"), r.body)
		}
	}
	if got := e.fallbacks(fallbackError); got != 3 {
		t.Errorf("fallback checks (error) = %v; want 3", got)
	}
	// The token service back: the token is served again.
	fake.down.Store(false)
	if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
		t.Fatalf("Got(token service back) = %d %s; want 200", r.status, r.body)
	}
}

// The stale state is logged once when entered and once when left, with
// its age, and exposed as metrics.
func TestRevocationStalenessIsLoggedOnceAndMetered(t *testing.T) {
	t.Parallel()
	e, clock, _, logs := freshnessEnv(t)
	const entered, left = "revocation state stale", "revocation state fresh again"
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	e.pauseHeartbeats(t)
	clock.advance(3 * time.Second)
	waitUntil(t, "stale state logged", func() bool { return logs.count(entered) == 1 })
	if got := testutil.ToFloat64(e.gw.metrics.revocationFallback.WithLabelValues(fallbackActive)); got != 0 {
		t.Fatalf("fallback checks before any request = %v; want 0", got)
	}
	for range 3 {
		if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
			t.Fatalf("Got(stale, token service up) = %d %s; want 200", r.status, r.body)
		}
	}
	metrics := func() map[string]float64 {
		mfs, err := e.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if m := mf.GetMetric(); len(m) == 1 && m[0].GetGauge() != nil {
				out[mf.GetName()] = m[0].GetGauge().GetValue()
			}
		}
		return out
	}
	// /health/detailed says so: degraded, with the feed's age.
	revDetail := func() httpx.DetailReport {
		t.Helper()
		return e.health.Detailed(context.Background()).Details["revocations"]
	}
	if d := revDetail(); d.Error == "" || d.Value.(map[string]any)["ageSeconds"].(float64) < 3 {
		t.Errorf("Got(/health/detailed revocations while stale) = %+v; want an error and an age ≥ 3 s", d)
	}
	if st := e.health.Detailed(context.Background()).Status; st != httpx.StatusDegraded {
		t.Errorf("Got(/health/detailed status while stale) = %s; want degraded", st)
	}
	m := metrics()
	if m["agentidp_gateway_revocation_stale"] != 1 || m["agentidp_gateway_revocation_state_age_seconds"] < 3 {
		t.Errorf("stale, age = %v, %v; want 1, ≥ 3", m["agentidp_gateway_revocation_stale"], m["agentidp_gateway_revocation_state_age_seconds"])
	}
	if n := logs.count(entered + `: checking every token with the token service, 503 when it cannot answer","age":"3s"`); n != 1 {
		t.Errorf("stale log with its age (3s) found %d times; want 1", n)
	}
	e.resumeHeartbeats()
	waitUntil(t, "fresh state logged", func() bool { return logs.count(left) == 1 })
	if got := logs.count(entered); got != 1 {
		t.Errorf("stale state logged %d times; want once", got)
	}
	if d := revDetail(); d.Error != "" {
		t.Errorf("Got(/health/detailed revocations after recovery) = %+v; want no error", d)
	}
	if m := metrics(); m["agentidp_gateway_revocation_stale"] != 0 || m["agentidp_gateway_revocation_state_age_seconds"] > 1 {
		t.Errorf("stale, age after recovery = %v, %v; want 0, ≤ 1", m["agentidp_gateway_revocation_stale"], m["agentidp_gateway_revocation_state_age_seconds"])
	}
}

// While the revocation state is fresh the hot path makes no extra call.
func TestFreshRevocationStateMakesNoIntrospectionCall(t *testing.T) {
	t.Parallel()
	e, clock, fake, logs := freshnessEnv(t)
	tok := e.issuer.token(t, claims("org-1", "agents:read"))
	for range 5 {
		// Time passes, and the token service's heartbeats keep the
		// state fresh: more time in all than the bound.
		clock.advance(time.Second)
		want := clock.now().UnixNano()
		waitUntil(t, "a heartbeat heard", func() bool { return e.gw.revocations.HeardNanos() >= want })
		for range 10 {
			if r := e.do(t, "GET", "/api/v1/agents", tok, nil); r.status != http.StatusOK {
				t.Fatalf("Got = %d %s; want 200", r.status, r.body)
			}
		}
	}
	if n := fake.calls.Load(); n != 0 {
		t.Errorf("introspection calls = %d; want 0", n)
	}
	e.noFallbacks(t)
	if n := logs.count("revocation state stale"); n != 0 {
		t.Errorf("stale state logged %d times; want 0", n)
	}
}

func TestRevocationMaxStalenessConfig(t *testing.T) {
	t.Parallel()
	env := configEnv(nil)
	if c := ConfigFromEnv(env); c.RevocationMaxStaleness != 2*time.Second || env.Err() != nil {
		t.Errorf("default = %s, %v; want 2s", c.RevocationMaxStaleness, env.Err())
	}
	env = configEnv(map[string]string{"GATEWAY_REVOCATION_MAX_STALENESS": "5s"})
	if c := ConfigFromEnv(env); c.RevocationMaxStaleness != 5*time.Second || env.Err() != nil {
		t.Errorf("5s = %s, %v; want 5s", c.RevocationMaxStaleness, env.Err())
	}
	for _, v := range []string{"500ms", "0", "-1s", "soon"} {
		env = configEnv(map[string]string{"GATEWAY_REVOCATION_MAX_STALENESS": v})
		if ConfigFromEnv(env); env.Err() == nil || !strings.Contains(env.Err().Error(), "GATEWAY_REVOCATION_MAX_STALENESS") {
			t.Errorf("%q: err = %v; want one naming GATEWAY_REVOCATION_MAX_STALENESS", v, env.Err())
		}
	}
}
