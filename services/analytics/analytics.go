// Package analytics assembles the analytics service: a durable JetStream
// consumer of every suite event that keeps daily counters per organisation
// and event type, exactly once per event, and the API that reads them.
//
// Exactly once: the consumer is at-least-once (redeliveries after a crash,
// a failed batch or an expired ack wait, and duplicates published outside
// JetStream's de-duplication window). Each batch is applied in one
// transaction that records the event ids in processed_events and adds only
// the ids that were new to analytics_events, so a redelivered event changes
// nothing. Ids are kept for ProcessedRetention (8 days): the stream keeps
// events for 7 days, so an event can never be delivered again once its id
// is pruned; the extra day covers clock skew and consumer lag.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	"github.com/agentidp/agentidp/services/analytics/internal/httpapi"
	astore "github.com/agentidp/agentidp/services/analytics/internal/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, default schema).
const Name = "analytics"

// Durable is the JetStream consumer name shared by the replicas.
const Durable = "analytics"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// Config is the analytics service's own configuration.
type Config struct {
	// BatchSize is the most events counted per transaction
	// (ANALYTICS_BATCH_SIZE, default 256).
	BatchSize int
	// AckWait is how long a fetched event may stay unacknowledged before
	// JetStream redelivers it (ANALYTICS_ACK_WAIT, default 30s).
	AckWait time.Duration
	// MaxDeliver is the number of attempts before the dead letter
	// (ANALYTICS_MAX_DELIVER, default 10).
	MaxDeliver int
	// PruneInterval is how often old processed ids are deleted
	// (ANALYTICS_PRUNE_INTERVAL, default 1h).
	PruneInterval time.Duration
	// ProcessedRetention is how long processed ids are remembered; it must
	// exceed the stream's retention (7 days). Default 8 days.
	ProcessedRetention time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{BatchSize: 256, AckWait: 30 * time.Second, MaxDeliver: 10, PruneInterval: time.Hour, ProcessedRetention: 8 * 24 * time.Hour}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		BatchSize:          env.Int("ANALYTICS_BATCH_SIZE", d.BatchSize),
		AckWait:            env.Duration("ANALYTICS_ACK_WAIT", d.AckWait),
		MaxDeliver:         env.Int("ANALYTICS_MAX_DELIVER", d.MaxDeliver),
		PruneInterval:      env.Duration("ANALYTICS_PRUNE_INTERVAL", d.PruneInterval),
		ProcessedRetention: d.ProcessedRetention,
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > 10000 {
		env.Fail("ANALYTICS_BATCH_SIZE: must be from 1 to 10000")
	}
	if cfg.AckWait < time.Second {
		env.Fail("ANALYTICS_ACK_WAIT: must be at least 1s")
	}
	if cfg.MaxDeliver < 1 {
		env.Fail("ANALYTICS_MAX_DELIVER: must be at least 1")
	}
	if cfg.PruneInterval < time.Minute {
		env.Fail("ANALYTICS_PRUNE_INTERVAL: must be at least 1m")
	}
	return cfg
}

// Env documents the service's own variables.
var Env = map[string]string{
	"ANALYTICS_BATCH_SIZE":     "events counted per transaction (default 256)",
	"ANALYTICS_ACK_WAIT":       "redelivery delay of unacknowledged events (default 30s)",
	"ANALYTICS_MAX_DELIVER":    "delivery attempts before the dead letter (default 10)",
	"ANALYTICS_PRUNE_INTERVAL": "how often processed event ids older than 8 days are deleted (default 1h)",
}

// Spec describes the analytics binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8084",
		DefaultInternal: ":9084",
		NeedsDB:         true,
		Migrations:      Migrations,
		Env:             Env,
		Configure: func(env *config.Env) func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := ConfigFromEnv(env)
			return func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
				return New(ctx, cfg, d)
			}
		},
	}
}

// Service is the running analytics service.
type Service struct {
	cfg     Config
	domain  *counting.Service
	js      jetstream.JetStream
	handler http.Handler
	logger  *slog.Logger
	reg     prometheus.Registerer

	// natsbus.Consume registers its metrics each time it starts; only the
	// first Run passes the registry, so a restarted Run does not panic on
	// duplicate registration.
	regOnce sync.Once
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service (DB, JS and Codec are required) and applies the
// migrations idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("analytics: DB, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = def.BatchSize
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = def.PruneInterval
	}
	if cfg.ProcessedRetention <= 7*24*time.Hour {
		cfg.ProcessedRetention = def.ProcessedRetention
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer = d.Registry
	if d.Registry == nil {
		reg = prometheus.NewRegistry()
	}
	if err := d.DB.Migrate(ctx, Migrations); err != nil {
		return nil, fmt.Errorf("analytics: migrate: %w", err)
	}
	domain := counting.NewService(astore.New(d.DB), logger)
	return &Service{
		cfg:     cfg,
		domain:  domain,
		js:      d.JS,
		handler: httpapi.NewHandler(domain, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		logger:  logger,
		reg:     reg,
	}, nil
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Checks has no checks beyond the dependencies svcrun checks.
func (s *Service) Checks() map[string]httpx.Check { return map[string]httpx.Check{} }

// Run consumes every event (durable consumer "analytics") and prunes old
// processed ids until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pruneLoop(ctx)
	}()
	var reg prometheus.Registerer
	s.regOnce.Do(func() { reg = s.reg })
	err := natsbus.Consume(ctx, s.js, natsbus.ConsumerOptions{
		Durable:    Durable,
		Subjects:   []string{events.AllSubjects},
		MaxDeliver: s.cfg.MaxDeliver,
		AckWait:    s.cfg.AckWait,
		BatchSize:  s.cfg.BatchSize,
		Logger:     s.logger,
		Registerer: reg,
	}, s.handle)
	wg.Wait()
	return err
}

func (s *Service) handle(ctx context.Context, batch []natsbus.Delivery) error {
	envs := make([]events.Envelope, len(batch))
	for i, d := range batch {
		envs[i] = d.Event
	}
	return s.domain.Count(ctx, envs)
}

func (s *Service) pruneLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PruneInterval)
	defer t.Stop()
	for {
		if n, err := s.domain.Prune(ctx, s.cfg.ProcessedRetention); err != nil && ctx.Err() == nil {
			s.logger.Warn("prune processed events", "err", err)
		} else if n > 0 {
			s.logger.Info("pruned processed events", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
