package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// whole batch; an error makes every message in it redeliver later (handlers
// must be idempotent: the same event may arrive again).
type BatchHandler func(ctx context.Context, batch []Delivery) error

// ConsumerOptions describe a durable consumer.
type ConsumerOptions struct {
	Durable    string   // consumer name, shared by a service's replicas
	Subjects   []string // filter subjects (several need NATS 2.10+)
	MaxDeliver int      // attempts before the dead letter (default 10)
	AckWait    time.Duration
	BatchSize  int           // default 256
	MaxWait    time.Duration // how long a fetch waits for a batch to fill (default 200ms)
	Backoff    time.Duration // redelivery delay after a failed batch (default 1s)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Consume runs a durable pull consumer until ctx ends. Messages that cannot
// be decoded, or that failed MaxDeliver times, are copied to
// agentidp_dlq.<durable> and terminated.
func Consume(ctx context.Context, js jetstream.JetStream, o ConsumerOptions, handle BatchHandler) error {
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 10
	}
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
		o.Backoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := newConsumerMetrics(o.Registerer, o.Durable)
	cfg := jetstream.ConsumerConfig{
		Durable:       o.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.BatchSize * 4,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(o.Subjects) == 1 {
		cfg.FilterSubject = o.Subjects[0]
	} else {
		cfg.FilterSubjects = o.Subjects
	}
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, events.StreamName, cfg)
		if err == nil {
			break
		}
		o.Logger.Warn("create consumer, retrying", "durable", o.Durable, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(o.BatchSize, jetstream.FetchMaxWait(o.MaxWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			o.Logger.Warn("fetch events", "durable", o.Durable, "err", err)
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
				deadLetter(ctx, js, o, msg, "undecodable: "+err.Error(), m)
				continue
			}
			msgs = append(msgs, msg)
			deliveries = append(deliveries, Delivery{Event: env, NumDelivered: meta.NumDelivered, Sequence: meta.Sequence.Stream})
			m.lag.Set(float64(meta.NumPending))
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			o.Logger.Debug("fetch batch ended", "durable", o.Durable, "err", err)
		}
		if len(deliveries) == 0 {
			continue
		}
		if err := handle(ctx, deliveries); err != nil {
			m.failures.Inc()
			o.Logger.Warn("event batch failed, will redeliver", "durable", o.Durable, "count", len(msgs), "err", err)
			for i, msg := range msgs {
				if deliveries[i].NumDelivered >= uint64(o.MaxDeliver) {
					deadLetter(ctx, js, o, msg, err.Error(), m)
					continue
				}
				_ = msg.NakWithDelay(o.Backoff)
			}
			continue
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				o.Logger.Warn("ack event", "durable", o.Durable, "err", err)
			}
		}
		m.processed.Add(float64(len(msgs)))
	}
	return nil
}

func deadLetter(ctx context.Context, js jetstream.JetStream, o ConsumerOptions, msg jetstream.Msg, reason string, m *consumerMetrics) {
	dl := nats.NewMsg(events.DeadLetterPrefix + "." + o.Durable)
	dl.Data = msg.Data()
	dl.Header.Set("Agentidp-Original-Subject", msg.Subject())
	dl.Header.Set("Agentidp-Dead-Letter-Reason", truncate(reason, 512))
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		o.Logger.Error("dead-letter event, will redeliver", "durable", o.Durable, "err", err)
		_ = msg.NakWithDelay(o.Backoff)
		return
	}
	m.deadLettered.Inc()
	o.Logger.Error("event dead-lettered", "durable", o.Durable, "subject", msg.Subject(), "reason", truncate(reason, 200))
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
	processed, failures, deadLettered prometheus.Counter
	lag                               prometheus.Gauge
}

func newConsumerMetrics(reg prometheus.Registerer, durable string) *consumerMetrics {
	labels := prometheus.Labels{"consumer": durable}
	m := &consumerMetrics{
		processed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_processed_total", Help: "Events processed and acknowledged.", ConstLabels: labels}),
		failures:     prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_batch_failures_total", Help: "Event batches that failed and will redeliver.", ConstLabels: labels}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_consumer_dead_lettered_total", Help: "Events moved to the dead letter.", ConstLabels: labels}),
		lag:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentidp_consumer_lag", Help: "Events pending for this consumer at the last fetch.", ConstLabels: labels}),
	}
	if reg != nil {
		m.processed = registerOrReuse(reg, m.processed)
		m.failures = registerOrReuse(reg, m.failures)
		m.deadLettered = registerOrReuse(reg, m.deadLettered)
		m.lag = registerOrReuse(reg, m.lag)
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
