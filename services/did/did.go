// Package did assembles the did service: a did:web DID and an EC P-256 key
// pair per agent (created from agent.created events, rotatable), DID
// documents at the did:web-resolvable URL /agents/{id}/did.json and the
// seed's /api/v1/agents/{id}/did, W3C DID Resolution results and agent
// cards. It keeps its own read model of agents, fed by agent.* events, and
// lists the public keys agents registered themselves (credential.* events
// with a keyId, from the token service) as agent-held verification methods
// of their DIDs; it never calls another service.
//
// Private keys live behind the secrets port (libs/secrets) at
// did/keys/<agent id>/<kid>: in Vault KV v2 when VAULT_ADDR is set, else in
// the local store sealed with DID_KEY_ENCRYPTION_KEY in the service's
// database. Keys of the legacy did_sealed_keys table are moved there at
// start-up. No Vault server can be installed in CI, so the Vault path is
// tested against libs/secrets/vaulttest.
package did

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/agentidp/agentidp/services/did/internal/httpapi"
	didstore "github.com/agentidp/agentidp/services/did/internal/sqlstore"
	"github.com/agentidp/agentidp/services/did/migrations"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, event source, default schema).
const Name = "did"

// Durable is the name of the agent- and credential-event consumer shared
// by the replicas.
const Durable = "did"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// KeyStore keeps DID private keys (PKCS#8 DER) by reference. By default the
// service uses the secrets port (see Config.Vault); Config.Keys replaces it.
type KeyStore = domain.KeyStore

// DIDData is the payload of did.created and did.key_rotated.
type DIDData = domain.DIDData

// IsPublic reports whether a route needs no internal context (the gateway's
// route table should mark the same routes public).
func IsPublic(method, path string) bool { return httpapi.IsPublic(method, path) }

// Config is the did service's own configuration.
type Config struct {
	// BaseURL is the IdP's public base URL (DID_BASE_URL), used for
	// service endpoints in DID documents.
	BaseURL string
	// WebHost is the did:web host (DID_WEB_HOST), the port's colon
	// percent-encoded; derived from BaseURL when empty.
	WebHost string
	// KeyEncryptionKey seals private keys in the local secrets store
	// (DID_KEY_ENCRYPTION_KEY, exactly 32 bytes). Required unless Vault or
	// Keys is set; with them it is needed only to move keys out of the
	// legacy did_sealed_keys table.
	KeyEncryptionKey []byte
	// Vault, when set (VAULT_ADDR and the other VAULT_* variables), keeps
	// the private keys in Vault KV v2 instead of the local store.
	Vault *secrets.VaultConfig
	// Keys, when set, replaces the secrets-port key store. Not read from
	// the environment.
	Keys KeyStore
	// RetiredKeyTTL is how long a rotated-out key stays listed
	// (DID_KEY_RETIRED_TTL, default 24h).
	RetiredKeyTTL time.Duration
	// CacheSize bounds the in-memory document cache (DID_CACHE_SIZE).
	CacheSize int
	// CacheTTL bounds how stale a cached document may be on a replica that
	// missed an invalidation (default 60s, the documents' max-age).
	CacheTTL time.Duration
}

// DefaultConfig returns the development defaults (no key-encryption key:
// the caller supplies one).
func DefaultConfig() Config {
	return Config{BaseURL: "http://localhost:8080", RetiredKeyTTL: 24 * time.Hour, CacheSize: 10000, CacheTTL: time.Minute}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		BaseURL:       env.String("DID_BASE_URL", d.BaseURL),
		WebHost:       env.String("DID_WEB_HOST", ""),
		Vault:         secrets.VaultConfigFromEnv(env),
		RetiredKeyTTL: env.Duration("DID_KEY_RETIRED_TTL", d.RetiredKeyTTL),
		CacheSize:     env.Int("DID_CACHE_SIZE", d.CacheSize),
		CacheTTL:      d.CacheTTL,
	}
	cfg.KeyEncryptionKey = env.Key("DID_KEY_ENCRYPTION_KEY", 32, cfg.Vault == nil)
	if err := cfg.validate(); err != nil {
		env.Fail("%v", err)
	}
	return cfg
}

// Env documents the service's own variables.
var Env = map[string]string{
	"DID_BASE_URL":           "public base URL of the IdP, for service endpoints in DID documents (default http://localhost:8080)",
	"DID_WEB_HOST":           "did:web host, port colon percent-encoded, e.g. idp.example.com or localhost%3A8080 (default: from DID_BASE_URL)",
	"DID_KEY_ENCRYPTION_KEY": "32-byte key (hex or base64) sealing DID private keys in the local secrets store (AES-256-GCM); required unless VAULT_ADDR is set, and then still needed once to move keys out of the legacy did_sealed_keys table",
	"VAULT_ADDR":             "Vault address: set = DID private keys in Vault KV v2 at <VAULT_MOUNT>/data/<VAULT_PATH_PREFIX>/did/keys/<agentId>/<kid>; unset = local store in the database",
	"VAULT_TOKEN":            "Vault token (or VAULT_ROLE_ID + VAULT_SECRET_ID); required when VAULT_ADDR is set",
	"VAULT_ROLE_ID":          "Vault AppRole role_id (with VAULT_SECRET_ID, used when VAULT_TOKEN is empty)",
	"VAULT_SECRET_ID":        "Vault AppRole secret_id (with VAULT_ROLE_ID)",
	"VAULT_MOUNT":            "Vault KV v2 mount (default secret)",
	"VAULT_PATH_PREFIX":      "prefix under the mount (default agentidp)",
	"VAULT_TIMEOUT":          "per-request Vault timeout (default 10s)",
	"DID_KEY_RETIRED_TTL":    "how long a rotated-out key stays listed in the DID document (default 24h)",
	"DID_CACHE_SIZE":         "DID documents cached in memory (default 10000)",
}

func (cfg *Config) validate() error {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return errors.New("DID_BASE_URL: must be an absolute http(s) URL")
	}
	if cfg.WebHost == "" {
		if cfg.WebHost, err = domain.WebHost(cfg.BaseURL); err != nil {
			return fmt.Errorf("DID_BASE_URL: %w", err)
		}
	}
	cfg.WebHost = strings.ReplaceAll(strings.ToLower(cfg.WebHost), "%3a", "%3A")
	if !domain.ValidWebHost(cfg.WebHost) {
		return fmt.Errorf("DID_WEB_HOST=%q: must be a host name with an optional %%3A-encoded port", cfg.WebHost)
	}
	if (cfg.Keys == nil && cfg.Vault == nil || len(cfg.KeyEncryptionKey) > 0) && len(cfg.KeyEncryptionKey) != 32 {
		return errors.New("DID_KEY_ENCRYPTION_KEY: must be exactly 32 bytes (hex or base64)")
	}
	if cfg.RetiredKeyTTL < 0 {
		return errors.New("DID_KEY_RETIRED_TTL: must not be negative")
	}
	if cfg.CacheSize < 1 {
		return errors.New("DID_CACHE_SIZE: must be at least 1")
	}
	return nil
}

// Spec describes the did binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8086",
		DefaultInternal: ":9086",
		NeedsDB:         true,
		Migrations:      Migrations,
		Env:             Env,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running did service.
type Service struct {
	domain  *domain.Service
	relay   *sqlstore.Relay
	handler http.Handler
	js      jetstream.JetStream
	nc      *nats.Conn
	reg     prometheus.Registerer
	logger  *slog.Logger

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service (DB, JS and Codec are required; NATS enables
// cross-replica cache invalidation). It applies the migrations, creates the
// outbox table and the instance DID key, all idempotently.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("did: DB, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.RetiredKeyTTL == 0 {
		cfg.RetiredKeyTTL = def.RetiredKeyTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = def.CacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = def.CacheTTL
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = def.BaseURL
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("did: %w", err)
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
		return nil, fmt.Errorf("did: migrate: %w", err)
	}
	if err := d.DB.EnsureOutbox(ctx); err != nil {
		return nil, fmt.Errorf("did: %w", err)
	}
	keys, ping, err := openKeys(ctx, cfg, d)
	if err != nil {
		return nil, fmt.Errorf("did: key store: %w", err)
	}
	if err := migrateLegacyKeys(ctx, cfg, d, keys, logger); err != nil {
		return nil, fmt.Errorf("did: %w", err)
	}
	relay := sqlstore.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), sqlstore.RelayOptions{Service: Name, Logger: logger, Registerer: reg})
	dom := domain.NewService(didstore.New(d.DB), keys, domain.Options{
		WebHost: cfg.WebHost, BaseURL: cfg.BaseURL, RetiredTTL: cfg.RetiredKeyTTL,
		CacheSize: cfg.CacheSize, CacheTTL: cfg.CacheTTL, Logger: logger, Notify: relay.Notify,
	})
	if err := dom.EnsureInstanceKey(ctx); err != nil {
		return nil, fmt.Errorf("did: instance key: %w", err)
	}
	if ping != nil {
		d.Health.AddDependency("secrets", ping)
	}
	return &Service{
		domain:  dom,
		relay:   relay,
		handler: httpapi.NewHandler(dom, d.Codec, logger, httpx.NewMetrics(reg, Name)),
		js:      d.JS,
		nc:      d.NATS,
		reg:     reg,
		logger:  logger,
	}, nil
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Run relays the outbox, consumes agent and credential events (durable
// "did"; credential events of agent-held keys become verification methods)
// and, with a NATS connection, drops cached documents on every replica when
// an agent, DID or credential event passes (the durable consumer reaches
// only one replica).
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.relay.Run(ctx); err != nil {
			s.logger.Error("outbox relay stopped", "err", err)
		}
	}()
	if s.nc != nil {
		for _, subj := range []string{events.DomainSubjects("agent"), events.DomainSubjects("did"), events.DomainSubjects("credential")} {
			sub, err := s.nc.Subscribe(subj, func(m *nats.Msg) {
				if e, err := events.Decode(m.Data); err == nil && e.Subject != "" {
					s.domain.Invalidate(e.Subject)
				}
			})
			if err != nil {
				s.logger.Warn("cache invalidation subscription failed; documents may be stale for up to the cache TTL", "err", err)
				continue
			}
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
		Durable:    Durable,
		Subjects:   []string{events.DomainSubjects("agent"), events.DomainSubjects("credential")},
		Logger:     s.logger,
		Registerer: s.reg,
	}, s.handle)
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

func (s *Service) handle(ctx context.Context, batch []natsbus.Delivery) error {
	for _, d := range batch {
		if err := s.domain.HandleEvent(ctx, d.Event); err != nil {
			return err
		}
	}
	return nil
}

// Checks implements svcrun.Service: the DID service has no state to load
// before it can serve. The secrets store (Vault, when configured) is a
// dependency, registered with Deps.Health in New.
func (s *Service) Checks() map[string]httpx.Check { return map[string]httpx.Check{} }

// HandleEvent applies one agent or credential event synchronously (the
// all-in-one binary and tests; production goes through the durable
// consumer).
func (s *Service) HandleEvent(ctx context.Context, e events.Envelope) error {
	return s.domain.HandleEvent(ctx, e)
}
