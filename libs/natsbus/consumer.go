package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Delivery is one event handed to a consumer.
type Delivery struct {
	Event        events.Envelope
	NumDelivered uint64
	Sequence     uint64
}

// BatchHandler processes a batch of events. Returning nil acknowledges the
// whole batch. An error wrapped with Permanent says a message can never
// succeed (undecodable, invalid): the batch is retried one message at a
// time and the message still failing permanently goes to the dead letter.
// Any other error is transient (database, cache, downstream service away):
// the batch is retried with capped exponential backoff for as long as it
// takes, and never dead-lettered. Handlers must be idempotent: the same
// event may arrive again.
type BatchHandler func(ctx context.Context, batch []Delivery) error

// PermanentError marks a handler failure that no retry can fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as a failure no retry can fix (a message that cannot
// be decoded or is invalid), so the consumer dead-letters the message
// instead of retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// ConsumerOptions describe a durable consumer.
type ConsumerOptions struct {
	Durable    string   // consumer name, shared by a service's replicas
	Subjects   []string // filter subjects (several need NATS 2.10+)
	AckWait    time.Duration
	BatchSize  int           // default 256; also bounds pending messages (MaxAckPending = 4×)
	MaxWait    time.Duration // how long a fetch waits for a batch to fill (default 200ms)
	Backoff    time.Duration // first retry delay after a transient failure (default 250ms)
	MaxBackoff time.Duration // cap of the doubling retry delay (default 30s)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// ConsumerState is what a service reports about one consumer (for
// /health/detailed). It never carries an error's text, which could hold a
// connection string or other secret: only its category.
type ConsumerState struct {
	Durable string `json:"durable"`
	// Retrying is true while a batch keeps failing transiently.
	Retrying bool `json:"retrying"`
	// Since is when the current run of failures began (zero when healthy).
	Since time.Time `json:"since,omitzero"`
	// ConsecutiveFailures counts failed attempts since the last success.
	ConsecutiveFailures int `json:"consecutiveFailures"`
	// LastErrorCategory is "timeout", "network", "dependency" or what the
	// error's ErrorCategory method says.
	LastErrorCategory string    `json:"lastErrorCategory,omitempty"`
	LastErrorAt       time.Time `json:"lastErrorAt,omitzero"`
}

// Consumer is a durable JetStream consumer of the event stream, plus the
// same durable on the replay stream (what `agentidp events replay`
// republishes for it).
type Consumer struct {
	js     jetstream.JetStream
	o      ConsumerOptions
	handle BatchHandler
	m      *consumerMetrics

	mu    sync.Mutex
	state ConsumerState
}

// NewConsumer prepares a consumer; Run starts it.
func NewConsumer(js jetstream.JetStream, o ConsumerOptions, handle BatchHandler) *Consumer {
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 200 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Consumer{js: js, o: o, handle: handle, m: newConsumerMetrics(o.Registerer, o.Durable),
		state: ConsumerState{Durable: o.Durable}}
}

// Consume runs a durable consumer until ctx ends (NewConsumer then Run).
func Consume(ctx context.Context, js jetstream.JetStream, o ConsumerOptions, handle BatchHandler) error {
	return NewConsumer(js, o, handle).Run(ctx)
}

// State returns the consumer's current health.
func (c *Consumer) State() ConsumerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ReplaySubject is the subject `agentidp events replay` republishes a
// dead-lettered event to so that only the named consumer receives it again.
func ReplaySubject(durable string) string { return events.ReplayPrefix + "." + durable }

// Run consumes until ctx ends. Undecodable messages and messages the
// handler fails permanently are copied to agentidp_dlq.<durable> and
// terminated; transient failures are retried without limit while the
// batch is held (kept in progress, nothing more fetched).
func (c *Consumer) Run(ctx context.Context) error {
	// MaxDeliver -1: the delivery count never decides anything; a message
	// redelivered after a crash or an AckWait expiry is simply handled
	// again (handlers are idempotent). MaxAckPending bounds what one
	// durable holds across every replica while its batches fail.
	cfg := jetstream.ConsumerConfig{
		Durable:       c.o.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.o.BatchSize * 4,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(c.o.Subjects) == 1 {
		cfg.FilterSubject = c.o.Subjects[0]
	} else {
		cfg.FilterSubjects = c.o.Subjects
	}
	replayCfg := cfg
	replayCfg.FilterSubjects = nil
	replayCfg.FilterSubject = ReplaySubject(c.o.Durable)

	var wg sync.WaitGroup
	wg.Go(func() {
		// Replays are rare: a long poll keeps this loop nearly free.
		c.runOn(ctx, events.ReplayStream, replayCfg, 5*time.Second)
	})
	c.runOn(ctx, events.StreamName, cfg, c.o.MaxWait)
	wg.Wait()
	return nil
}

func (c *Consumer) runOn(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, maxWait time.Duration) {
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = c.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		if err == nil {
			break
		}
		c.o.Logger.Warn("create consumer, retrying", "durable", c.o.Durable, "stream", stream, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	for ctx.Err() == nil {
		// The fetch ends with ctx too, so shutdown never waits out a long
		// poll.
		fctx, fcancel := context.WithTimeout(ctx, maxWait)
		batch, err := cons.Fetch(c.o.BatchSize, jetstream.FetchContext(fctx))
		if err != nil {
			fcancel()
			if ctx.Err() != nil {
				return
			}
			c.o.Logger.Warn("fetch events", "durable", c.o.Durable, "stream", stream, "err", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		var msgs []jetstream.Msg
		var deliveries []Delivery
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				_ = msg.Term()
				continue
			}
			env, err := events.Decode(msg.Data())
			if err != nil {
				c.deadLetter(ctx, msg, "undecodable", "undecodable: "+err.Error())
				continue
			}
			msgs = append(msgs, msg)
			deliveries = append(deliveries, Delivery{Event: env, NumDelivered: meta.NumDelivered, Sequence: meta.Sequence.Stream})
			if stream == events.StreamName {
				c.m.lag.Set(float64(meta.NumPending))
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			c.o.Logger.Debug("fetch batch ended", "durable", c.o.Durable, "err", err)
		}
		fcancel()
		if len(deliveries) == 0 {
			continue
		}
		c.process(ctx, msgs, deliveries)
	}
}

// process handles one batch to its end: acknowledged, dead-lettered
// (permanent failures only, one message at a time) or, when ctx ends,
// handed back for redelivery.
func (c *Consumer) process(ctx context.Context, msgs []jetstream.Msg, ds []Delivery) {
	err := c.handleUntilDone(ctx, msgs, ds)
	switch {
	case err == nil:
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				c.o.Logger.Warn("ack event", "durable", c.o.Durable, "err", err)
			}
		}
		c.m.processed.Add(float64(len(msgs)))
	case ctx.Err() != nil:
		// Shutting down: let another replica take the batch now rather
		// than after AckWait.
		for _, msg := range msgs {
			_ = msg.Nak()
		}
	case len(msgs) == 1:
		c.deadLetter(ctx, msgs[0], "permanent", err.Error())
	default:
		// Find the message that can never succeed; the others pass.
		for i := range msgs {
			c.process(ctx, msgs[i:i+1], ds[i:i+1])
		}
	}
}

// handleUntilDone calls the handler until it succeeds, fails permanently
// or ctx ends, backing off between transient failures (capped exponential,
// jittered) while keeping the batch's messages in progress so JetStream
// does not redeliver them elsewhere meanwhile.
func (c *Consumer) handleUntilDone(ctx context.Context, msgs []jetstream.Msg, ds []Delivery) error {
	delay := c.o.Backoff
	for {
		err := c.handle(ctx, ds)
		if err == nil {
			c.succeeded()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if IsPermanent(err) {
			return err
		}
		n := c.failed(err)
		c.o.Logger.Warn("event batch failed, retrying", "durable", c.o.Durable, "count", len(msgs),
			"consecutiveFailures", n, "retryIn", delay.String(), "err", err)
		if !c.holdFor(ctx, msgs, jitter(delay)) {
			return ctx.Err()
		}
		delay = min(delay*2, c.o.MaxBackoff)
	}
}

// holdFor waits d, telling JetStream the messages are still in progress
// often enough that their AckWait never expires. It reports false if ctx
// ended first.
func (c *Consumer) holdFor(ctx context.Context, msgs []jetstream.Msg, d time.Duration) bool {
	inProgress := func() {
		for _, msg := range msgs {
			_ = msg.InProgress() // NATS away too: the message redelivers later, harmlessly
		}
	}
	inProgress() // the failed attempt itself may have used much of AckWait
	t := time.NewTicker(max(c.o.AckWait/3, time.Millisecond))
	defer t.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-t.C:
			inProgress()
		}
	}
}

// jitter spreads d over [d/2, d] so replicas retrying after the same
// outage do not hit the recovering dependency in step.
func jitter(d time.Duration) time.Duration {
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

func (c *Consumer) succeeded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.state.Retrying {
		return
	}
	c.o.Logger.Info("event consumer recovered", "durable", c.o.Durable,
		"failedFor", time.Since(c.state.Since).Round(time.Millisecond).String(), "failures", c.state.ConsecutiveFailures)
	c.state.Retrying, c.state.Since, c.state.ConsecutiveFailures = false, time.Time{}, 0
	c.m.retrying.Set(0)
	c.m.consecutive.Set(0)
}

func (c *Consumer) failed(err error) int {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.state.Retrying {
		c.state.Retrying, c.state.Since = true, now
	}
	c.state.ConsecutiveFailures++
	c.state.LastErrorCategory = ErrorCategory(err)
	c.state.LastErrorAt = now
	c.m.failures.Inc()
	c.m.retrying.Set(1)
	c.m.consecutive.Set(float64(c.state.ConsecutiveFailures))
	c.m.lastError.Set(float64(now.UnixNano()) / 1e9)
	return c.state.ConsecutiveFailures
}

// ErrorCategory names the kind of a handler error without its text: what
// an ErrorCategory() string method in its chain says, else "timeout",
// "network" or "dependency".
func ErrorCategory(err error) string {
	var cat interface{ ErrorCategory() string }
	switch {
	case errors.As(err, &cat):
		return cat.ErrorCategory()
	case IsPermanent(err):
		return "permanent"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network"
	}
	return "dependency"
}

// Dead-letter headers. Together with the data (the original message,
// unchanged) they let `agentidp events replay` find and republish it.
const (
	HeaderOriginalSubject  = "Agentidp-Original-Subject"
	HeaderOriginalSequence = "Agentidp-Original-Sequence"
	HeaderConsumer         = "Agentidp-Consumer"
	HeaderEventID          = "Agentidp-Event-Id"
	HeaderDeadLetterReason = "Agentidp-Dead-Letter-Reason"
	HeaderDeadLetterKind   = "Agentidp-Dead-Letter-Category" // "permanent" or "undecodable"
	HeaderDeadLetteredAt   = "Agentidp-Dead-Lettered-At"     // RFC 3339, UTC
)

func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, kind, reason string) {
	dl := nats.NewMsg(events.DeadLetterPrefix + "." + c.o.Durable)
	dl.Data = msg.Data()
	subject := msg.Subject()
	if h := msg.Headers(); h != nil && h.Get(HeaderOriginalSubject) != "" {
		subject = h.Get(HeaderOriginalSubject) // a replayed message failing again
	}
	eventID := ""
	if h := msg.Headers(); h != nil {
		eventID = h.Get(HeaderEventID)
		if eventID == "" {
			eventID = h.Get(jetstream.MsgIDHeader)
		}
	}
	if env, err := events.Decode(msg.Data()); err == nil && env.ID != "" {
		eventID = env.ID
	}
	dl.Header.Set(HeaderOriginalSubject, subject)
	dl.Header.Set(HeaderConsumer, c.o.Durable)
	dl.Header.Set(HeaderEventID, eventID)
	dl.Header.Set(HeaderDeadLetterKind, kind)
	dl.Header.Set(HeaderDeadLetterReason, truncate(reason, 512))
	dl.Header.Set(HeaderDeadLetteredAt, time.Now().UTC().Format(time.RFC3339Nano))
	if meta, err := msg.Metadata(); err == nil {
		dl.Header.Set(HeaderOriginalSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	}
	if _, err := c.js.PublishMsg(ctx, dl); err != nil {
		c.o.Logger.Error("dead-letter event, will redeliver", "durable", c.o.Durable, "err", err)
		_ = msg.NakWithDelay(c.o.Backoff)
		return
	}
	c.m.deadLettered.Inc()
	c.o.Logger.Error("event dead-lettered", "durable", c.o.Durable, "subject", subject, "eventId", eventID, "reason", truncate(reason, 200))
	_ = msg.Term()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type consumerMetrics struct {
	processed, failures, deadLettered     prometheus.Counter
	lag, retrying, consecutive, lastError prometheus.Gauge
}

func newConsumerMetrics(reg prometheus.Registerer, durable string) *consumerMetrics {
	labels := prometheus.Labels{"consumer": durable}
	m := &consumerMetrics{
		processed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_processed_total", Help: "Events processed and acknowledged.", ConstLabels: labels}),
		failures:     prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_batch_failures_total", Help: "Transient event batch failures (each is retried with backoff).", ConstLabels: labels}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_dead_lettered_total", Help: "Events moved to the dead letter (undecodable or permanently failing).", ConstLabels: labels}),
		lag:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_consumer_lag", Help: "Events pending for this consumer at the last fetch.", ConstLabels: labels}),
		retrying:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_consumer_retrying", Help: "1 while the consumer retries a failing batch (a dependency is away), else 0.", ConstLabels: labels}),
		consecutive:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_consumer_consecutive_failures", Help: "Failed attempts since the last successful batch.", ConstLabels: labels}),
		lastError:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_consumer_last_error_timestamp_seconds", Help: "Unix time of the last transient batch failure.", ConstLabels: labels}),
	}
	if reg != nil {
		m.processed = registerOrReuse(reg, m.processed)
		m.failures = registerOrReuse(reg, m.failures)
		m.deadLettered = registerOrReuse(reg, m.deadLettered)
		m.lag = registerOrReuse(reg, m.lag)
		m.retrying = registerOrReuse(reg, m.retrying)
		m.consecutive = registerOrReuse(reg, m.consecutive)
		m.lastError = registerOrReuse(reg, m.lastError)
	}
	return m
}

// registerOrReuse registers c, or returns the collector already registered
// under the same name, so a consumer restarted in the same process (or a
// second Run) keeps counting into the same series instead of panicking.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// WatchKV calls apply for every current entry of bucket, then signals ready
// (closes the returned channel), then keeps applying updates until ctx ends.
// value is nil for a deleted key. The watch is re-established after errors.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, logger *slog.Logger, apply func(key string, value []byte)) (<-chan struct{}, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch kv %s: %w", kv.Bucket(), err)
	}
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(ready)
					}
					continue
				}
				switch e.Operation() {
				case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
					apply(e.Key(), nil)
				default:
					apply(e.Key(), e.Value())
				}
			}
		}
	}()
	return ready, nil
}
