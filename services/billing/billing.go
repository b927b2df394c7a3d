// Package billing assembles the billing service: Stripe Checkout and the
// customer portal for an organisation's plan, the Stripe webhook (verified,
// each event applied exactly once and in order, every change of the
// effective plan published as billing.subscription.updated through the
// outbox — the tier service applies it), and usage counted exactly once from
// suite events (optionally reported to Stripe as meter events by a
// background job). Stripe is only ever called from billing's own requests
// and background work, never on another service's request path.
//
// Without STRIPE_SECRET_KEY billing runs disabled: the Stripe-dependent
// routes answer 503, usage and the stored subscription stay readable.
package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/billing/internal/httpapi"
	billingstore "github.com/agentidp/agentidp/services/billing/internal/sqlstore"
	"github.com/agentidp/agentidp/services/billing/internal/stripeapi"
	"github.com/agentidp/agentidp/services/billing/internal/subscription"
	"github.com/agentidp/agentidp/services/billing/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, event source, default schema).
const Name = "billing"

// UsageDurable is the durable consumer counting usage.
const UsageDurable = "billing-usage"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// SubscriptionUpdatedData is the payload of billing.subscription.updated:
// organizationId, the effective tier, the subscription status,
// previousTier and effectiveAt.
type SubscriptionUpdatedData = subscription.UpdatedData

// DisabledMessage is the 503 message of the Stripe-dependent routes when
// STRIPE_SECRET_KEY is not set.
const DisabledMessage = subscription.DisabledMessage

// Config is the billing service's own configuration.
type Config struct {
	// StripeSecretKey (STRIPE_SECRET_KEY); empty disables billing.
	StripeSecretKey string
	// StripeAPIBase (STRIPE_API_BASE) overrides https://api.stripe.com,
	// e.g. for stripe-mock.
	StripeAPIBase string
	// WebhookSecret (BILLING_STRIPE_WEBHOOK_SECRET) verifies webhooks.
	WebhookSecret string
	// WebhookTolerance (BILLING_WEBHOOK_TOLERANCE, default 300s) is the
	// accepted age of a webhook's signed timestamp; one dated ahead of our
	// clock by more than a small clock-skew allowance (60 s, never more than
	// the tolerance) is refused as well.
	WebhookTolerance time.Duration
	// PricePro and PriceEnterprise are Stripe price ids
	// (BILLING_PRICE_PRO, BILLING_PRICE_ENTERPRISE).
	PricePro, PriceEnterprise string
	// SuccessURL and CancelURL are the checkout defaults
	// (BILLING_SUCCESS_URL, BILLING_CANCEL_URL); the portal returns to
	// SuccessURL.
	SuccessURL, CancelURL string
	// Metered (BILLING_METERED) reports daily token usage to Stripe as
	// meter events named MeterEventName (BILLING_METER_EVENT) every
	// ReportInterval (BILLING_REPORT_INTERVAL, default 1h).
	Metered        bool
	MeterEventName string
	ReportInterval time.Duration
}

// DefaultConfig returns the development defaults (billing disabled).
func DefaultConfig() Config {
	return Config{
		WebhookTolerance: 300 * time.Second,
		SuccessURL:       "http://localhost:3000/dashboard/billing?checkout=success",
		CancelURL:        "http://localhost:3000/dashboard/billing?checkout=cancel",
		MeterEventName:   "agentidp_token_issuances",
		ReportInterval:   time.Hour,
	}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		StripeSecretKey:  strings.TrimSpace(env.String("STRIPE_SECRET_KEY", "")),
		StripeAPIBase:    env.String("STRIPE_API_BASE", ""),
		WebhookSecret:    env.String("BILLING_STRIPE_WEBHOOK_SECRET", ""),
		WebhookTolerance: env.Duration("BILLING_WEBHOOK_TOLERANCE", d.WebhookTolerance),
		PricePro:         env.String("BILLING_PRICE_PRO", ""),
		PriceEnterprise:  env.String("BILLING_PRICE_ENTERPRISE", ""),
		SuccessURL:       env.String("BILLING_SUCCESS_URL", d.SuccessURL),
		CancelURL:        env.String("BILLING_CANCEL_URL", d.CancelURL),
		Metered:          env.Bool("BILLING_METERED", false),
		MeterEventName:   env.String("BILLING_METER_EVENT", d.MeterEventName),
		ReportInterval:   env.Duration("BILLING_REPORT_INTERVAL", d.ReportInterval),
	}
	if err := cfg.validate(); err != nil {
		env.Fail("%s", err)
	}
	return cfg
}

func (c Config) validate() error {
	var errs []error
	if c.WebhookTolerance <= 0 {
		errs = append(errs, errors.New("BILLING_WEBHOOK_TOLERANCE: must be positive"))
	}
	if c.ReportInterval < time.Second {
		errs = append(errs, errors.New("BILLING_REPORT_INTERVAL: must be at least 1s"))
	}
	if !subscription.ValidURL(c.SuccessURL) {
		errs = append(errs, errors.New("BILLING_SUCCESS_URL: must be an absolute http(s) URL"))
	}
	if !subscription.ValidURL(c.CancelURL) {
		errs = append(errs, errors.New("BILLING_CANCEL_URL: must be an absolute http(s) URL"))
	}
	if c.StripeAPIBase != "" && !subscription.ValidURL(c.StripeAPIBase) {
		errs = append(errs, errors.New("STRIPE_API_BASE: must be an absolute http(s) URL"))
	}
	if c.StripeSecretKey != "" {
		if c.WebhookSecret == "" {
			errs = append(errs, errors.New("BILLING_STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set"))
		}
		if c.PricePro == "" && c.PriceEnterprise == "" {
			errs = append(errs, errors.New("BILLING_PRICE_PRO / BILLING_PRICE_ENTERPRISE: at least one is required when STRIPE_SECRET_KEY is set"))
		}
	}
	if c.Metered && c.MeterEventName == "" {
		errs = append(errs, errors.New("BILLING_METER_EVENT: required when BILLING_METERED is true"))
	}
	return errors.Join(errs...)
}

// Env documents the service's own variables.
var Env = map[string]string{
	"STRIPE_SECRET_KEY":             "Stripe secret key; when unset billing runs disabled (Stripe routes answer 503)",
	"STRIPE_API_BASE":               "Stripe API base URL override (e.g. http://127.0.0.1:12111 for stripe-mock)",
	"BILLING_STRIPE_WEBHOOK_SECRET": "Stripe webhook signing secret (whsec_...); required with STRIPE_SECRET_KEY",
	"BILLING_WEBHOOK_TOLERANCE":     "accepted age of a webhook's signed timestamp (default 300s)",
	"BILLING_PRICE_PRO":             "Stripe price id of the pro plan",
	"BILLING_PRICE_ENTERPRISE":      "Stripe price id of the enterprise plan",
	"BILLING_SUCCESS_URL":           "default checkout success URL (and portal return URL)",
	"BILLING_CANCEL_URL":            "default checkout cancel URL",
	"BILLING_METERED":               "report daily token usage to Stripe as meter events (default false)",
	"BILLING_METER_EVENT":           "Stripe meter event name (default agentidp_token_issuances)",
	"BILLING_REPORT_INTERVAL":       "how often usage is reported to Stripe when metered (default 1h)",
}

// Spec describes the billing binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8087",
		DefaultInternal: ":9087",
		NeedsDB:         true,
		NeedsCache:      true,
		Migrations:      Migrations,
		Env:             Env,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running billing service.
type Service struct {
	cfg     Config
	domain  *subscription.Service
	relay   *sqlstore.Relay
	js      jetstream.JetStream
	reg     prometheus.Registerer
	handler http.Handler
	logger  *slog.Logger

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service from its dependencies (DB, Cache, JS and Codec are
// required). It applies the migrations and creates the outbox table,
// idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.Cache == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("billing: DB, Cache, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.WebhookTolerance <= 0 {
		cfg.WebhookTolerance = def.WebhookTolerance
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = def.ReportInterval
	}
	if cfg.SuccessURL == "" {
		cfg.SuccessURL = def.SuccessURL
	}
	if cfg.CancelURL == "" {
		cfg.CancelURL = def.CancelURL
	}
	if cfg.MeterEventName == "" {
		cfg.MeterEventName = def.MeterEventName
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("billing: %w", err)
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
		return nil, fmt.Errorf("billing: migrate: %w", err)
	}
	if err := d.DB.EnsureOutbox(ctx); err != nil {
		return nil, fmt.Errorf("billing: %w", err)
	}
	var provider subscription.Provider
	if cfg.StripeSecretKey != "" {
		provider = stripeapi.New(stripeapi.Options{SecretKey: cfg.StripeSecretKey, APIBase: cfg.StripeAPIBase,
			WebhookSecret: cfg.WebhookSecret, Tolerance: cfg.WebhookTolerance, MeterEvent: cfg.MeterEventName})
	} else {
		logger.Warn(DisabledMessage + "; checkout, portal and webhook answer 503, usage counting continues")
	}
	relay := sqlstore.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	domain := subscription.NewService(billingstore.New(d.DB), provider, callCounter{d.Cache}, subscription.Options{
		Prices:     map[string]string{subscription.TierPro: cfg.PricePro, subscription.TierEnterprise: cfg.PriceEnterprise},
		SuccessURL: cfg.SuccessURL, CancelURL: cfg.CancelURL, MeterEventName: cfg.MeterEventName,
	}, relay.Notify, logger)
	return &Service{
		cfg: cfg, domain: domain, relay: relay, js: d.JS, reg: reg, logger: logger,
		handler: httpapi.NewHandler(domain, d.Codec, logger, httpx.NewMetrics(reg, Name)),
	}, nil
}

// counterSource is the part of cache.Cache the call counter needs.
type counterSource interface {
	Counters(ctx context.Context, keys ...string) ([]int64, error)
}

// callCounter reads the gateway's per-day API call counter (events.CallsCounterKey).
type callCounter struct{ src counterSource }

func (c callCounter) CallsToday(ctx context.Context, orgID string, day time.Time) (int64, error) {
	v, err := c.src.Counters(ctx, events.CallsCounterKey(orgID, events.DayStamp(day)))
	if err != nil {
		return 0, fmt.Errorf("read call counter: %w", err)
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("read call counter: got %d values; want 1", len(v))
	}
	return v[0], nil
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Enabled reports whether Stripe is configured.
func (s *Service) Enabled() bool { return s.domain.Enabled() }

// Run relays the outbox, counts usage from token.issued and agent.created
// (durable UsageDurable), prunes old dedupe ids and, when metered, reports
// usage to Stripe, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				s.logger.Error(name+" stopped", "err", err)
			}
		}()
	}
	run("outbox relay", func() error { return s.relay.Run(ctx) })
	c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
		Durable:    UsageDurable,
		Subjects:   []string{events.TokenIssued.Subject(), events.AgentCreated.Subject()},
		Logger:     s.logger,
		Registerer: s.reg,
	}, func(ctx context.Context, batch []natsbus.Delivery) error {
		evs := make([]events.Envelope, len(batch))
		for i, d := range batch {
			evs[i] = d.Event
		}
		return s.domain.CountUsage(ctx, evs)
	})
	s.consumer.Store(c)
	run("usage consumer", func() error { return c.Run(ctx) })
	run("usage maintenance", func() error { s.maintain(ctx); return nil })
	wg.Wait()
	return nil
}

// maintain prunes counted event ids (kept a week: far beyond any
// redelivery) and, when metered, reports usage to Stripe.
func (s *Service) maintain(ctx context.Context) {
	interval := time.Hour
	if s.cfg.Metered && s.cfg.ReportInterval < interval {
		interval = s.cfg.ReportInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.domain.PruneUsageEvents(ctx, 7*24*time.Hour); err != nil && ctx.Err() == nil {
			s.logger.Warn("prune usage events", "err", err)
		}
		if s.cfg.Metered {
			if _, err := s.ReportUsage(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("report usage to stripe; will retry", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ReportUsage reports unreported token usage to Stripe now (the
// background job calls it every ReportInterval when metered) and returns
// how many daily counters were reported.
func (s *Service) ReportUsage(ctx context.Context) (int, error) { return s.domain.ReportUsage(ctx) }

// ConsumerState reports the event consumer's health (healthy, or retrying
// since T with the last error's category) for /health/detailed; the zero
// state names the consumer before Run starts it.
func (s *Service) ConsumerState() natsbus.ConsumerState {
	if c := s.consumer.Load(); c != nil {
		return c.State()
	}
	return natsbus.ConsumerState{Durable: UsageDurable}
}

// Checks has no check of its own: a disabled billing is still ready.
func (s *Service) Checks() map[string]httpx.Check { return map[string]httpx.Check{} }
