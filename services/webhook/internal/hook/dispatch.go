package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxResponseRead is how much of an endpoint's response body is read.
const MaxResponseRead = 64 << 10

// LeaseMargin is added to the request timeout to form the default lease: a
// worker that dies mid-request loses its lease and the delivery is retried
// (with the same webhook-id) once the lease has expired.
const LeaseMargin = 30 * time.Second

// DispatcherOptions configure delivery.
type DispatcherOptions struct {
	Client         *http.Client // the safehttp client
	Schedule       Schedule
	Timeout        time.Duration // per request (also enforced by the client)
	DisableAfter   time.Duration // disable an endpoint failing continuously this long
	Workers        int           // concurrent requests in this process
	MaxPerEndpoint int           // concurrent requests per endpoint, across replicas
	PollInterval   time.Duration // how often due deliveries are looked for without a kick
	Lease          time.Duration // how long a claimed delivery is reserved (default Timeout+LeaseMargin; longer than Timeout)
	Source         string        // source of the events the dispatcher publishes
	NotifyOutbox   func()        // wakes the outbox relay after a commit with events
	Metrics        *Metrics
	Logger         *slog.Logger
	Now            func() time.Time
	// Rand returns a random value in [0, 1) choosing each retry's jitter
	// (default rand.Float64); tests inject a fixed source.
	Rand func() float64
}

// Dispatcher turns events into deliveries and sends due deliveries.
type Dispatcher struct {
	store   Store
	secrets SecretStore
	o       DispatcherOptions
	kick    chan struct{}
}

// NewDispatcher returns a dispatcher; zero options get defaults.
func NewDispatcher(store Store, secrets SecretStore, o DispatcherOptions) *Dispatcher {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if len(o.Schedule) == 0 {
		o.Schedule = DefaultSchedule
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MaxPerEndpoint <= 0 {
		o.MaxPerEndpoint = 4
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Lease <= o.Timeout {
		o.Lease = o.Timeout + LeaseMargin
	}
	if o.NotifyOutbox == nil {
		o.NotifyOutbox = func() {}
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return &Dispatcher{store: store, secrets: secrets, o: o, kick: make(chan struct{}, 1)}
}

func (d *Dispatcher) now() time.Time { return d.o.Now().UTC().Truncate(time.Microsecond) }

// Kick wakes the dispatcher now (non-blocking).
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Ingest creates the deliveries for a batch of events (idempotently: a
// redelivered event creates nothing new). An error means nothing was
// written and the batch should be retried.
func (d *Dispatcher) Ingest(ctx context.Context, evs []events.Envelope) error {
	n, err := d.store.Enqueue(ctx, evs, d.now(), skipOwnNotices)
	if err != nil {
		return fmt.Errorf("enqueue deliveries: %w", err)
	}
	if n > 0 {
		d.Kick()
	}
	return nil
}

// skipOwnNotices keeps an endpoint from being told about its own failures:
// a failing endpoint subscribed to "*" would otherwise feed itself notices.
func skipOwnNotices(sub Subscription, e events.Envelope) bool {
	return (e.Type == events.WebhookDeliveryFailed || e.Type == events.WebhookEndpointDisabled) && e.Subject == sub.ID
}

// Run claims and sends due deliveries until ctx ends, then waits for the
// requests in flight (which end with ctx). One claim fills every free
// worker slot (a batch across endpoints); the loop claims again at once
// when new deliveries are enqueued (Ingest, Kick) or a worker finishes,
// and otherwise every PollInterval, for retries falling due.
func (d *Dispatcher) Run(ctx context.Context) error {
	slots := make(chan struct{}, d.o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	var lastGauge time.Time
	for ctx.Err() == nil {
		if time.Since(lastGauge) >= time.Second {
			lastGauge = time.Now()
			if n, err := d.store.CountPending(ctx); err == nil {
				d.o.Metrics.Pending.Set(float64(n))
			}
		}
		free := cap(slots) - len(slots)
		if free > 0 {
			now := d.now()
			claimed, err := d.store.Claim(ctx, now, now.Add(d.o.Lease), free, d.o.MaxPerEndpoint)
			if err != nil && ctx.Err() == nil {
				d.o.Logger.Warn("claim webhook deliveries", "err", err)
			}
			for _, c := range claimed {
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.attempt(ctx, c)
					<-slots
					d.Kick() // a worker slot and an endpoint slot are free again
				}()
			}
		}
		t := time.NewTimer(d.o.PollInterval)
		select {
		case <-ctx.Done():
		case <-d.kick:
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// attempt sends one delivery and records the outcome. No transaction is
// open while the request is in flight: the delivery is leased.
func (d *Dispatcher) attempt(ctx context.Context, c Claimed) {
	log := d.o.Logger.With("webhook_id", c.SubscriptionID, "delivery_id", c.ID, "event_id", c.EventID)
	data, err := d.secrets.Get(ctx, c.SecretPath)
	if err != nil {
		// Not the endpoint's fault: do not count an attempt; the lease
		// expires and the delivery is claimed again.
		if ctx.Err() == nil {
			log.Error("load webhook signing secret; will retry after the lease", "err", err)
		}
		return
	}
	start := time.Now()
	code, retryAfter, sendErr := d.send(ctx, c, data)
	d.o.Metrics.Duration.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return // shutting down: the lease expires and another attempt follows
	}
	now := d.now()
	// The store calls EndpointDisabled inside its transaction (perhaps more
	// than once, if the transaction is retried); the disabling is logged
	// only once it is committed.
	var disabledReason string
	out := Outcome{At: now, StatusCode: code, DisableAfter: d.o.DisableAfter,
		EndpointDisabled: func(sub Subscription, reason string) (events.Envelope, error) {
			disabledReason = reason
			return d.disabledEvent(sub, reason)
		}}
	attempts := c.Attempts + 1
	switch {
	case sendErr == nil:
		out.Status = StatusDelivered
	case code != nil && *code == http.StatusGone:
		out.Status, out.Error, out.Disable = StatusDeadLetter, sendErr.Error(), true
	default:
		out.Error = sendErr.Error()
		if delay, ok := d.o.Schedule.Next(attempts, retryAfter, d.o.Rand()); ok {
			next := now.Add(delay)
			out.Status, out.NextAttemptAt = StatusFailed, &next
		} else {
			out.Status = StatusDeadLetter
		}
	}
	if out.Status == StatusDeadLetter && c.EventType != string(events.WebhookDeliveryFailed) {
		ev, err := events.New(events.WebhookDeliveryFailed, d.o.Source, c.OrganizationID, c.SubscriptionID, DeliveryFailedData{
			WebhookID: c.SubscriptionID, DeliveryID: c.ID, EventID: c.EventID, EventType: c.EventType,
			Attempts: attempts, LastStatusCode: code, LastError: out.Error,
		})
		if err == nil {
			out.Events = append(out.Events, ev)
		}
	}
	if err := d.store.Complete(ctx, c.ID, out); err != nil {
		log.Error("record webhook delivery attempt", "err", err)
		return
	}
	d.o.Metrics.Deliveries.WithLabelValues(out.Status).Inc()
	if disabledReason != "" {
		d.o.Metrics.Disabled.Inc()
		log.Warn("webhook endpoint disabled; its pending deliveries and further events are recorded as "+StatusSkippedDisabled,
			"organization_id", c.OrganizationID, "reason", disabledReason, "attempts", attempts)
	}
	if out.Status != StatusDelivered {
		d.o.NotifyOutbox()
		log.Info("webhook delivery failed", "status", out.Status, "attempts", attempts, "err", out.Error, "cause", logCause(sendErr))
	}
}

// disabledEvent builds webhook.endpoint.disabled for a subscription being
// disabled.
func (d *Dispatcher) disabledEvent(sub Subscription, reason string) (events.Envelope, error) {
	return events.New(events.WebhookEndpointDisabled, d.o.Source, sub.OrganizationID, sub.ID, EndpointDisabledData{
		WebhookID: sub.ID, URL: sub.URL, Reason: reason, FailureCount: sub.FailureCount,
	})
}

// send POSTs the payload. It returns the response status (nil when none
// arrived), the Retry-After on 429/503, and an error unless the endpoint
// answered 2xx.
func (d *Dispatcher) send(ctx context.Context, c Claimed, secrets map[string]string) (*int, time.Duration, error) {
	ts := d.o.Now()
	sig, err := Sign(SigningSecrets(secrets, ts), c.EventID, ts, c.Payload)
	if err != nil {
		return nil, 0, fmt.Errorf("sign: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, c.EventID)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(ts.Unix()))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return nil, 0, &transportError{cause: err}
	}
	// Read a bounded amount so the connection can be reused for small
	// answers; a larger body is abandoned (the connection is closed).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseRead))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return &code, 0, nil
	case code >= 300 && code < 400:
		return &code, 0, fmt.Errorf("HTTP %d: redirects are not followed", code)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return &code, ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), fmt.Errorf("HTTP %d", code)
	default:
		return &code, 0, fmt.Errorf("HTTP %d", code)
	}
}

// transportError is a failed request. Its text, which tenants see in the
// delivery list and webhook.delivery.failed, is a phrase from safehttp's
// fixed vocabulary; the cause (which may name our resolver, the addresses a
// name resolved to or a local port) goes to our log only.
type transportError struct{ cause error }

func (e *transportError) Error() string {
	if phrase, ok := safehttp.Describe(e.cause); ok {
		return phrase
	}
	return safehttp.FailureConnection
}

func (e *transportError) Unwrap() error { return e.cause }

// logCause is what the log records of a send error: the cause of a
// transport error without the request URL (an endpoint URL may carry a
// token in its query), the error itself otherwise.
func logCause(err error) error {
	var te *transportError
	if !errors.As(err, &te) {
		return err
	}
	var ue *url.Error
	if errors.As(te.cause, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return te.cause
}

// Metrics are the delivery metrics.
type Metrics struct {
	Deliveries *prometheus.CounterVec // by outcome: delivered, failed, dead_letter
	Duration   prometheus.Histogram
	Pending    prometheus.Gauge
	Disabled   prometheus.Counter // endpoints disabled (410 Gone, failing too long)
}

// NewMetrics registers the metrics on reg (nil: unregistered), reusing
// collectors already registered under the same names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentidp_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome (delivered, failed, dead_letter)."}, []string{"outcome"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentidp_webhook_delivery_duration_seconds",
			Help: "Duration of webhook delivery requests.", Buckets: prometheus.DefBuckets}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_webhook_pending",
			Help: "Webhook deliveries not yet delivered nor dead-lettered."}),
		Disabled: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_webhook_endpoints_disabled_total",
			Help: "Webhook endpoints disabled by the service (410 Gone, or failing continuously for WEBHOOK_DISABLE_AFTER)."}),
	}
	if reg != nil {
		m.Deliveries = httpx.Register(reg, m.Deliveries)
		m.Duration = httpx.Register(reg, m.Duration)
		m.Pending = httpx.Register(reg, m.Pending)
		m.Disabled = httpx.Register(reg, m.Disabled)
	}
	return m
}
