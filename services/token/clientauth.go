package token

import (
	"net/netip"
	"net/url"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/fedclient"
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
}

// clientAuthEnvDocs are merged into EnvDocs.
var clientAuthEnvDocs = map[string]string{
	"TOKEN_ASSERTION_MAX_LIFETIME": "how far in the future a private_key_jwt client assertion's exp may be (default 5m, 10s to 1h)",
	"TOKEN_JWKS_ALLOW_PRIVATE":     "comma-separated CIDRs of private addresses an agent's key jwksUri may reach (default none)",
	"TOKEN_JWKS_ALLOW_INSECURE":    "accept http:// jwksUris for agent keys (development only; default false)",
	"TOKEN_JWKS_REFRESH_INTERVAL":  "an agent's key jwksUri is fetched again, when an assertion names an unknown kid, at most this often per agent (default 1m, 1s to 24h): new keys are registered, keys no longer published revoked",
	"FEDERATION_SERVICE_URL":       "base URL of the federation service (e.g. http://federation:8088); set = the jwt-bearer grant exchanges partner tokens through its exchange check",
	"FEDERATION_SERVICE_TIMEOUT":   "timeout of one exchange check call (default 3s)",
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
