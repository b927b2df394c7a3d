package domain

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/cache/quota"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is the event source of this service.
const Source = "token"

// Counters is the slice of the shared cache the service uses: usage
// counters read by the tier service and the daily token limit.
type Counters interface {
	// SetValue stores value under key with no expiry.
	SetValue(ctx context.Context, key, value string) error
	// IncrBy adds n to key (created with expiry expireAt).
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
	// ReserveUpTo adds as much of n as fits under limit, atomically, and
	// returns how much it added and the resulting value (the daily token
	// limit is enforced from block reservations: libs/cache/quota).
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error)
	// IncrByOnce adds n to key unless the same id was applied before
	// (idempotent add-backs: libs/cache/quota).
	IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error)
}

// Publisher publishes events that have no database write behind them.
type Publisher interface {
	Publish(e events.Envelope) bool
}

// Settings are the domain's configuration.
type Settings struct {
	Issuer   string
	Audience string
	TokenTTL time.Duration
	Alg      jose.Alg
	// Pepper keys the HMAC under which client secrets are stored.
	Pepper []byte
	// ClientCacheTTL and ClientCacheSize bound the in-memory client cache.
	ClientCacheTTL  time.Duration
	ClientCacheSize int
	// RotationGrace keeps a rotated credential's old secret valid for this
	// long (0: the old secret stops at once and tokens issued under the
	// credential before the rotation are revoked).
	RotationGrace time.Duration
	// MaxDelegationDepth bounds delegation chains (hops; default 3).
	MaxDelegationDepth int
	// AssertionMaxLifetime bounds how far ahead a private_key_jwt client
	// assertion's exp may be (default 5m).
	AssertionMaxLifetime time.Duration
	// JWKSAllowPrivate lists private ranges a client key jwksUri may reach;
	// JWKSAllowInsecure accepts http jwksUris (development and tests).
	JWKSAllowPrivate  []netip.Prefix
	JWKSAllowInsecure bool
	// ClientJWKSRefreshInterval: an agent's jwksUri is fetched again, when
	// an assertion names a key we do not have, at most this often
	// (default DefaultClientJWKSRefreshInterval).
	ClientJWKSRefreshInterval time.Duration
	// AuthThrottle limits failed client authentications; the zero value
	// means the defaults (DefaultAuthFailClientLimit, …AddrLimit, …Window).
	AuthThrottle AuthThrottleSettings
}

// Deps are what the domain service consumes.
type Deps struct {
	Store    Store
	Keys     KeyStore
	Counters Counters
	// Replicas is the number of live token-service replicas; while the
	// counters cannot be reached each admits only its share of what
	// remained of an organisation's daily token limit (libs/cache/quota).
	// nil counts 1.
	Replicas  func() int
	Orgs      *OrgModel
	Publisher Publisher
	Logger    *slog.Logger
	Registry  prometheus.Registerer
	// Notify is called after each commit that wrote outbox rows (wakes the relay).
	Notify func()
	// Mirror, when set, is called after each commit that recorded
	// revocations, to publish them to every replica and gateway (NATS KV).
	// A failed mirror is healed by the periodic reconciliation.
	Mirror func(ctx context.Context, revs []Revocation)
	// Ring, when set, supersedes Keys: managed, rotating signing keys.
	Ring *Keyring
	// Policy decides token exchanges; without one every exchange is denied.
	Policy DelegationPolicy
	// Replay remembers client-assertion jtis (shared cache); without it
	// private_key_jwt is refused.
	Replay ReplayCache
	// Federation, when set, enables the jwt-bearer grant.
	Federation FederationExchanger
	// Failures counts failed client authentications across replicas (the
	// shared cache); nil counts on this replica only.
	Failures FailureCounter
	// AnnounceBlock, when set, tells the other replicas about a client id
	// or address this replica blocked; they call ApplyAuthBlock. It must
	// not block (core NATS publish).
	AnnounceBlock func(AuthBlock)
	// RevocationsStale, when set, reports whether the revocation set may
	// lack revocations other replicas committed (its NATS KV feed has been
	// silent too long); introspection then reads them from the database
	// first, so its answer never depends on NATS.
	RevocationsStale func() bool
}

// Service implements agents, credentials and token issuance.
type Service struct {
	cfg      Settings
	store    Store
	keys     KeyStore
	counters Counters
	quota    *quota.Reserver // over counters: the daily token limit
	replicas func() int      // live replicas, for the outage share
	usage    *usageBatcher
	verified *verifiedCache // tokens already verified (introspection, exchange)
	orgs     *OrgModel
	pub      Publisher
	log      *slog.Logger
	notify   func()
	clients  *ClientCache
	signer   tokenSigner
	ring     *Keyring
	jwks     []byte
	verify   atomic.Pointer[verifyKeys]
	revoked  *revocation.Set
	mirror   func(ctx context.Context, revs []Revocation)
	// revStale and reload: see Deps.RevocationsStale.
	revStale func() bool
	reload   struct {
		mu sync.Mutex
		at time.Time // start of the last successful reload
	}
	now func() time.Time

	dummyDigest []byte
	issued      *prometheus.CounterVec
	cacheErrors prometheus.Counter
	failLogAt   atomic.Int64 // unix seconds of the last logged auth failure
	cacheLogAt  atomic.Int64 // unix seconds of the last logged counter failure
	failLogged  atomic.Int64
	introspect  *prometheus.CounterVec
	delegations *prometheus.CounterVec

	delegationPolicy DelegationPolicy
	ca               clientAuth
	throttle         *authThrottle
}

// NewService loads (or creates) the signing key and builds the service.
func NewService(ctx context.Context, cfg Settings, d Deps) (*Service, error) {
	if len(cfg.Pepper) < 32 {
		return nil, fmt.Errorf("secret pepper must be at least 32 bytes")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.MaxDelegationDepth <= 0 {
		cfg.MaxDelegationDepth = DefaultMaxDelegationDepth
	}
	if cfg.ClientCacheTTL <= 0 {
		cfg.ClientCacheTTL = 60 * time.Second
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Notify == nil {
		d.Notify = func() {}
	}
	if d.Orgs == nil {
		d.Orgs = NewOrgModel(d.Logger)
	}
	s := &Service{cfg: cfg, usage: newUsageBatcher(), verified: newVerifiedCache(16384), store: d.Store, keys: d.Keys, counters: d.Counters, orgs: d.Orgs, pub: d.Publisher,
		log: d.Logger, notify: d.Notify, now: time.Now, revoked: revocation.NewSet(), mirror: d.Mirror,
		delegationPolicy: d.Policy, revStale: d.RevocationsStale}
	if d.Counters != nil {
		s.quota = quota.New(d.Counters)
	}
	s.replicas = d.Replicas
	if s.replicas == nil {
		s.replicas = func() int { return 1 }
	}
	if err := s.initKeys(ctx, d); err != nil {
		return nil, err
	}
	s.ca = newClientAuth(cfg, d)
	if cfg.AuthThrottle == (AuthThrottleSettings{}) {
		cfg.AuthThrottle = AuthThrottleSettings{ClientLimit: DefaultAuthFailClientLimit, AddrLimit: DefaultAuthFailAddrLimit, Window: DefaultAuthFailWindow}
		s.cfg.AuthThrottle = cfg.AuthThrottle
	}
	s.throttle = newAuthThrottle(cfg.AuthThrottle, d.Failures, newLocalCounter(func() time.Time { return s.now() }), d.AnnounceBlock, d.Logger)
	s.clients = NewClientCache(s.loadClient, cfg.ClientCacheTTL, cfg.ClientCacheSize)
	s.dummyDigest = s.digest("ais_dummy-secret-for-constant-time-comparison")
	s.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentidp_tokens_issued_total", Help: "Token endpoint outcomes.",
	}, []string{"outcome"})
	s.cacheErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentidp_token_usage_cache_errors_total", Help: "Cache errors while counting token usage (issuance was allowed).",
	})
	s.introspect = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentidp_token_introspections_total", Help: "Introspection answers (active, inactive, unavailable).",
	}, []string{"outcome"})
	s.delegations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentidp_delegations_total", Help: "Delegation operations (delegate, verify, revoke, exchange) by outcome.",
	}, []string{"op", "outcome"})
	if d.Registry != nil {
		if err := d.Registry.Register(s.delegations); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		if err := d.Registry.Register(s.introspect); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		if err := d.Registry.Register(s.issued); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		if err := d.Registry.Register(s.cacheErrors); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return s, nil
}

// ReloadJWKS re-reads the published keys.
func (s *Service) ReloadJWKS(ctx context.Context) error {
	keys, err := s.keys.Published(ctx)
	if err != nil {
		return err
	}
	b, err := jsonMarshal(jose.JWKS{Keys: keys})
	if err != nil {
		return err
	}
	s.jwks = b
	return nil
}

// JWKS returns the encoded key set.
func (s *Service) JWKS() []byte {
	if s.ring != nil {
		return s.ring.JWKS()
	}
	return s.jwks
}

// Settings returns the configuration in use.
func (s *Service) Settings() Settings { return s.cfg }

// Orgs returns the org read model.
func (s *Service) Orgs() *OrgModel { return s.orgs }

// Clients returns the client cache (for invalidation by events).
func (s *Service) Clients() *ClientCache { return s.clients }

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

func (s *Service) digest(secret string) []byte {
	m := hmac.New(sha256.New, s.cfg.Pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// DigestSecret is HMAC-SHA256(pepper, secret), the only form in which a
// client secret is stored.
func DigestSecret(pepper []byte, secret string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// publishUsage writes the org's agent count for the tier service.
func (s *Service) publishUsage(ctx context.Context, orgID string, count int64) {
	if s.counters == nil {
		return
	}
	if err := s.counters.SetValue(ctx, events.AgentsCounterKey(orgID), strconv.FormatInt(count, 10)); err != nil {
		s.log.WarnContext(ctx, "write agent usage", "org", orgID, "err", err)
	}
}
