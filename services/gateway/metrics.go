package gateway

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Denial reasons (label values of agentidp_gateway_denials_total).
const (
	denyAuth   = "auth"
	denyTier   = "tier"
	denyPolicy = "policy"
	// denyRevoked: a valid token that was revoked (jti or watermark).
	denyRevoked = "revoked"
)

type metrics struct {
	requests *prometheus.CounterVec
	denials  *prometheus.CounterVec
	upstream *prometheus.HistogramVec
	fallback prometheus.Counter
	// revocationFallback counts checks with the token service made while
	// the revocation state was stale, by outcome.
	revocationFallback *prometheus.CounterVec
	breaker            *prometheus.GaugeVec

	denyAuth    prometheus.Counter
	denyTier    prometheus.Counter
	denyPolicy  prometheus.Counter
	denyRevoked prometheus.Counter
}

// routeCounters caches the resolved requests_total children of one route,
// so the hot path does no label hashing or allocation after the first
// request with a given code.
type routeCounters struct {
	label string
	codes [600]atomic.Pointer[counterBox]
}

type counterBox struct{ prometheus.Counter }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentidp_gateway_requests_total",
			Help: "Requests by route (the route table's path) and status code.",
		}, []string{"route", "code"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentidp_gateway_denials_total",
			Help: "Requests refused by the gateway, by reason (auth, revoked, tier, policy).",
		}, []string{"reason"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agentidp_gateway_upstream_duration_seconds",
			Help:    "Time spent proxying to an upstream service, including the response body.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service"}),
		fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentidp_gateway_tier_fallback_total",
			Help: "Calls decided by this replica's outage share of the daily limit (and usage batches kept for later) because the shared cache failed.",
		}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentidp_gateway_upstream_breaker_state",
			Help: "Circuit breaker of each upstream service: 0 closed, 1 half-open (probing), 2 open (failing fast with 503).",
		}, []string{"service"}),
	}
	m.revocationFallback = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentidp_gateway_revocation_fallback_total",
		Help: "Tokens checked with the token service because the revocation state was stale, by outcome (active, revoked, cached, error).",
	}, []string{"outcome"})
	for _, o := range []string{fallbackActive, fallbackRevoked, fallbackCached, fallbackError} {
		m.revocationFallback.WithLabelValues(o)
	}
	m.denyAuth = m.denials.WithLabelValues(denyAuth)
	m.denyTier = m.denials.WithLabelValues(denyTier)
	m.denyPolicy = m.denials.WithLabelValues(denyPolicy)
	m.denyRevoked = m.denials.WithLabelValues(denyRevoked)
	if reg != nil {
		reg.MustRegister(m.requests, m.denials, m.upstream, m.fallback, m.revocationFallback, m.breaker)
	}
	return m
}

func (m *metrics) request(rc *routeCounters, code int) {
	if code < 100 || code >= len(rc.codes) {
		m.requests.WithLabelValues(rc.label, strconv.Itoa(code)).Inc()
		return
	}
	b := rc.codes[code].Load()
	if b == nil {
		b = &counterBox{m.requests.WithLabelValues(rc.label, strconv.Itoa(code))}
		rc.codes[code].Store(b)
	}
	b.Inc()
}

func (m *metrics) deny(reason string) {
	switch reason {
	case denyAuth:
		m.denyAuth.Inc()
	case denyTier:
		m.denyTier.Inc()
	case denyPolicy:
		m.denyPolicy.Inc()
	case denyRevoked:
		m.denyRevoked.Inc()
	}
}

// registerFreshness registers the revocation state's gauges, computed when
// scraped (nothing on the request path).
func (m *metrics) registerFreshness(reg prometheus.Registerer, age, stale func() float64) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentidp_gateway_revocation_state_age_seconds",
		Help: "Time since the revocation feed last delivered an entry or a token service heartbeat.",
	}, age), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentidp_gateway_revocation_stale",
		Help: "1 while the revocation state is older than GATEWAY_REVOCATION_MAX_STALENESS (tokens checked with the token service), else 0.",
	}, stale))
}
