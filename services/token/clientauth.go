package token

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"net/url"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/fedclient"
	"github.com/nats-io/nats.go"
)

// ClientAuthConfig configures agents' own keys (private_key_jwt) and the
// federation jwt-bearer grant.
type ClientAuthConfig struct {
	// AssertionMaxLifetime bounds how far ahead a client assertion's exp
	// may be (TOKEN_ASSERTION_MAX_LIFETIME, default 5m).
	AssertionMaxLifetime time.Duration
	// JWKSAllowPrivate lists private ranges a client key jwksUri may reach
	// (TOKEN_JWKS_ALLOW_PRIVATE; default none).
	JWKSAllowPrivate []netip.Prefix
	// JWKSAllowInsecure accepts http jwksUris (TOKEN_JWKS_ALLOW_INSECURE;
	// development only).
	JWKSAllowInsecure bool
	// JWKSRefreshInterval: an agent's jwksUri is fetched again, when an
	// assertion names a key we do not have, at most this often per agent
	// (TOKEN_JWKS_REFRESH_INTERVAL, default 1m).
	JWKSRefreshInterval time.Duration
	// FederationURL is the federation service's base URL
	// (FEDERATION_SERVICE_URL); empty disables the jwt-bearer grant.
	FederationURL string
	// FederationTimeout bounds one exchange check (default 3s).
	FederationTimeout time.Duration
	// AuthThrottle limits failed client authentications per client id and
	// per source address (TOKEN_AUTH_FAIL_CLIENT_LIMIT,
	// TOKEN_AUTH_FAIL_ADDR_LIMIT, TOKEN_AUTH_FAIL_WINDOW).
	AuthThrottle domain.AuthThrottleSettings
}

// clientAuthEnvDocs are merged into EnvDocs.
var clientAuthEnvDocs = map[string]string{
	"TOKEN_ASSERTION_MAX_LIFETIME": "how far in the future a private_key_jwt client assertion's exp may be (default 5m, 10s to 1h)",
	"TOKEN_JWKS_ALLOW_PRIVATE":     "comma-separated CIDRs of private addresses an agent's key jwksUri may reach (default none)",
	"TOKEN_JWKS_ALLOW_INSECURE":    "accept http:// jwksUris for agent keys (development only; default false)",
	"TOKEN_JWKS_REFRESH_INTERVAL":  "an agent's key jwksUri is fetched again, when an assertion names an unknown kid, at most this often per agent (default 1m, 1s to 24h): new keys are registered, keys no longer published revoked",
	"FEDERATION_SERVICE_URL":       "base URL of the federation service (e.g. http://federation:8088); set = the jwt-bearer grant exchanges partner tokens through its exchange check",
	"FEDERATION_SERVICE_TIMEOUT":   "timeout of one exchange check call (default 3s)",
	"TOKEN_AUTH_FAIL_CLIENT_LIMIT": "failed client authentications of one client id per window before every attempt of it (the right secret included) gets 429 until the window ends (default 10; 0 disables)",
	"TOKEN_AUTH_FAIL_ADDR_LIMIT":   "failed client authentications from one source address per window, across client ids, before its attempts get 429 (default 100; 0 disables)",
	"TOKEN_AUTH_FAIL_WINDOW":       "the fixed window of the failed-authentication limits (default 1m, 1s to 24h)",
}

func init() {
	for k, v := range clientAuthEnvDocs {
		EnvDocs[k] = v
	}
}

func clientAuthFromEnv(env *config.Env) ClientAuthConfig {
	c := ClientAuthConfig{
		AssertionMaxLifetime: env.Duration("TOKEN_ASSERTION_MAX_LIFETIME", domain.DefaultAssertionMaxLifetime),
		JWKSAllowInsecure:    env.Bool("TOKEN_JWKS_ALLOW_INSECURE", false),
		JWKSRefreshInterval:  env.Duration("TOKEN_JWKS_REFRESH_INTERVAL", domain.DefaultClientJWKSRefreshInterval),
		FederationURL:        env.String("FEDERATION_SERVICE_URL", ""),
		FederationTimeout:    env.Duration("FEDERATION_SERVICE_TIMEOUT", 3*time.Second),
		AuthThrottle: domain.AuthThrottleSettings{
			ClientLimit: int64(env.Int("TOKEN_AUTH_FAIL_CLIENT_LIMIT", domain.DefaultAuthFailClientLimit)),
			AddrLimit:   int64(env.Int("TOKEN_AUTH_FAIL_ADDR_LIMIT", domain.DefaultAuthFailAddrLimit)),
			Window:      env.Duration("TOKEN_AUTH_FAIL_WINDOW", domain.DefaultAuthFailWindow),
		},
	}
	if c.AuthThrottle.ClientLimit < 0 || c.AuthThrottle.AddrLimit < 0 {
		env.Fail("TOKEN_AUTH_FAIL_CLIENT_LIMIT, TOKEN_AUTH_FAIL_ADDR_LIMIT: must not be negative")
	}
	if c.AuthThrottle.Window < time.Second || c.AuthThrottle.Window > 24*time.Hour {
		env.Fail("TOKEN_AUTH_FAIL_WINDOW: must be between 1s and 24h")
	}
	allow, err := safehttp.ParseAllowList(env.String("TOKEN_JWKS_ALLOW_PRIVATE", ""))
	if err != nil {
		env.Fail("TOKEN_JWKS_ALLOW_PRIVATE: %v", err)
	}
	c.JWKSAllowPrivate = allow
	if c.JWKSRefreshInterval < time.Second || c.JWKSRefreshInterval > 24*time.Hour {
		env.Fail("TOKEN_JWKS_REFRESH_INTERVAL: must be between 1s and 24h")
	}
	if c.AssertionMaxLifetime < 10*time.Second || c.AssertionMaxLifetime > time.Hour {
		env.Fail("TOKEN_ASSERTION_MAX_LIFETIME: must be between 10s and 1h")
	}
	if u, err := url.Parse(c.FederationURL); c.FederationURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		env.Fail("FEDERATION_SERVICE_URL: must be an http(s) base URL")
	}
	if c.FederationTimeout <= 0 || c.FederationTimeout > 30*time.Second {
		env.Fail("FEDERATION_SERVICE_TIMEOUT: must be between 1ns and 30s")
	}
	return c
}

// replayCache is the shared cache as the client-assertion replay set; nil
// (private_key_jwt refused) without a cache.
func replayCache(d *svcrun.Deps) domain.ReplayCache {
	if d.Cache == nil {
		return nil
	}
	return d.Cache
}

// federationClient is the exchange-check client, nil (jwt-bearer grant
// disabled) when FEDERATION_SERVICE_URL is unset.
func federationClient(cfg Config, d *svcrun.Deps) domain.FederationExchanger {
	if cfg.ClientAuth.FederationURL == "" {
		return nil
	}
	return fedclient.New(cfg.ClientAuth.FederationURL, d.Codec, cfg.ClientAuth.FederationTimeout)
}

// AuthBlockSubject is the core NATS subject on which token replicas tell
// each other about a client id or source address that reached its
// failed-authentication limit. It is outside the events stream (nothing is
// stored): a replica that misses a notice blocks the key at its own next
// failure of it, from the shared count.
const AuthBlockSubject = "agentidp-internal.token.auth-blocked"

// announceBlock publishes a block to the other replicas (best effort, no
// round trip: core NATS buffers and flushes in the background).
func announceBlock(nc *nats.Conn, log *slog.Logger) func(domain.AuthBlock) {
	return func(b domain.AuthBlock) {
		data, err := json.Marshal(b)
		if err == nil {
			err = nc.Publish(AuthBlockSubject, data)
		}
		if err != nil {
			log.Warn("announce failed-authentication block", "kind", b.Kind, "err", err)
		}
	}
}

// failureCounter is the shared cache as the throttle's counter; nil
// without a cache (each replica counts alone).
func failureCounter(d *svcrun.Deps) domain.FailureCounter {
	if d.Cache == nil {
		return nil
	}
	return d.Cache
}
