package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// upstreamBreaker is the circuit breaker of one upstream service: after
// BreakerFailures consecutive failures (no response, a timeout, or a 502,
// 504 or bare 503 from the upstream) it opens, and that service's routes answer
// 503 at once for BreakerCooldown instead of each waiting out a dial or a
// header timeout; then one request at a time probes it (half-open), and a
// success closes it again. Other upstreams have their own breakers.
//
// gobreaker takes a mutex on every call. While the breaker is closed and
// the upstream's last request succeeded, which is nearly always, requests
// skip gobreaker entirely and cost two atomic loads; gobreaker sees only
// failures, and every request once one has been seen, until the upstream
// answers well again.
type upstreamBreaker struct {
	service  string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	cooldown time.Duration
	logger   *slog.Logger
	gauge    prometheus.Gauge

	// state mirrors cb's state (set in OnStateChange, under cb's mutex).
	state atomic.Int32
	// failing counts the failures seen since the last success while
	// closed; zero means the next request may skip cb.
	failing atomic.Int32
	// openedAt is when the breaker last opened (UnixNano), for Retry-After.
	openedAt atomic.Int64
}

// Breaker defaults (GATEWAY_UPSTREAM_BREAKER_FAILURES,
// GATEWAY_UPSTREAM_BREAKER_COOLDOWN).
const (
	defaultBreakerFailures = 5
	defaultBreakerCooldown = 5 * time.Second
)

// errUpstreamFailed is what gobreaker is told about a failed request.
var errUpstreamFailed = errors.New("upstream failed")

// errExcluded marks a request that says nothing about the upstream (the
// client went away): neither a success nor a failure.
var errExcluded = errors.New("request abandoned by the client")

// breakerOpenError is returned instead of sending a request while the
// breaker refuses it.
type breakerOpenError struct {
	service    string
	retryAfter time.Duration
}

func (e *breakerOpenError) Error() string {
	return "circuit breaker of upstream " + e.service + " is open"
}

func newUpstreamBreaker(service string, failures int, cooldown time.Duration, gauge prometheus.Gauge, logger *slog.Logger) *upstreamBreaker {
	b := &upstreamBreaker{service: service, cooldown: cooldown, logger: logger, gauge: gauge}
	gauge.Set(float64(gobreaker.StateClosed))
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        service,
		MaxRequests: 1, // one probe at a time while half-open
		Timeout:     cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
			}
			if to == gobreaker.StateClosed {
				b.failing.Store(0)
			}
			b.state.Store(int32(to))
			b.gauge.Set(float64(to))
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			b.logger.Log(context.Background(), level, "upstream circuit breaker "+to.String(), "service", name, "from", from.String(),
				"to", to.String(), "cooldown", cooldown.String())
		},
	})
	return b
}

// retryAfter is what is left of the cool-down (at least a second).
func (b *upstreamBreaker) retryAfter() time.Duration {
	left := b.cooldown - time.Since(time.Unix(0, b.openedAt.Load()))
	return max(left, time.Second)
}

// outcome classifies a round trip for the breaker: nil (success),
// errUpstreamFailed or errExcluded.
//
// A 503 that is one of our services' problem+json answers is a success: the
// service is up and answered at once that one feature's dependency is away
// (billing without Stripe, a payment provider down). Opening the breaker
// would take its working routes down with it and save nothing. A 503
// without it (a proxy or load balancer in front of a service with no ready
// instance), a 502 or a 504 is a failure.
func outcome(r *http.Request, resp *http.Response, err error) error {
	switch {
	case err != nil && r.Context().Err() != nil:
		return errExcluded
	case err != nil:
		return errUpstreamFailed
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
		return errUpstreamFailed
	case resp.StatusCode == http.StatusServiceUnavailable:
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			return nil
		}
		return errUpstreamFailed
	}
	return nil
}

// breakerTransport sends a route's requests through its upstream's
// breaker.
type breakerTransport struct {
	next http.RoundTripper
	b    *upstreamBreaker
}

// RoundTrip implements http.RoundTripper.
func (t *breakerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b := t.b
	if b.state.Load() == int32(gobreaker.StateClosed) && b.failing.Load() == 0 {
		resp, err := t.next.RoundTrip(r)
		if outcome(r, resp, err) == errUpstreamFailed {
			// Tell gobreaker after the fact; it is closed, so Allow admits.
			if done, aerr := b.cb.Allow(); aerr == nil {
				done(errUpstreamFailed)
			}
			b.failing.Add(1)
		}
		return resp, err
	}
	done, err := b.cb.Allow()
	if err != nil { // open, or half-open with its probe in flight
		return nil, &breakerOpenError{service: b.service, retryAfter: b.retryAfter()}
	}
	resp, err := t.next.RoundTrip(r)
	o := outcome(r, resp, err)
	done(o)
	switch o {
	case nil:
		b.failing.Store(0)
	case errUpstreamFailed:
		b.failing.Add(1)
	}
	return resp, err
}

// CloseIdleConnections passes through to the wrapped transport.
func (t *breakerTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
