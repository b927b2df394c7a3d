package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one health check: nil when healthy.
type Check func(ctx context.Context) error

// Detail reports one named piece of a service's state for /health/detailed
// (a consumer's lag, the age of the revocation state). The value is shown as
// is (it must encode as JSON); a non-nil error marks the process degraded
// and is shown by its category only.
type Detail func(ctx context.Context) (any, error)

// Dependency states shown by /health/detailed (the seed's vocabulary).
const (
	StateHealthy     = "healthy"
	StateDegraded    = "degraded" // answered, but slower than SlowProbe
	StateUnreachable = "unreachable"
)

// Overall statuses of /health/detailed.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusDown     = "down"
)

// SlowProbe is the probe latency above which a dependency that answered is
// reported degraded (the seed's 1000 ms).
const SlowProbe = time.Second

// probeTimeout bounds every probe so a hung dependency costs one timeout.
const probeTimeout = 2 * time.Second

// Health is the health registry of one process. It separates what decides
// readiness from what only degrades /health/detailed:
//
//   - ready checks are process-local state the process cannot serve
//     without (the gateway's keys, organisations and revocation state
//     loaded once); they gate /health/ready;
//   - dependencies are shared backends (PostgreSQL, Redis, NATS, Vault) the
//     process survives without (outbox, fallback, 503 with Retry-After).
//     Every replica shares them, so taking replicas out of their Service
//     when one is away only turns a clean 503 into connection refused:
//     they never gate readiness, they degrade /health/detailed and set
//     agentidp_dependency_up;
//   - details are named providers (consumer lag, revocation age) other
//     parts of the process register.
//
// A nil *Health accepts registrations and ignores them, so code built
// without one (unit tests) needs no guard.
type Health struct {
	mu       sync.Mutex
	ready    map[string]Check
	deps     map[string]Check
	details  map[string]Detail
	draining atomic.Bool
	up       *prometheus.GaugeVec
}

// NewHealth returns an empty registry whose agentidp_dependency_up gauge is
// registered with reg (when not nil).
func NewHealth(reg prometheus.Registerer) *Health {
	h := &Health{
		ready:   map[string]Check{},
		deps:    map[string]Check{},
		details: map[string]Detail{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentidp_dependency_up",
			Help: "1 when the dependency answered its last probe, 0 when it did not.",
		}, []string{"dependency"}),
	}
	if reg != nil {
		reg.MustRegister(h.up)
	}
	return h
}

// AddReady adds a check /health/ready requires (state the process cannot
// serve without).
func (h *Health) AddReady(name string, c Check) {
	if h == nil || c == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[name] = c
}

// AddDependency adds a dependency probe: a cheap round trip to a shared
// backend. It degrades /health/detailed, never readiness.
func (h *Health) AddDependency(name string, c Check) {
	if h == nil || c == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deps[name] = c
	h.up.WithLabelValues(name).Set(1)
}

// AddDetail adds a named detail provider to /health/detailed. Providers
// run on every /health/detailed request and every probe round: they must
// only read state the process already has (no network round trip).
func (h *Health) AddDetail(name string, d Detail) {
	if h == nil || d == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.details[name] = d
}

// SetDraining marks the process as shutting down: /health/ready answers
// 503 from now on so load balancers stop sending new requests.
func (h *Health) SetDraining() {
	if h != nil {
		h.draining.Store(true)
	}
}

// Draining reports whether SetDraining was called.
func (h *Health) Draining() bool { return h != nil && h.draining.Load() }

func (h *Health) snapshot() (ready, deps map[string]Check, details map[string]Detail) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ready, deps, details = make(map[string]Check, len(h.ready)), make(map[string]Check, len(h.deps)), make(map[string]Detail, len(h.details))
	for k, v := range h.ready {
		ready[k] = v
	}
	for k, v := range h.deps {
		deps[k] = v
	}
	for k, v := range h.details {
		details[k] = v
	}
	return ready, deps, details
}

// Ready runs the ready checks; ok is false while draining or when one fails.
func (h *Health) Ready(ctx context.Context) (results map[string]string, ok bool) {
	ready, _, _ := h.snapshot()
	results = RunChecks(ctx, ready)
	ok = !h.Draining()
	for _, v := range results {
		if v != "ok" {
			ok = false
		}
	}
	if h.Draining() {
		results["shutdown"] = "draining"
	}
	return results, ok
}

// DependencyReport is one dependency in /health/detailed. Error is a
// category (timeout, connection_refused, ...), never the error text, which
// may carry addresses or credentials.
type DependencyReport struct {
	State     string  `json:"state"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// DetailReport is one detail provider's output in /health/detailed.
type DetailReport struct {
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Report is the body of /health/detailed.
type Report struct {
	Status       string                      `json:"status"`
	Ready        bool                        `json:"ready"`
	Checks       map[string]string           `json:"checks"`
	Dependencies map[string]DependencyReport `json:"dependencies"`
	Details      map[string]DetailReport     `json:"details,omitempty"`
}

// Detailed probes every dependency (concurrently, each bounded), runs the
// detail providers and updates agentidp_dependency_up.
func (h *Health) Detailed(ctx context.Context) Report {
	ready, deps, details := h.snapshot()
	cctx, cancel := context.WithTimeout(ctx, probeTimeout)
	checks := RunChecks(cctx, ready)
	cancel()
	for k, v := range checks {
		if v != "ok" {
			checks[k] = "not ready" // the text may name internals; the category is enough
		}
	}
	rep := Report{Status: StatusOK, Ready: !h.Draining(), Checks: checks,
		Dependencies: make(map[string]DependencyReport, len(deps))}
	for _, v := range checks {
		if v != "ok" {
			rep.Ready = false
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, probe := range deps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			start := time.Now()
			err := probe(pctx)
			lat := time.Since(start)
			d := DependencyReport{State: StateHealthy, LatencyMS: float64(lat.Microseconds()) / 1000}
			switch {
			case err != nil:
				d.State, d.Error = StateUnreachable, ErrorCategory(err)
				h.up.WithLabelValues(name).Set(0)
			case lat > SlowProbe:
				d.State = StateDegraded
				h.up.WithLabelValues(name).Set(1)
			default:
				h.up.WithLabelValues(name).Set(1)
			}
			mu.Lock()
			rep.Dependencies[name] = d
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(details) > 0 {
		rep.Details = make(map[string]DetailReport, len(details))
		for name, d := range details {
			v, err := d(ctx)
			r := DetailReport{Value: v}
			if err != nil {
				r.Error = ErrorCategory(err)
				rep.Status = StatusDegraded
			}
			rep.Details[name] = r
		}
	}
	for _, d := range rep.Dependencies {
		if d.State != StateHealthy {
			rep.Status = StatusDegraded
		}
	}
	if !rep.Ready {
		rep.Status = StatusDown
	}
	return rep
}

// Watch probes the dependencies every interval until ctx ends, so
// agentidp_dependency_up stays current when nobody asks /health/detailed.
func (h *Health) Watch(ctx context.Context, interval time.Duration) {
	if h == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Detailed(ctx)
		}
	}
}

// DetailedHandler serves /health/detailed: 200 when ok, 207 when degraded,
// 503 when down (the seed's codes).
func (h *Health) DetailedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := h.Detailed(r.Context())
		code := http.StatusOK
		switch rep.Status {
		case StatusDegraded:
			code = http.StatusMultiStatus
		case StatusDown:
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// PublicReport is the public form of /health/detailed: the overall status
// and each dependency's state, nothing else (no latencies, error
// categories, check names or details an attacker could map the
// deployment with).
type PublicReport struct {
	Status       string            `json:"status"`
	Dependencies map[string]string `json:"dependencies"`
}

// PublicHandler serves PublicReport with the same status codes as
// DetailedHandler. It probes at most once per maxAge whatever the request
// rate, so the public endpoint cannot be used to hammer the dependencies.
func (h *Health) PublicHandler(maxAge time.Duration) http.Handler {
	var mu sync.Mutex
	var last PublicReport
	var at time.Time
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if at.IsZero() || time.Since(at) > maxAge {
			rep := Report{Status: StatusOK}
			if h != nil {
				// Not the caller's cancellation: a client that hangs up
				// must not leave "unreachable" cached for everyone.
				rep = h.Detailed(context.WithoutCancel(r.Context()))
			}
			last = PublicReport{Status: rep.Status, Dependencies: make(map[string]string, len(rep.Dependencies))}
			for k, v := range rep.Dependencies {
				last.Dependencies[k] = v.State
			}
			at = time.Now()
		}
		rep := last
		mu.Unlock()
		code := http.StatusOK
		switch rep.Status {
		case StatusDegraded:
			code = http.StatusMultiStatus
		case StatusDown:
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// categorized is an error that names its own category.
type categorized struct {
	category string
	err      error
}

func (c *categorized) Error() string    { return c.category + ": " + c.err.Error() }
func (c *categorized) Unwrap() error    { return c.err }
func (c *categorized) Category() string { return c.category }

// Categorize tags err with a category /health/detailed shows instead of
// the error text (for example "disconnected" for a NATS status).
func Categorize(category string, err error) error {
	if err == nil {
		return nil
	}
	return &categorized{category: category, err: err}
}

// ErrorCategory names the kind of a dependency error without its text
// (which may carry addresses or credentials).
func ErrorCategory(err error) string {
	var c interface{ Category() string }
	if errors.As(err, &c) {
		return c.Category()
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "dns"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "network"
	}
	return "error"
}

// InternalHandler serves the internal port: /health/live (the process
// answers), /health/ready (started and not draining; dependencies do not
// count, see Health), /health/detailed and /metrics.
func InternalHandler(gatherer prometheus.Gatherer, h *Health) http.Handler {
	if h == nil {
		h = NewHealth(nil)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
		defer cancel()
		results, ok := h.Ready(ctx)
		status, code := "ok", http.StatusOK
		if !ok {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "checks": results})
	})
	mux.Handle("GET /health/detailed", h.DetailedHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	// Profiles on the internal port only (never routed by the gateway),
	// for diagnosing a live replica: go tool pprof http://<pod>:9090/debug/pprof/profile
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// RunChecks runs checks concurrently and returns "ok" or the error text per name.
func RunChecks(ctx context.Context, checks map[string]Check) map[string]string {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string]string, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func(n string, check Check) {
			defer wg.Done()
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			out[n] = res
			mu.Unlock()
		}(n, checks[n])
	}
	wg.Wait()
	return out
}
