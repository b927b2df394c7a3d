package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// flakyListener is an upstream's listener that, while down, accepts each
// connection and closes it at once (the request fails without a response,
// like a crashed process behind a live port); it counts every connection
// the gateway made.
type flakyListener struct {
	net.Listener
	down     atomic.Bool
	accepted atomic.Int64
}

func (l *flakyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		if !l.down.Load() {
			return c, nil
		}
		_ = c.Close()
	}
}

// newDeadUpstream starts an HTTP upstream answering 200 {"ok":true}, down
// from the start.
func newDeadUpstream(t *testing.T) (*flakyListener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.down.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"service":"flaky"}`))
	})}
	go func() { _ = srv.Serve(fl) }()
	t.Cleanup(func() { _ = srv.Close() })
	return fl, "http://" + ln.Addr().String()
}

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// breakerLines returns the "to" state of each breaker log line of service.
func (s *syncBuffer) breakerLines(service string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["service"] == service {
			if to, ok := m["to"].(string); ok {
				out = append(out, to)
			}
		}
	}
	return out
}

// breakerEnv is a gateway whose webhook routes lead to a flaky upstream
// and whose tier routes to a healthy one, with public routes /flaky and
// /healthy to each.
func breakerEnv(t *testing.T, failures int, cooldown time.Duration) (*env, *flakyListener, *syncBuffer) {
	t.Helper()
	fl, url := newDeadUpstream(t)
	logs := &syncBuffer{}
	e := newEnv(t, envOptions{logger: slog.New(slog.NewJSONHandler(logs, nil)), configure: func(c *Config) {
		c.Upstreams[ServiceWebhook] = url
		c.Routes = append(DefaultRoutes(),
			Route{Path: "/flaky", Public: true, Service: ServiceWebhook},
			Route{Path: "/healthy", Public: true, Service: ServiceTier})
		c.BreakerFailures = failures
		c.BreakerCooldown = cooldown
	}})
	return e, fl, logs
}

func (e *env) breakerState(t *testing.T, service string) float64 {
	t.Helper()
	return testutil.ToFloat64(e.gw.metrics.breaker.WithLabelValues(service))
}

// TestAttackDeadUpstreamCostsOneFailurePerCooldownNotOnePerRequest: an
// upstream that fails every connection used to be dialled (and, for one
// that hangs, waited on until the timeout) by every request. After the
// threshold of consecutive failures its routes fail fast with 503 and
// Retry-After, no connection reaches it, other upstreams are unaffected,
// and the state change is logged once and exported.
func TestAttackDeadUpstreamCostsOneFailurePerCooldownNotOnePerRequest(t *testing.T) {
	t.Parallel()
	const failures = 3
	e, fl, logs := breakerEnv(t, failures, time.Hour)
	for i := range failures {
		if r := e.do(t, http.MethodGet, "/flaky", "", nil); r.status != http.StatusBadGateway {
			t.Fatalf("request %d to the dead upstream = %d %s; want 502", i+1, r.status, r.body)
		}
	}
	if n := fl.accepted.Load(); n != failures {
		t.Fatalf("connections to the dead upstream = %d; want %d (one per failed request)", n, failures)
	}
	for i := range 20 {
		r := e.do(t, http.MethodGet, "/flaky", "", nil)
		if r.status != http.StatusServiceUnavailable || r.prob["code"] != "SERVICE_UNAVAILABLE" {
			t.Fatalf("request %d with the breaker open = %d %s; want 503 SERVICE_UNAVAILABLE", i+1, r.status, r.body)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 3500 || ra > 3600 {
			t.Fatalf("Retry-After = %q; want the rest of the 1h cool-down", r.header.Get("Retry-After"))
		}
	}
	if n := fl.accepted.Load(); n != failures {
		t.Errorf("connections to the dead upstream after 20 more requests = %d; want still %d (fail fast)", n, failures)
	}
	if r := e.do(t, http.MethodGet, "/healthy", "", nil); r.status != http.StatusOK || r.echo.Service != "tier" {
		t.Errorf("another upstream's route = %d %s; want 200 from tier", r.status, r.body)
	}
	if got := e.breakerState(t, ServiceWebhook); got != 2 {
		t.Errorf("breaker state of webhook = %v; want 2 (open)", got)
	}
	if got := e.breakerState(t, ServiceTier); got != 0 {
		t.Errorf("breaker state of tier = %v; want 0 (closed)", got)
	}
	if got := logs.breakerLines(ServiceWebhook); len(got) != 1 || got[0] != "open" {
		t.Errorf("breaker log lines = %v; want one, to open", got)
	}
}

// TestUpstreamBreakerRecoversThroughOneProbe: once the upstream is back,
// after the cool-down one probe closes the breaker and requests flow again;
// each state change is logged exactly once.
func TestUpstreamBreakerRecoversThroughOneProbe(t *testing.T) {
	t.Parallel()
	const failures = 2
	e, fl, logs := breakerEnv(t, failures, 50*time.Millisecond)
	for range failures {
		if r := e.do(t, http.MethodGet, "/flaky", "", nil); r.status != http.StatusBadGateway {
			t.Fatalf("request to the dead upstream = %d %s; want 502", r.status, r.body)
		}
	}
	if got := e.breakerState(t, ServiceWebhook); got != 2 {
		t.Fatalf("breaker state = %v; want 2 (open)", got)
	}
	fl.down.Store(false) // the upstream is back
	before := fl.accepted.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do(t, http.MethodGet, "/flaky", "", nil)
		if r.status == http.StatusOK {
			break
		}
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("request while the breaker cools down = %d %s; want 503 or, after the probe, 200", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatal("the breaker never let a probe through")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := fl.accepted.Load() - before; n != 1 {
		t.Errorf("connections during recovery = %d; want 1 (the probe, kept alive)", n)
	}
	for range 5 {
		if r := e.do(t, http.MethodGet, "/flaky", "", nil); r.status != http.StatusOK {
			t.Fatalf("request after recovery = %d %s; want 200", r.status, r.body)
		}
	}
	if got := e.breakerState(t, ServiceWebhook); got != 0 {
		t.Errorf("breaker state after recovery = %v; want 0 (closed)", got)
	}
	want := []string{"open", "half-open", "closed"}
	if got := logs.breakerLines(ServiceWebhook); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("breaker log lines = %v; want %v", got, want)
	}
}

// okTransport answers every request with one shared response, no I/O.
type okTransport struct{ resp *http.Response }

func (t okTransport) RoundTrip(*http.Request) (*http.Response, error) { return t.resp, nil }

// BenchmarkBreakerClosed is what the breaker adds to a proxied request
// while its upstream is healthy (the gobreaker mutex is skipped): compare
// "breaker" with "bare".
func BenchmarkBreakerClosed(b *testing.B) {
	ok := okTransport{&http.Response{StatusCode: http.StatusOK, Body: http.NoBody}}
	req, _ := http.NewRequest(http.MethodGet, "http://upstream/x", nil)
	for name, rt := range map[string]http.RoundTripper{
		"bare": ok,
		"breaker": &breakerTransport{next: ok, b: newUpstreamBreaker("x", 5, time.Second,
			newMetrics(nil).breaker.WithLabelValues("x"), slog.New(slog.DiscardHandler))},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = rt.RoundTrip(req)
				}
			})
		})
	}
}

func TestBreakerConfigFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		vars         map[string]string
		wantFailures int
		wantCooldown time.Duration
		wantErr      string
	}{
		{"defaults", nil, 5, 5 * time.Second, ""},
		{"set", map[string]string{"GATEWAY_UPSTREAM_BREAKER_FAILURES": "3", "GATEWAY_UPSTREAM_BREAKER_COOLDOWN": "250ms"}, 3, 250 * time.Millisecond, ""},
		{"zero failures", map[string]string{"GATEWAY_UPSTREAM_BREAKER_FAILURES": "0"}, 0, 0, "GATEWAY_UPSTREAM_BREAKER_FAILURES"},
		{"negative cooldown", map[string]string{"GATEWAY_UPSTREAM_BREAKER_COOLDOWN": "-1s"}, 0, 0, "GATEWAY_UPSTREAM_BREAKER_COOLDOWN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := configEnv(tc.vars)
			cfg := ConfigFromEnv(env)
			err := env.Err()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Got(errors) = %v; want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.BreakerFailures != tc.wantFailures || cfg.BreakerCooldown != tc.wantCooldown {
				t.Errorf("Got(breaker config) = %d, %v, %v; want %d, %v", cfg.BreakerFailures, cfg.BreakerCooldown, err, tc.wantFailures, tc.wantCooldown)
			}
		})
	}
}

// TestUpstreamAnsweringProblem503KeepsBreakerClosed: a service that is up
// and answers 503 problem+json for one feature (billing without Stripe)
// does not get all its routes cut off; a bare 503 (a proxy in front of no
// ready instance) counts as a failure.
func TestUpstreamAnsweringProblem503KeepsBreakerClosed(t *testing.T) {
	t.Parallel()
	var bare atomic.Bool
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if bare.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"code":"SERVICE_UNAVAILABLE","detail":"billing is not configured"}`))
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, envOptions{configure: func(c *Config) {
		c.Upstreams[ServiceBilling] = up.URL
		c.Routes = append(DefaultRoutes(), Route{Path: "/feature", Public: true, Service: ServiceBilling})
		c.BreakerFailures = 2
		c.BreakerCooldown = time.Hour
	}})
	for i := range 5 {
		if r := e.do(t, http.MethodGet, "/feature", "", nil); r.status != http.StatusServiceUnavailable || r.prob["detail"] != "billing is not configured" {
			t.Fatalf("request %d = %d %s; want the upstream's own 503", i+1, r.status, r.body)
		}
	}
	if n := hits.Load(); n != 5 {
		t.Errorf("upstream hits = %d; want 5 (the breaker stays closed)", n)
	}
	bare.Store(true)
	for range 2 {
		e.do(t, http.MethodGet, "/feature", "", nil)
	}
	if got := e.breakerState(t, ServiceBilling); got != 2 {
		t.Errorf("breaker state after 2 bare 503s = %v; want 2 (open)", got)
	}
}
