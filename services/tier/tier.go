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
	"sync/atomic"
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
	// DowngradeGrace is how long a downgrade ordered by billing (a
	// cancelled or unpaid subscription) waits before it applies
	// (TIER_DOWNGRADE_GRACE, default 72h; 0 means the default). Upgrades
	// apply at once.
	DowngradeGrace time.Duration
	// DowngradeCheckInterval is how often due downgrades are applied
	// (TIER_DOWNGRADE_CHECK_INTERVAL, default 1m; 0 means the default).
	DowngradeCheckInterval time.Duration
}

// DefaultConfig returns the development defaults.
func DefaultConfig() Config {
	return Config{ReconcileInterval: 60 * time.Second, KVReplicas: 1, DowngradeGrace: 72 * time.Hour, DowngradeCheckInterval: time.Minute}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		ReconcileInterval:      env.Duration("TIER_RECONCILE_INTERVAL", d.ReconcileInterval),
		KVReplicas:             env.Int("NATS_STREAM_REPLICAS", d.KVReplicas),
		DowngradeGrace:         env.Duration("TIER_DOWNGRADE_GRACE", d.DowngradeGrace),
		DowngradeCheckInterval: env.Duration("TIER_DOWNGRADE_CHECK_INTERVAL", d.DowngradeCheckInterval),
	}
	if cfg.DowngradeGrace < 0 {
		env.Fail("TIER_DOWNGRADE_GRACE: must not be negative")
	}
	if cfg.DowngradeCheckInterval < time.Second {
		env.Fail("TIER_DOWNGRADE_CHECK_INTERVAL: must be at least 1s")
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
	"TIER_RECONCILE_INTERVAL":       "how often every organisation is rewritten into the NATS KV read model (default 60s)",
	"TIER_DOWNGRADE_GRACE":          "delay before a downgrade ordered by billing applies (default 72h)",
	"TIER_DOWNGRADE_CHECK_INTERVAL": "how often due downgrades are applied (default 1m)",
}

// BillingDurable is the durable consumer applying billing plan changes.
const BillingDurable = "tier-billing"

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
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running tier service.
type Service struct {
	cfg     Config
	domain  *org.Service
	relay   *sqlstore.Relay
	billing *org.BillingPlans
	js      jetstream.JetStream
	reg     prometheus.Registerer
	handler http.Handler
	logger  *slog.Logger

	mu            sync.Mutex
	reconcileErr  error
	reconciledOne bool // one reconciliation succeeded: the read model exists

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service from its dependencies (DB, Cache, JS and Codec are
// required). It applies the migrations and creates the outbox table and the
// KV bucket, all idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.Cache == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("tier: DB, Cache, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = def.ReconcileInterval
	}
	if cfg.DowngradeGrace <= 0 {
		cfg.DowngradeGrace = def.DowngradeGrace
	}
	if cfg.DowngradeCheckInterval <= 0 {
		cfg.DowngradeCheckInterval = def.DowngradeCheckInterval
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
	relay := sqlstore.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	store := tierstore.New(d.DB)
	domain := org.NewService(store, natskv.New(kv), usagecache.New(d.Cache), relay.Notify, logger)
	s := &Service{
		cfg:     cfg,
		domain:  domain,
		relay:   relay,
		billing: org.NewBillingPlans(domain, store, cfg.DowngradeGrace),
		js:      d.JS,
		reg:     reg,
		handler: httpapi.NewHandler(domain, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		logger:  logger,
	}
	d.Health.AddDetail("readmodel", s.readModelDetail)
	return s, nil
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

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Run relays the outbox, applies billing plan changes (durable
// BillingDurable, and the due downgrades every DowngradeCheckInterval) and
// reconciles the KV read model (at start, then every ReconcileInterval)
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := s.relay.Run(ctx); err != nil {
			s.logger.Error("outbox relay stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
			Durable: BillingDurable, Subjects: []string{events.BillingSubscriptionUpdated.Subject()},
			Logger: s.logger, Registerer: s.reg,
		}, s.applyBilling)
		s.consumer.Store(c)
		if err := c.Run(ctx); err != nil {
			s.logger.Error("billing consumer stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		s.applyDowngrades(ctx)
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

// billingPlan is the part of billing.subscription.updated tier reads (the
// payload type lives in the billing service, which imports tier).
type billingPlan struct {
	OrganizationID string    `json:"organizationId"`
	Tier           string    `json:"tier"`
	EffectiveAt    time.Time `json:"effectiveAt"`
}

func (s *Service) applyBilling(ctx context.Context, batch []natsbus.Delivery) error {
	for _, d := range batch {
		var p billingPlan
		if err := d.Event.DecodeData(&p); err != nil {
			// A plan change no retry can read: dead-lettered, not dropped,
			// so it can be replayed once the cause is fixed.
			return natsbus.Permanent(fmt.Errorf("decode billing event %s: %w", d.Event.ID, err))
		}
		if p.OrganizationID == "" {
			p.OrganizationID = d.Event.OrgID
		}
		if p.EffectiveAt.IsZero() {
			p.EffectiveAt = d.Event.Time
		}
		if err := s.billing.Apply(ctx, p.OrganizationID, p.Tier, p.EffectiveAt); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) applyDowngrades(ctx context.Context) {
	t := time.NewTicker(s.cfg.DowngradeCheckInterval)
	defer t.Stop()
	for {
		if _, err := s.billing.ApplyDue(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("apply due downgrades; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ApplyDueDowngrades applies the downgrades whose grace period has passed
// now (Run does it every DowngradeCheckInterval) and returns how many.
func (s *Service) ApplyDueDowngrades(ctx context.Context) (int, error) {
	return s.billing.ApplyDue(ctx)
}

func (s *Service) reconcile(ctx context.Context) {
	err := s.domain.Reconcile(ctx)
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("reconcile organization read model", "err", err)
	}
	s.mu.Lock()
	s.reconcileErr = err
	if err == nil {
		s.reconciledOne = true
	}
	s.mu.Unlock()
}

// ConsumerState reports the event consumer's health (healthy, or retrying
// since T with the last error's category) for /health/detailed; the zero
// state names the consumer before Run starts it.
func (s *Service) ConsumerState() natsbus.ConsumerState {
	if c := s.consumer.Load(); c != nil {
		return c.State()
	}
	return natsbus.ConsumerState{Durable: BillingDurable}
}

// Checks reports the service unready until one reconciliation has
// succeeded (the read model the gateways load exists). A later failure
// leaves the last read model in place: it degrades /health/detailed (the
// "readmodel" detail registered in New), not readiness.
func (s *Service) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{
		"readmodel": func(context.Context) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.reconciledOne {
				if s.reconcileErr != nil {
					return fmt.Errorf("not reconciled yet: %w", s.reconcileErr)
				}
				return errors.New("not reconciled yet")
			}
			return nil
		},
	}
}

// readModelDetail reports the last reconciliation's failure, if any.
func (s *Service) readModelDetail(context.Context) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reconcileErr != nil {
		return "last reconciliation failed", s.reconcileErr
	}
	return "reconciled", nil
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
