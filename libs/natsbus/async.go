package natsbus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// AsyncPublisher publishes events that have no database write behind them
// (token.issued) off the request path. Events wait in a bounded buffer and
// are published in batches with retry. What a crash can lose: the events
// still in the buffer (at most BufferSize, usually the last few
// milliseconds); when the buffer is full new events are dropped and counted
// in agentidp_events_dropped_total rather than slowing token issuance.
type AsyncPublisher struct {
	js      jetstream.JetStream
	logger  *slog.Logger
	buf     chan RawMessage
	batch   int
	dropped prometheus.Counter
	failed  prometheus.Counter
	pending prometheus.GaugeFunc
	wg      sync.WaitGroup
	once    sync.Once
	stop    chan struct{}
}

// AsyncOptions tune an AsyncPublisher.
type AsyncOptions struct {
	BufferSize int // default 65536
	BatchSize  int // default 512
	Service    string
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// NewAsyncPublisher starts the publishing goroutine; call Close to flush.
func NewAsyncPublisher(js jetstream.JetStream, o AsyncOptions) *AsyncPublisher {
	if o.BufferSize <= 0 {
		o.BufferSize = 1 << 16
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &AsyncPublisher{
		js: js, logger: o.Logger, buf: make(chan RawMessage, o.BufferSize), batch: o.BatchSize,
		stop: make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentidp_events_dropped_total", Help: "Events dropped because the async publish buffer was full.",
			ConstLabels: prometheus.Labels{"service": o.Service},
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentidp_events_publish_failures_total", Help: "Failed async event publish attempts (retried).",
			ConstLabels: prometheus.Labels{"service": o.Service},
		}),
	}
	p.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentidp_events_async_pending", Help: "Events waiting in the async publish buffer.",
		ConstLabels: prometheus.Labels{"service": o.Service},
	}, func() float64 { return float64(len(p.buf)) })
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.dropped, p.failed, p.pending)
	}
	p.wg.Add(1)
	go p.loop()
	return p
}

// Publish enqueues e without blocking; it reports false when e was dropped.
func (p *AsyncPublisher) Publish(e events.Envelope) bool {
	rm, err := Raw(e)
	if err != nil {
		p.logger.Error("encode event", "type", e.Type, "err", err)
		return false
	}
	select {
	case p.buf <- rm:
		return true
	default:
		p.dropped.Inc()
		return false
	}
}

func (p *AsyncPublisher) loop() {
	defer p.wg.Done()
	batch := make([]RawMessage, 0, p.batch)
	backoff := 50 * time.Millisecond
	for {
		batch = batch[:0]
		select {
		case m := <-p.buf:
			batch = append(batch, m)
		case <-p.stop:
			// Drain what is left, once, with a deadline.
			for {
				select {
				case m := <-p.buf:
					batch = append(batch, m)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := PublishRaw(ctx, p.js, batch); err != nil {
					p.logger.Error("flush events on close", "count", len(batch), "err", err)
				}
				cancel()
			}
			return
		}
	fill:
		for len(batch) < p.batch {
			select {
			case m := <-p.buf:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := PublishRaw(ctx, p.js, batch)
			cancel()
			if err == nil {
				backoff = 50 * time.Millisecond
				break
			}
			p.failed.Inc()
			p.logger.Warn("publish events, will retry", "count", len(batch), "err", err)
			select {
			case <-time.After(backoff):
			case <-p.stop:
				// Closing: the deferred drain below gets one more try.
			}
			backoff = min(backoff*2, 5*time.Second)
			select {
			case <-p.stop:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := PublishRaw(ctx, p.js, batch); err != nil {
					p.logger.Error("events lost on close", "count", len(batch), "err", err)
				}
				cancel()
				return
			default:
			}
		}
	}
}

// Close flushes the buffer (bounded by a few seconds) and stops.
func (p *AsyncPublisher) Close() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}
