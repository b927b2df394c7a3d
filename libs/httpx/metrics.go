package httpx

import (
	"errors"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the per-service HTTP instrumentation.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers agentidp_http_requests_total and
// agentidp_http_request_duration_seconds on reg.
func NewMetrics(reg prometheus.Registerer, service string) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "agentidp_http_requests_total",
			Help:        "HTTP requests by route template and status code.",
			ConstLabels: prometheus.Labels{"service": service},
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "agentidp_http_request_duration_seconds",
			Help:        "HTTP request latency by route template.",
			ConstLabels: prometheus.Labels{"service": service},
			Buckets:     []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Register registers c on reg and returns it, or the collector already
// registered under the same description (a service built twice on one
// registry, as tests and the all-in-one process do, shares its metrics).
// Any other registration error is a programming error and panics, like
// prometheus.MustRegister.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Middleware records every request under its route template (never the raw
// path, which would explode label cardinality).
func (m *Metrics) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = toError(err).Status
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		method := c.Request().Method
		m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		return err
	}
}
