package gateway

import (
	"net/url"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/revocation"
)

// Config is the gateway's own configuration (svcrun reads the common part).
type Config struct {
	// Issuer must equal the access tokens' iss claim.
	Issuer string
	// Audience must be among the access tokens' aud values.
	Audience string
	// Upstreams maps a service name (ServiceToken, ...) to its base URL.
	Upstreams map[string]string
	// Routes is the route table (DefaultRoutes unless GATEWAY_ROUTES is set).
	Routes []Route
	// JWKSURL is where signing keys come from; empty means
	// <token URL>/.well-known/jwks.json.
	JWKSURL string
	// JWKSRefresh is the periodic refresh interval.
	JWKSRefresh time.Duration
	// JWKSMinInterval bounds refetches triggered by unknown kids.
	JWKSMinInterval time.Duration
	// Leeway tolerates clock skew on exp/nbf/iat.
	Leeway time.Duration
	// PolicyDir, when set, holds authz.rego and data/scopes.json, loaded
	// instead of the embedded policy and reloaded when they change.
	PolicyDir string
	// PolicyPoll is how often PolicyDir is checked for changes.
	PolicyPoll time.Duration
	// DecisionCacheSize bounds the policy decision cache (0 disables it).
	DecisionCacheSize int
	// TokenCacheSize bounds the cache of verified tokens (0 disables it):
	// a token presented again is not re-verified until it expires or its
	// key leaves the JWKS.
	TokenCacheSize int
	// FreeCallsPerDay is the daily call limit of organisations the read
	// model does not know (the free tier).
	FreeCallsPerDay int64
	// UpstreamTimeout bounds the wait for an upstream's response headers.
	UpstreamTimeout time.Duration
	// DialTimeout bounds connecting to an upstream.
	DialTimeout time.Duration
	// BreakerFailures is how many consecutive failures of an upstream open
	// its circuit breaker (GATEWAY_UPSTREAM_BREAKER_FAILURES, default 5).
	BreakerFailures int
	// BreakerCooldown is how long an open breaker fails that upstream's
	// requests fast before letting a probe through
	// (GATEWAY_UPSTREAM_BREAKER_COOLDOWN, default 5s).
	BreakerCooldown time.Duration
	// KVReplicas is used when the gateway has to create the orgs bucket.
	KVReplicas int
	// Now is the clock (nil: time.Now); tests move it instead of sleeping.
	Now func() time.Time
	// TrustedProxies are load balancers in front of the gateway whose
	// X-Forwarded-For names the client (GATEWAY_TRUSTED_PROXIES).
	TrustedProxies trustedProxies
	// RevocationMaxStaleness bounds the age of the revocation state the
	// gateway trusts: past it (no entry or token service heartbeat heard
	// for that long) every token is checked with the token service's
	// introspection, and refused with 503 when that fails too.
	RevocationMaxStaleness time.Duration
}

// DefaultConfig returns development defaults: every service on localhost.
func DefaultConfig() Config {
	return Config{
		Issuer:   "http://localhost:8080",
		Audience: "agentidp",
		Upstreams: map[string]string{
			ServiceToken:     "http://localhost:8081",
			ServiceTier:      "http://localhost:8083",
			ServiceAnalytics: "http://localhost:8084",
		},
		Routes:            DefaultRoutes(),
		JWKSRefresh:       5 * time.Minute,
		JWKSMinInterval:   10 * time.Second,
		Leeway:            30 * time.Second,
		PolicyPoll:        2 * time.Second,
		DecisionCacheSize: 8192,
		TokenCacheSize:    16384,
		FreeCallsPerDay:   1000,
		UpstreamTimeout:   30 * time.Second,
		DialTimeout:       3 * time.Second,
		BreakerFailures:   defaultBreakerFailures,
		BreakerCooldown:   defaultBreakerCooldown,
		KVReplicas:        1,

		RevocationMaxStaleness: 2 * time.Second,
	}
}

// EnvDocs documents the gateway's variables for --help.
var EnvDocs = map[string]string{
	"GATEWAY_ISSUER":                    "expected iss of access tokens (default http://localhost:8080)",
	"GATEWAY_AUDIENCE":                  "required aud of access tokens (default agentidp)",
	"TOKEN_SERVICE_URL":                 "base URL of the token service (default http://localhost:8081)",
	"TIER_SERVICE_URL":                  "base URL of the tier service (default http://localhost:8083)",
	"ANALYTICS_SERVICE_URL":             "base URL of the analytics service (default http://localhost:8084)",
	"WEBHOOK_SERVICE_URL":               "base URL of the webhook service (unset: its routes answer 404)",
	"DID_SERVICE_URL":                   "base URL of the did service (unset: its routes answer 404)",
	"FEDERATION_SERVICE_URL":            "base URL of the federation service (unset: its routes answer 404)",
	"BILLING_SERVICE_URL":               "base URL of the billing service (unset: its routes answer 404)",
	"GATEWAY_ROUTES":                    `route table as JSON, replacing the default: [{"path":"/x","methods":["GET"],"public":true,"service":"token"}]`,
	"GATEWAY_JWKS_URL":                  "JWKS URL (default <TOKEN_SERVICE_URL>/.well-known/jwks.json)",
	"GATEWAY_JWKS_REFRESH":              "periodic JWKS refresh (default 5m)",
	"GATEWAY_UPSTREAM_TIMEOUT":          "wait for upstream response headers (default 30s)",
	"GATEWAY_UPSTREAM_BREAKER_FAILURES": "consecutive failures (no answer, timeout, 502, 504, 503 without problem+json) of an upstream that open its circuit breaker (default 5)",
	"GATEWAY_UPSTREAM_BREAKER_COOLDOWN": "how long an open breaker answers 503 for that upstream's routes before one probe request is let through (default 5s)",
	"GATEWAY_TRUSTED_PROXIES":           "comma-separated CIDRs of load balancers whose X-Forwarded-For names the client (default: none; the peer is the client)",
	"OPA_POLICY_DIR":                    "directory with authz.rego and data/scopes.json, reloaded on change (default: embedded policy)",

	// Revocation freshness (docs/operations.md, "Revocation freshness").
	"GATEWAY_REVOCATION_MAX_STALENESS": "age of the revocation state past which every token is checked with the token service, 503 if it cannot answer (default 2s, more than the 500ms heartbeat)",
}

// ConfigFromEnv reads the gateway's variables into a Config, recording
// problems in env.
func ConfigFromEnv(env *config.Env) Config {
	c := DefaultConfig()
	c.Issuer = env.String("GATEWAY_ISSUER", c.Issuer)
	c.Audience = env.String("GATEWAY_AUDIENCE", c.Audience)
	for name, svc := range map[string]string{
		"TOKEN_SERVICE_URL":      ServiceToken,
		"TIER_SERVICE_URL":       ServiceTier,
		"ANALYTICS_SERVICE_URL":  ServiceAnalytics,
		"WEBHOOK_SERVICE_URL":    ServiceWebhook,
		"DID_SERVICE_URL":        ServiceDID,
		"FEDERATION_SERVICE_URL": ServiceFederation,
		"BILLING_SERVICE_URL":    ServiceBilling,
	} {
		v := env.String(name, c.Upstreams[svc])
		if v == "" {
			continue // an optional service that is not deployed: its routes answer 404
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			env.Fail("%s=%q: must be an http(s) URL", name, v)
			continue
		}
		c.Upstreams[svc] = strings.TrimRight(v, "/")
	}
	if s := env.String("GATEWAY_ROUTES", ""); s != "" {
		routes, err := ParseRoutes(s)
		if err != nil {
			env.Fail("%v", err)
		} else {
			c.Routes = routes
		}
	}
	c.JWKSURL = env.String("GATEWAY_JWKS_URL", "")
	c.JWKSRefresh = env.Duration("GATEWAY_JWKS_REFRESH", c.JWKSRefresh)
	c.UpstreamTimeout = env.Duration("GATEWAY_UPSTREAM_TIMEOUT", c.UpstreamTimeout)
	c.BreakerFailures = env.Int("GATEWAY_UPSTREAM_BREAKER_FAILURES", c.BreakerFailures)
	if c.BreakerFailures < 1 {
		env.Fail("GATEWAY_UPSTREAM_BREAKER_FAILURES: must be at least 1")
	}
	c.BreakerCooldown = env.Duration("GATEWAY_UPSTREAM_BREAKER_COOLDOWN", c.BreakerCooldown)
	if c.BreakerCooldown <= 0 {
		env.Fail("GATEWAY_UPSTREAM_BREAKER_COOLDOWN: must be positive")
	}
	c.PolicyDir = env.String("OPA_POLICY_DIR", "")
	c.KVReplicas = env.Int("NATS_STREAM_REPLICAS", c.KVReplicas)
	if s := env.String("GATEWAY_TRUSTED_PROXIES", ""); s != "" {
		p, err := parseTrustedProxies(s)
		if err != nil {
			env.Fail("GATEWAY_TRUSTED_PROXIES: %v", err)
		}
		c.TrustedProxies = p
	}
	c.RevocationMaxStaleness = env.Duration("GATEWAY_REVOCATION_MAX_STALENESS", c.RevocationMaxStaleness)
	if c.RevocationMaxStaleness <= revocation.HeartbeatInterval {
		env.Fail("GATEWAY_REVOCATION_MAX_STALENESS=%s: must be more than the token service's heartbeat interval (%s)",
			c.RevocationMaxStaleness, revocation.HeartbeatInterval)
	}
	return c
}
