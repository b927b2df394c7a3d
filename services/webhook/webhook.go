// Package webhook assembles the webhook service: organisations register
// HTTPS endpoints for suite events; a durable JetStream consumer turns each
// event into one delivery per matching endpoint, and delivery workers POST
// it signed per Standard Webhooks, retrying along a schedule, then
// dead-lettering the message (visible and redeliverable) and disabling
// endpoints that are gone or failing for too long.
//
// Signing secrets (whsec_..., shown once at creation and rotation) live
// behind the secrets port (libs/secrets) at webhook/secrets/<webhook id>:
// in Vault KV v2 when VAULT_ADDR is set, else in the local store sealed
// with WEBHOOK_SECRET_KEY in the service's database. Secrets of the legacy
// webhook_secrets table are moved there at start-up. No Vault server can be
// installed in CI, so the Vault path is tested against libs/secrets/vaulttest.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	"github.com/agentidp/agentidp/services/webhook/internal/httpapi"
	"github.com/agentidp/agentidp/services/webhook/internal/secretstore"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, event source, default schema,
// durable consumer name).
const Name = "webhook"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// Scopes of the webhook API (the gateway maps GET to ScopeRead and every
// write to ScopeWrite).
const (
	ScopeRead  = httpapi.ScopeRead
	ScopeWrite = httpapi.ScopeWrite
)

// Config is the webhook service's own configuration.
type Config struct {
	// AllowPrivate lists CIDRs endpoints may use despite the SSRF rules
	// (WEBHOOK_ALLOW_PRIVATE, empty by default).
	AllowPrivate []netip.Prefix
	// RequireHTTPS refuses http:// endpoints (WEBHOOK_REQUIRE_HTTPS, default false).
	RequireHTTPS bool
	// Timeout bounds one delivery request (WEBHOOK_TIMEOUT, default 10s).
	Timeout time.Duration
	// RetrySchedule are the delays between attempts (WEBHOOK_RETRY_SCHEDULE):
	// 1+len attempts, then the delivery is dead-lettered. Each delay is a
	// floor: jitter adds 0–20% (hook.MaxJitter), never subtracts.
	RetrySchedule []time.Duration
	// DisableAfter disables an endpoint failing continuously this long
	// (WEBHOOK_DISABLE_AFTER, default 72h).
	DisableAfter time.Duration
	// RotationOverlap is how long the previous secret keeps signing after a
	// rotation (WEBHOOK_SECRET_ROTATION_OVERLAP, default 24h).
	RotationOverlap time.Duration
	// MaxConcurrencyPerEndpoint caps requests in flight per endpoint, across
	// replicas (WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT, default 16: at 4, one
	// busy endpoint could not take more than 4 / round-trip deliveries per
	// second, below a 500 events/s stream).
	MaxConcurrencyPerEndpoint int
	// Workers caps requests in flight per process (WEBHOOK_WORKERS, default
	// 64: several times the per-endpoint cap, so endpoints hanging at their
	// cap leave workers for the others).
	Workers int
	// PollInterval is how often due retries are looked for
	// (WEBHOOK_POLL_INTERVAL, default 1s); new events and finished
	// deliveries wake the workers at once.
	PollInterval time.Duration
	// Lease is how long a claimed delivery is reserved for its worker
	// (WEBHOOK_LEASE, default WEBHOOK_TIMEOUT + 30s; must exceed
	// WEBHOOK_TIMEOUT): a replica that dies mid-request leaves deliveries
	// that are sent again once their lease has expired.
	Lease time.Duration
	// AckWait is how long the event consumer's messages stay unacknowledged
	// before JetStream redelivers them (WEBHOOK_ACK_WAIT, default 30s).
	AckWait time.Duration
	// SecretKey seals signing secrets in the local secrets store
	// (WEBHOOK_SECRET_KEY, 32+ bytes hex or base64; a key of any other
	// length than 32 bytes is reduced to 32 with SHA-256). Required outside
	// dev mode unless Vault is set; with Vault it is needed only to move
	// secrets out of the legacy webhook_secrets table.
	SecretKey []byte
	// Vault, when set (VAULT_ADDR and the other VAULT_* variables), keeps
	// the signing secrets in Vault KV v2 instead of the local store.
	Vault *secrets.VaultConfig
}

// DefaultConfig returns the development defaults. SecretKey is empty: New
// then uses a fixed development key, and only in embedded (dev) mode.
func DefaultConfig() Config {
	return Config{
		Timeout:                   10 * time.Second,
		RetrySchedule:             hook.DefaultSchedule,
		DisableAfter:              72 * time.Hour,
		RotationOverlap:           24 * time.Hour,
		MaxConcurrencyPerEndpoint: 16,
		Workers:                   64,
		PollInterval:              time.Second,
		AckWait:                   30 * time.Second,
	}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		RequireHTTPS:              env.Bool("WEBHOOK_REQUIRE_HTTPS", false),
		Timeout:                   env.Duration("WEBHOOK_TIMEOUT", d.Timeout),
		DisableAfter:              env.Duration("WEBHOOK_DISABLE_AFTER", d.DisableAfter),
		RotationOverlap:           env.Duration("WEBHOOK_SECRET_ROTATION_OVERLAP", d.RotationOverlap),
		MaxConcurrencyPerEndpoint: env.Int("WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT", d.MaxConcurrencyPerEndpoint),
		Workers:                   env.Int("WEBHOOK_WORKERS", d.Workers),
		PollInterval:              env.Duration("WEBHOOK_POLL_INTERVAL", d.PollInterval),
		Lease:                     env.Duration("WEBHOOK_LEASE", 0),
		AckWait:                   env.Duration("WEBHOOK_ACK_WAIT", d.AckWait),
		Vault:                     secrets.VaultConfigFromEnv(env),
		RetrySchedule:             d.RetrySchedule,
	}
	cfg.SecretKey = env.Key("WEBHOOK_SECRET_KEY", 32, cfg.Vault == nil)
	allow, err := safehttp.ParseAllowList(env.String("WEBHOOK_ALLOW_PRIVATE", ""))
	if err != nil {
		env.Fail("WEBHOOK_ALLOW_PRIVATE: %v", err)
	}
	cfg.AllowPrivate = allow
	if v := env.String("WEBHOOK_RETRY_SCHEDULE", ""); v != "" {
		s, err := hook.ParseSchedule(v)
		if err != nil {
			env.Fail("WEBHOOK_RETRY_SCHEDULE: %v", err)
		}
		cfg.RetrySchedule = s
	}
	if cfg.Timeout <= 0 || cfg.Timeout > 5*time.Minute {
		env.Fail("WEBHOOK_TIMEOUT: must be between 1ms and 5m")
	}
	if cfg.DisableAfter <= 0 {
		env.Fail("WEBHOOK_DISABLE_AFTER: must be positive")
	}
	if cfg.RotationOverlap < 0 {
		env.Fail("WEBHOOK_SECRET_ROTATION_OVERLAP: must not be negative")
	}
	if cfg.MaxConcurrencyPerEndpoint < 1 {
		env.Fail("WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT: must be at least 1")
	}
	if cfg.Workers < 1 {
		env.Fail("WEBHOOK_WORKERS: must be at least 1")
	}
	if cfg.PollInterval <= 0 {
		env.Fail("WEBHOOK_POLL_INTERVAL: must be positive")
	}
	if cfg.Lease != 0 && cfg.Lease <= cfg.Timeout {
		env.Fail("WEBHOOK_LEASE: must be longer than WEBHOOK_TIMEOUT")
	}
	if cfg.AckWait <= 0 {
		env.Fail("WEBHOOK_ACK_WAIT: must be positive")
	}
	return cfg
}

// Env documents the service's own variables.
var Env = map[string]string{
	"WEBHOOK_ALLOW_PRIVATE":                "comma-separated CIDRs endpoints may use despite the SSRF rules (default none)",
	"WEBHOOK_REQUIRE_HTTPS":                "refuse http:// endpoints (default false)",
	"WEBHOOK_TIMEOUT":                      "timeout of one delivery request (default 10s)",
	"WEBHOOK_RETRY_SCHEDULE":               "delays between attempts, then dead letter (default 5s,30s,2m,5m,15m,30m,1h,2h,4h,8h); each delay is a minimum, lengthened by a random 0-20% jitter",
	"WEBHOOK_DISABLE_AFTER":                "disable an endpoint failing continuously this long (default 72h)",
	"WEBHOOK_SECRET_ROTATION_OVERLAP":      "how long the previous signing secret keeps signing after a rotation (default 24h)",
	"WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT": "requests in flight per endpoint, across replicas (default 16)",
	"WEBHOOK_WORKERS":                      "requests in flight per process (default 64)",
	"WEBHOOK_POLL_INTERVAL":                "how often due retries are looked for; new events and finished deliveries wake workers at once (default 1s)",
	"WEBHOOK_LEASE":                        "how long a claimed delivery is reserved before another worker may send it again (default WEBHOOK_TIMEOUT + 30s; must exceed WEBHOOK_TIMEOUT)",
	"WEBHOOK_ACK_WAIT":                     "how long consumed events stay unacknowledged before JetStream redelivers them (default 30s)",
	"WEBHOOK_SECRET_KEY":                   "32+ bytes (hex or base64; other lengths than 32 are hashed to 32 with SHA-256) sealing the signing secrets in the local secrets store (AES-256-GCM); required unless VAULT_ADDR is set, and then still needed once to move secrets out of the legacy webhook_secrets table",
	"VAULT_ADDR":                           "Vault address: set = signing secrets in Vault KV v2 at <VAULT_MOUNT>/data/<VAULT_PATH_PREFIX>/webhook/secrets/<id>; unset = local store in the database",
	"VAULT_TOKEN":                          "Vault token (or VAULT_ROLE_ID + VAULT_SECRET_ID); required when VAULT_ADDR is set",
	"VAULT_ROLE_ID":                        "Vault AppRole role_id (with VAULT_SECRET_ID, used when VAULT_TOKEN is empty)",
	"VAULT_SECRET_ID":                      "Vault AppRole secret_id (with VAULT_ROLE_ID)",
	"VAULT_MOUNT":                          "Vault KV v2 mount (default secret)",
	"VAULT_PATH_PREFIX":                    "prefix under the mount (default agentidp)",
	"VAULT_TIMEOUT":                        "per-request Vault timeout (default 10s)",
}

// Spec describes the webhook binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8089",
		DefaultInternal: ":9089",
		NeedsDB:         true,
		Migrations:      Migrations,
		Env:             Env,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running webhook service.
type Service struct {
	cfg        Config
	js         jetstream.JetStream
	relay      *sqlstore.Relay
	dispatcher *hook.Dispatcher
	handler    http.Handler
	logger     *slog.Logger
	reg        prometheus.Registerer

	secrets *secretstore.Store

	mu          sync.Mutex
	consumerErr error

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service from its dependencies (DB, JS and Codec are
// required). It applies the migrations and creates the outbox table, both
// idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("webhook: DB, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if len(cfg.RetrySchedule) == 0 {
		cfg.RetrySchedule = def.RetrySchedule
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = def.DisableAfter
	}
	if cfg.MaxConcurrencyPerEndpoint <= 0 {
		cfg.MaxConcurrencyPerEndpoint = def.MaxConcurrencyPerEndpoint
	}
	if cfg.Workers <= 0 {
		cfg.Workers = def.Workers
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = def.PollInterval
	}
	if cfg.Lease <= cfg.Timeout {
		cfg.Lease = cfg.Timeout + hook.LeaseMargin
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = def.AckWait
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer = d.Registry
	if d.Registry == nil {
		reg = prometheus.NewRegistry()
	}
	kek, err := secretKey(cfg, d.Embedded, logger)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if err := d.DB.Migrate(ctx, Migrations); err != nil {
		return nil, fmt.Errorf("webhook: migrate: %w", err)
	}
	if err := d.DB.EnsureOutbox(ctx); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	port, err := openSecrets(ctx, cfg, d, kek)
	if err != nil {
		return nil, fmt.Errorf("webhook: secrets store: %w", err)
	}
	signing := secretstore.New(port)
	if err := migrateLegacySecrets(ctx, d, kek, signing, logger); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	store := whstore.New(d.DB)
	relay := sqlstore.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	dispatcher := hook.NewDispatcher(store, signing, hook.DispatcherOptions{
		Client: safehttp.NewClient(safehttp.Options{Allow: cfg.AllowPrivate, Timeout: cfg.Timeout,
			MaxConnsPerHost: cfg.MaxConcurrencyPerEndpoint}),
		Schedule:       cfg.RetrySchedule,
		Timeout:        cfg.Timeout,
		DisableAfter:   cfg.DisableAfter,
		Workers:        cfg.Workers,
		MaxPerEndpoint: cfg.MaxConcurrencyPerEndpoint,
		PollInterval:   cfg.PollInterval,
		Lease:          cfg.Lease,
		Source:         Name,
		NotifyOutbox:   relay.Notify,
		Metrics:        hook.NewMetrics(reg),
		Logger:         logger,
	})
	api := hook.NewService(store, signing, hook.Options{AllowPrivate: cfg.AllowPrivate, RequireHTTPS: cfg.RequireHTTPS,
		RotationOverlap: cfg.RotationOverlap, Notify: dispatcher.Kick, Logger: logger})
	// The secrets store is shared by every replica: it degrades
	// /health/detailed, never readiness.
	d.Health.AddDependency("secrets", signing.Ping)
	return &Service{
		cfg:        cfg,
		js:         d.JS,
		relay:      relay,
		dispatcher: dispatcher,
		handler:    httpapi.NewHandler(api, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		logger:     logger,
		reg:        reg,
		secrets:    signing,
	}, nil
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Run relays the outbox, consumes events into deliveries and sends them,
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				s.logger.Error(name+" stopped", "err", err)
				s.mu.Lock()
				s.consumerErr = err
				s.mu.Unlock()
			}
		}()
	}
	run("outbox relay", s.relay.Run)
	run("delivery dispatcher", s.dispatcher.Run)
	c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
		Durable:    Name,
		Subjects:   []string{events.AllSubjects},
		AckWait:    s.cfg.AckWait,
		Logger:     s.logger,
		Registerer: s.reg,
	}, s.ingest)
	s.consumer.Store(c)
	run("event consumer", c.Run)
	wg.Wait()
	return nil
}

// ConsumerState reports the event consumer's health (healthy, or retrying
// since T with the last error's category) for /health/detailed; the zero
// state names the consumer before Run starts it.
func (s *Service) ConsumerState() natsbus.ConsumerState {
	if c := s.consumer.Load(); c != nil {
		return c.State()
	}
	return natsbus.ConsumerState{Durable: Name}
}

func (s *Service) ingest(ctx context.Context, batch []natsbus.Delivery) error {
	evs := make([]events.Envelope, len(batch))
	for i, d := range batch {
		evs[i] = d.Event
	}
	return s.dispatcher.Ingest(ctx, evs)
}

// Checks reports a background loop that stopped with an error (this
// process can no longer deliver). The secrets store is a dependency,
// registered with Deps.Health in New.
func (s *Service) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{
		"workers": func(context.Context) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.consumerErr
		},
	}
}
