// Package gateway is the only public entry of AgentIdP. Per request it
// verifies the Bearer JWT locally against the token service's cached JWKS,
// enforces the organisation's daily call limit with one atomic counter
// round trip, evaluates the OPA policy (prepared once), and reverse-proxies
// to the owning service with a signed internal context (authn) replacing
// any identity headers the client sent. Public routes (token endpoint,
// discovery, JWKS) skip the steps that do not apply.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/gateway/internal/jwks"
	"github.com/agentidp/agentidp/services/gateway/internal/natskv"
	"github.com/agentidp/agentidp/services/gateway/internal/opa"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Spec describes the gateway binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            "gateway",
		DefaultHTTPAddr: ":8080",
		DefaultInternal: ":9080",
		NeedsCache:      true,
		Env:             EnvDocs,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Gateway is the gateway service; it implements svcrun.Service.
type Gateway struct {
	cfg    Config
	logger *slog.Logger
	codec  *authn.Codec
	// proxies are the trusted load balancers (clientAddr).
	proxies trustedProxies
	routes  *routeTable
	keys    *jwks.Cache
	nc      *nats.Conn  // for signing-key change notices; nil in some tests
	tokens  *tokenCache // nil when disabled
	orgs    *natskv.Orgs
	// revocations is checked on every authenticated request.
	revocations *natskv.Revocations
	// stale checks tokens with the token service while the revocation
	// state is older than cfg.RevocationMaxStaleness.
	stale    *staleGuard
	policy   *opa.Engine
	limiter  *usageLimiter
	replicas *natsbus.Replicas // live gateway replicas, for the outage share
	metrics  *metrics
	now      func() time.Time

	unmatched routeCounters
	closers   []func()
	// health serves the public /health/detailed (the seed's endpoint):
	// overall status and dependency states only, probed at most once a
	// second.
	health http.Handler
}

// New builds the gateway. It loads the policy (failing on a broken one) and
// opens the organisations bucket; keys and the organisation read model are
// loaded by Run, and readiness reports them.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Gateway, error) {
	if d == nil || d.Codec == nil || d.JS == nil {
		return nil, errors.New("gateway: deps need Codec and JetStream")
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	def := DefaultConfig()
	if cfg.Leeway <= 0 {
		cfg.Leeway = def.Leeway
	}
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = def.JWKSRefresh
	}
	if cfg.JWKSMinInterval <= 0 {
		cfg.JWKSMinInterval = def.JWKSMinInterval
	}
	if cfg.PolicyPoll <= 0 {
		cfg.PolicyPoll = def.PolicyPoll
	}
	if cfg.FreeCallsPerDay == 0 {
		cfg.FreeCallsPerDay = def.FreeCallsPerDay
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = def.UpstreamTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = def.DialTimeout
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = def.BreakerFailures
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = def.BreakerCooldown
	}
	if cfg.Routes == nil {
		cfg.Routes = DefaultRoutes()
	}
	if cfg.RevocationMaxStaleness <= 0 {
		cfg.RevocationMaxStaleness = def.RevocationMaxStaleness
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = cfg.Upstreams[ServiceToken] + "/.well-known/jwks.json"
	}

	if d.Health == nil {
		d.Health = httpx.NewHealth(reg)
	}
	g := &Gateway{cfg: cfg, logger: logger, codec: d.Codec, proxies: cfg.TrustedProxies, nc: d.NATS, now: time.Now, metrics: newMetrics(reg),
		health: d.Health.PublicHandler(time.Second)}
	g.unmatched.label = "unmatched"
	var err error
	if g.routes, err = newRouteTable(cfg.Routes, cfg.Upstreams); err != nil {
		return nil, fmt.Errorf("gateway routes: %w", err)
	}
	transport := newUpstreamTransport(cfg, newTransport(cfg))
	g.closers = append(g.closers, transport.CloseIdleConnections)
	pool := newBufferPool()
	breakers := map[string]*breakerTransport{} // one breaker per upstream service, shared by its routes
	for _, rt := range g.routes.routes {
		target, err := url.Parse(cfg.Upstreams[rt.Service])
		if err != nil {
			return nil, fmt.Errorf("gateway upstream %s: %w", rt.Service, err)
		}
		bt := breakers[rt.Service]
		if bt == nil {
			bt = &breakerTransport{next: transport, b: newUpstreamBreaker(rt.Service, cfg.BreakerFailures, cfg.BreakerCooldown,
				g.metrics.breaker.WithLabelValues(rt.Service), logger)}
			breakers[rt.Service] = bt
		}
		rt.proxy = newProxy(target, bt, pool, logger, rt.Service)
		rt.basePath = strings.TrimSuffix(target.Path, "/")
		rt.upstream = g.metrics.upstream.WithLabelValues(rt.Service)
	}

	if cfg.TokenCacheSize > 0 {
		g.tokens = newTokenCache(cfg.TokenCacheSize)
	}
	if cfg.Now != nil {
		g.now = cfg.Now
	}
	g.keys = jwks.New(jwks.Options{URL: cfg.JWKSURL, MinInterval: cfg.JWKSMinInterval, Logger: logger, Now: g.now})
	if cfg.PolicyDir != "" {
		g.policy, err = opa.New(ctx, os.DirFS(cfg.PolicyDir), cfg.DecisionCacheSize, logger)
	} else {
		g.policy, err = opa.New(ctx, nil, cfg.DecisionCacheSize, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway policy: %w", err)
	}
	if g.orgs, err = natskv.Open(ctx, d.JS, cfg.KVReplicas, logger); err != nil {
		return nil, err
	}
	if g.revocations, err = natskv.OpenRevocations(ctx, d.JS, cfg.KVReplicas, logger); err != nil {
		return nil, err
	}
	// One clock for "heard" and "now", so tests can move both.
	g.revocations.SetClock(func() time.Time { return g.now() })
	g.stale = newStaleGuard(newHTTPIntrospector(cfg.Upstreams[ServiceToken], d.Codec, transport), cfg.RevocationMaxStaleness)
	g.metrics.registerFreshness(reg, func() float64 { return g.revocationAge(g.now()).Seconds() }, func() float64 {
		if g.revocations.Ready() && g.revocationStale(g.now()) {
			return 1
		}
		return 0
	})
	// The revocation feed's age in /health/detailed: stale degrades it (the
	// gateway keeps serving, checking tokens with the token service).
	d.Health.AddDetail("revocations", func(context.Context) (any, error) {
		now := g.now()
		v := map[string]any{"ageSeconds": g.revocationAge(now).Seconds(),
			"maxStalenessSeconds": cfg.RevocationMaxStaleness.Seconds(), "loaded": g.revocations.Ready()}
		if g.revocations.Ready() && g.revocationStale(now) {
			return v, errors.New("stale: tokens are checked with the token service")
		}
		return v, nil
	})

	shared := Counter(d.Cache)
	if d.Cache == nil {
		mem := cache.NewMemory(cache.MemoryOptions{})
		g.closers = append(g.closers, func() { _ = mem.Close() })
		shared = mem
	}
	// Heartbeats tell each replica how many share the daily limits while
	// Redis is away.
	if g.replicas, err = natsbus.OpenReplicas(ctx, d.JS, natsbus.ReplicasOptions{
		Service: "gateway", Replicas: cfg.KVReplicas, Logger: logger,
	}); err != nil {
		return nil, err
	}
	g.limiter = newUsageLimiter(shared, g.replicas.Live, g.metrics.fallback, logger)
	return g, nil
}

// Handler serves the public API.
func (g *Gateway) Handler() http.Handler { return g }

// Run keeps signing keys, the organisation read model and (with
// PolicyDir) the policy current until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	defer func() {
		for _, c := range g.closers {
			c()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		g.keys.Run(ctx, g.cfg.JWKSRefresh, time.Second)
	}()
	go func() {
		defer wg.Done()
		g.watchFreshness(ctx, 100*time.Millisecond)
	}()
	go func() {
		defer wg.Done()
		g.replicas.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		g.limiter.runFlusher(ctx, 250*time.Millisecond)
	}()
	if g.nc != nil {
		// A signing-key change (rotation, withdrawal) announced by the
		// token service: refresh the JWKS now rather than at the next
		// periodic refresh. Cached verified tokens whose kid left the set
		// stop being accepted with it.
		sub, err := g.nc.Subscribe(events.KeysChangedSubject, func(*nats.Msg) {
			go func() {
				if err := g.keys.Refresh(ctx); err != nil {
					g.logger.Warn("refresh signing keys after change notice", "err", err)
				}
			}()
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", events.KeysChangedSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if g.cfg.PolicyDir != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.policy.Watch(ctx, g.cfg.PolicyDir, g.cfg.PolicyPoll)
		}()
	}
	revErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := g.revocations.Run(ctx)
		if err != nil {
			cancel()
		}
		revErr <- err
	}()
	err := g.orgs.Run(ctx)
	cancel() // a failed watch stops the rest too, so svcrun sees the error
	wg.Wait()
	if rerr := <-revErr; err == nil && rerr != nil {
		err = fmt.Errorf("revocations: %w", rerr)
	}
	return err
}

// Checks reports readiness: keys loaded, organisations loaded, revocations
// loaded, policy loaded.
func (g *Gateway) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{
		"jwks": func(context.Context) error {
			if !g.keys.Loaded() {
				return errors.New("signing keys not loaded")
			}
			return nil
		},
		"orgs": func(context.Context) error {
			if !g.orgs.Ready() {
				return errors.New("organisation read model not loaded")
			}
			return nil
		},
		"revocations": func(context.Context) error {
			if !g.revocations.Ready() {
				return errors.New("revocation state not loaded")
			}
			return nil
		},
		"policy": func(context.Context) error {
			if !g.policy.Loaded() {
				return errors.New("policy not loaded")
			}
			return nil
		},
	}
}
