// Package tier assembles the tier service: organisations, their plan tier
// and limits, membership and usage status. It is the source of truth for
// organisations; the gateway and the token service never call it per
// request but watch the NATS KV read model (events.OrgsBucket) it keeps
// current: after every committed change, and by a full reconciliation at
// start and every ReconcileInterval, which heals a crash between a commit
// and its KV put.
package tier

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
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/tier/internal/httpapi"
	"github.com/agentidp/agentidp/services/tier/internal/natskv"
	"github.com/agentidp/agentidp/services/tier/internal/org"
	tierstore "github.com/agentidp/agentidp/services/tier/internal/sqlstore"
	"github.com/agentidp/agentidp/services/tier/internal/usagecache"
	"github.com/agentidp/agentidp/services/tier/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, event source, default schema).
const Name = "tier"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// Organization is an organisation as stored by the tier service.
type Organization = org.Organization

// Plan tiers.
const (
	TierFree       = org.TierFree
	TierPro        = org.TierPro
	TierEnterprise = org.TierEnterprise
)

// TierLimits returns the constant limits of a plan tier (-1 = unlimited).
func TierLimits(tier string) (events.Limits, bool) { return org.TierLimits(tier) }

// AgentsKey is the cache key of an organisation's active agent count, a
// decimal string written by the token service.
func AgentsKey(orgID string) string { return org.AgentsKey(orgID) }

// CallsKey is the cache counter of an organisation's API calls on the UTC
// day of day ("usage:calls:<orgId>:<YYYYMMDD>"), incremented by the gateway.
func CallsKey(orgID string, day time.Time) string { return org.CallsKey(orgID, day) }

// TokensKey is the cache counter of an organisation's token issuances on
// the UTC day of day ("usage:tokens:<orgId>:<YYYYMMDD>"), incremented by the
// token service.
func TokensKey(orgID string, day time.Time) string { return org.TokensKey(orgID, day) }

// Config is the tier service's own configuration.
type Config struct {
	// ReconcileInterval is how often every organisation is rewritten into
	// the KV read model (TIER_RECONCILE_INTERVAL, default 60s).
	ReconcileInterval time.Duration
	// KVReplicas is the replica count of the KV bucket
	// (NATS_STREAM_REPLICAS, default 1).
	KVReplicas int
}

// DefaultConfig returns the development defaults.
func DefaultConfig() Config {
	return Config{ReconcileInterval: 60 * time.Second, KVReplicas: 1}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		ReconcileInterval: env.Duration("TIER_RECONCILE_INTERVAL", d.ReconcileInterval),
		KVReplicas:        env.Int("NATS_STREAM_REPLICAS", d.KVReplicas),
	}
	if cfg.ReconcileInterval < time.Second {
		env.Fail("TIER_RECONCILE_INTERVAL: must be at least 1s")
	}
	if cfg.KVReplicas < 1 {
		env.Fail("NATS_STREAM_REPLICAS: must be at least 1")
	}
	return cfg
}

// Env documents the service's own variables.
var Env = map[string]string{
	"TIER_RECONCILE_INTERVAL": "how often every organisation is rewritten into the NATS KV read model (default 60s)",
}

// Spec describes the tier binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8083",
		DefaultInternal: ":9083",
		NeedsDB:         true,
		NeedsCache:      true,
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

// Service is the running tier service.
type Service struct {
	cfg     Config
	domain  *org.Service
	relay   *sqlstore.Relay
	handler http.Handler
	logger  *slog.Logger

	mu            sync.Mutex
	reconcileErr  error
	reconciledOne bool
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service from its dependencies (DB, Cache, JS and Codec are
// required). It applies the migrations and creates the outbox table and the
// KV bucket, all idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.Cache == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("tier: DB, Cache, JS and Codec are required")
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = DefaultConfig().ReconcileInterval
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer = d.Registry
	if d.Registry == nil {
		reg = prometheus.NewRegistry()
	}
	if err := prepareDB(ctx, d.DB); err != nil {
		return nil, err
	}
	kv, err := natsbus.EnsureKV(ctx, d.JS, events.OrgsBucket, cfg.KVReplicas)
	if err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	relay := sqlstore.NewRelay(d.DB, publisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	domain := org.NewService(tierstore.New(d.DB), natskv.New(kv), usagecache.New(d.Cache), relay.Notify, logger)
	return &Service{
		cfg:     cfg,
		domain:  domain,
		relay:   relay,
		handler: httpapi.NewHandler(domain, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		logger:  logger,
	}, nil
}

func prepareDB(ctx context.Context, db *sqlstore.DB) error {
	if err := db.Migrate(ctx, Migrations); err != nil {
		return fmt.Errorf("tier: migrate: %w", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	return nil
}

// publisher is the outbox relay's publish function: JetStream with
// Nats-Msg-Id = event id, so re-publishes are dropped as duplicates.
func publisher(js jetstream.JetStream) sqlstore.PublishFunc {
	return func(ctx context.Context, msgs []sqlstore.OutboxMessage) error {
		raw := make([]natsbus.RawMessage, len(msgs))
		for i, m := range msgs {
			raw[i] = natsbus.RawMessage{ID: m.ID, Subject: m.Subject, Data: m.Data}
		}
		return natsbus.PublishRaw(ctx, js, raw)
	}
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Run relays the outbox and reconciles the KV read model (at start, then
// every ReconcileInterval) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.relay.Run(ctx); err != nil {
			s.logger.Error("outbox relay stopped", "err", err)
		}
	}()
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) reconcile(ctx context.Context) {
	err := s.domain.Reconcile(ctx)
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("reconcile organization read model", "err", err)
	}
	s.mu.Lock()
	s.reconcileErr, s.reconciledOne = err, true
	s.mu.Unlock()
}

// Checks reports the read model unready until the first reconciliation
// succeeded, and while the last one failed.
func (s *Service) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{
		"readmodel": func(context.Context) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.reconciledOne {
				return errors.New("not reconciled yet")
			}
			return s.reconcileErr
		},
	}
}

// Reconcile writes every organisation into the KV read model now.
func (s *Service) Reconcile(ctx context.Context) error { return s.domain.Reconcile(ctx) }

// Bootstrap creates the operator's first organisation unless an
// organisation with slug exists (then it returns that one, created false).
// It runs the migrations and creates the outbox table if needed, and
// writes org.created to the outbox; the KV read-model entry is written by
// the start-up reconciliation of Run, so call Bootstrap before starting
// the service (or call Service.Reconcile). The bootstrap organisation is on
// the enterprise tier so that the operator is never limited.
func Bootstrap(ctx context.Context, db *sqlstore.DB, name, slug string) (org Organization, created bool, err error) {
	if err := prepareDB(ctx, db); err != nil {
		return Organization{}, false, err
	}
	return orgService(db).Bootstrap(ctx, name, slug)
}

func orgService(db *sqlstore.DB) *org.Service {
	return org.NewService(tierstore.New(db), nil, nil, nil, nil)
}
