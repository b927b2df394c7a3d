// Package federation assembles the federation service: the registry of
// trusted partner identity providers (admin:orgs), verification of their
// tokens with cached, rate-limited JWKS refresh through the SSRF-safe
// client, and the exchange check that maps a partner token to a local
// agent for the token service. It keeps its own read model of agents
// (organisation and status) fed by agent.* events.
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/federation/internal/domain"
	"github.com/agentidp/agentidp/services/federation/internal/httpapi"
	"github.com/agentidp/agentidp/services/federation/internal/jwkscache"
	fedstore "github.com/agentidp/agentidp/services/federation/internal/sqlstore"
	"github.com/agentidp/agentidp/services/federation/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, event source, default schema).
const Name = "federation"

// Durable is the name of the agent-event consumer shared by the replicas.
const Durable = "federation"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// Exchange is the result of an exchange check (see Service.ExchangeCheck).
type Exchange = domain.Exchange

// PartnerData is the payload of federation.partner.* events.
type PartnerData = domain.PartnerData

// Config is the federation service's own configuration.
type Config struct {
	// Audience is the default audience partner tokens must carry
	// (FEDERATION_AUDIENCE): normally AgentIdP's issuer URL.
	Audience string
	// AllowInsecure accepts http issuers and JWKS URIs
	// (FEDERATION_ALLOW_INSECURE; development only).
	AllowInsecure bool
	// AllowPrivate lists private ranges partner issuers and JWKS URIs may
	// name (checked at registration) and reach (checked at dial time)
	// (FEDERATION_ALLOW_PRIVATE, comma-separated CIDRs; default none).
	AllowPrivate []netip.Prefix
	// JWKSRefresh is the age after which a partner set is refetched
	// (FEDERATION_JWKS_REFRESH, default 10m).
	JWKSRefresh time.Duration
	// JWKSMinInterval is the least time between two fetches of one
	// partner's set (FEDERATION_JWKS_MIN_INTERVAL, default 30s).
	JWKSMinInterval time.Duration
	// JWKSTimeout bounds one fetch (default 5s).
	JWKSTimeout time.Duration
	// JWKSMaxBytes caps a JWKS response (default 256 KiB).
	JWKSMaxBytes int64
	// Now is the clock of partner expiry, token validity and the JWKS
	// refresh intervals (default time.Now); tests set it. Not read from
	// the environment.
	Now func() time.Time
}

// DefaultConfig returns the development defaults.
func DefaultConfig() Config {
	return Config{Audience: "http://localhost:8080", JWKSRefresh: 10 * time.Minute, JWKSMinInterval: 30 * time.Second,
		JWKSTimeout: 5 * time.Second, JWKSMaxBytes: 256 << 10}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		Audience:        env.String("FEDERATION_AUDIENCE", d.Audience),
		AllowInsecure:   env.Bool("FEDERATION_ALLOW_INSECURE", false),
		JWKSRefresh:     env.Duration("FEDERATION_JWKS_REFRESH", d.JWKSRefresh),
		JWKSMinInterval: env.Duration("FEDERATION_JWKS_MIN_INTERVAL", d.JWKSMinInterval),
		JWKSTimeout:     d.JWKSTimeout,
		JWKSMaxBytes:    d.JWKSMaxBytes,
	}
	allow, err := safehttp.ParseAllowList(env.String("FEDERATION_ALLOW_PRIVATE", ""))
	if err != nil {
		env.Fail("FEDERATION_ALLOW_PRIVATE: %v", err)
	}
	cfg.AllowPrivate = allow
	if err := cfg.validate(); err != nil {
		env.Fail("%v", err)
	}
	return cfg
}

// Env documents the service's own variables.
var Env = map[string]string{
	"FEDERATION_AUDIENCE":          "audience partner tokens must carry unless a partner sets its own (default http://localhost:8080; set it to AgentIdP's issuer)",
	"FEDERATION_ALLOW_INSECURE":    "accept http issuers and JWKS URIs (development only; default false)",
	"FEDERATION_ALLOW_PRIVATE":     "comma-separated CIDRs of private addresses partner issuers and JWKS URIs may name and reach (default none)",
	"FEDERATION_JWKS_REFRESH":      "age after which a partner JWKS is refetched (default 10m)",
	"FEDERATION_JWKS_MIN_INTERVAL": "least time between two fetches of one partner's JWKS, also on unknown kids (default 30s)",
}

func (cfg Config) validate() error {
	var errs []error
	if strings.TrimSpace(cfg.Audience) == "" {
		errs = append(errs, errors.New("FEDERATION_AUDIENCE: must not be empty"))
	}
	if cfg.JWKSRefresh < time.Second {
		errs = append(errs, errors.New("FEDERATION_JWKS_REFRESH: must be at least 1s"))
	}
	if cfg.JWKSMinInterval < 0 || cfg.JWKSMinInterval > cfg.JWKSRefresh {
		errs = append(errs, errors.New("FEDERATION_JWKS_MIN_INTERVAL: must be between 0 and FEDERATION_JWKS_REFRESH"))
	}
	return errors.Join(errs...)
}

// Spec describes the federation binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8088",
		DefaultInternal: ":9088",
		NeedsDB:         true,
		NeedsCache:      true,
		Migrations:      Migrations,
		Env:             Env,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running federation service.
type Service struct {
	domain  *domain.Service
	relay   *sqlstore.Relay
	handler http.Handler
	js      jetstream.JetStream
	reg     prometheus.Registerer
	logger  *slog.Logger

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service (DB, JS and Codec are required; Cache, when set,
// shares fetched partner key sets between replicas). It applies the
// migrations and creates the outbox table, idempotently.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("federation: DB, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.Audience == "" {
		cfg.Audience = def.Audience
	}
	if cfg.JWKSRefresh == 0 {
		cfg.JWKSRefresh = def.JWKSRefresh
	}
	if cfg.JWKSMinInterval == 0 {
		cfg.JWKSMinInterval = def.JWKSMinInterval
	}
	if cfg.JWKSTimeout <= 0 {
		cfg.JWKSTimeout = def.JWKSTimeout
	}
	if cfg.JWKSMaxBytes <= 0 {
		cfg.JWKSMaxBytes = def.JWKSMaxBytes
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("federation: %w", err)
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
		return nil, fmt.Errorf("federation: migrate: %w", err)
	}
	if err := d.DB.EnsureOutbox(ctx); err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	keys := jwkscache.New(jwkscache.Options{
		Client:      safehttp.NewClient(safehttp.Options{Allow: cfg.AllowPrivate, Timeout: cfg.JWKSTimeout, MaxConnsPerHost: 4}),
		Refresh:     cfg.JWKSRefresh,
		MinInterval: cfg.JWKSMinInterval,
		MaxBytes:    cfg.JWKSMaxBytes,
		Shared:      d.Cache,
		Logger:      logger,
		Now:         cfg.Now,
		Registerer:  reg,
	})
	relay := sqlstore.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	dom := domain.NewService(fedstore.New(d.DB), keys, domain.Options{
		Audience: cfg.Audience, AllowInsecure: cfg.AllowInsecure, Allow: cfg.AllowPrivate, Logger: logger, Notify: relay.Notify,
		Now: cfg.Now,
	})
	return &Service{
		domain:  dom,
		relay:   relay,
		handler: httpapi.NewHandler(dom, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		js:      d.JS,
		reg:     reg,
		logger:  logger,
	}, nil
}

// Handler serves the public API and the internal exchange check.
func (s *Service) Handler() http.Handler { return s.handler }

// Run relays the outbox and consumes agent events (durable "federation")
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.relay.Run(ctx); err != nil {
			s.logger.Error("outbox relay stopped", "err", err)
		}
	}()
	c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
		Durable:    Durable,
		Subjects:   []string{events.DomainSubjects("agent")},
		Logger:     s.logger,
		Registerer: s.reg,
	}, func(ctx context.Context, batch []natsbus.Delivery) error {
		for _, d := range batch {
			if err := s.domain.HandleAgentEvent(ctx, d.Event); err != nil {
				return err
			}
		}
		return nil
	})
	s.consumer.Store(c)
	err := c.Run(ctx)
	wg.Wait()
	return err
}

// ConsumerState reports the event consumer's health (healthy, or retrying
// since T with the last error's category) for /health/detailed; the zero
// state names the consumer before Run starts it.
func (s *Service) ConsumerState() natsbus.ConsumerState {
	if c := s.consumer.Load(); c != nil {
		return c.State()
	}
	return natsbus.ConsumerState{Durable: Durable}
}

// Checks has no service-specific checks beyond the dependencies svcrun adds.
func (s *Service) Checks() map[string]httpx.Check { return map[string]httpx.Check{} }

// ExchangeCheck verifies a partner token and maps it to a local agent
// (valid partner, signature, iss, aud, exp, algorithm allow-list, subject in
// the partner's agent map, agent known and active, organisation allowed).
// A bad token is a result with Valid false and a Reason; the error is only
// for infrastructure failures. It is the in-process form of
// POST /internal/v1/federation/exchange-check, for the token service.
func (s *Service) ExchangeCheck(ctx context.Context, token string) (Exchange, error) {
	return s.domain.ExchangeCheck(ctx, token)
}

// HandleAgentEvent applies one agent event to the read model synchronously
// (the all-in-one binary and tests; production uses the durable consumer).
func (s *Service) HandleAgentEvent(ctx context.Context, e events.Envelope) error {
	return s.domain.HandleAgentEvent(ctx, e)
}
