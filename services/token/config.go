package token

import (
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/jose"
)

// Config is the token service's own configuration (the common variables
// are read by svcrun).
type Config struct {
	// Issuer is the iss of every access token and the base of discovery URLs.
	Issuer string
	// Audience is the aud of every access token.
	Audience string
	// TokenTTL is the access-token lifetime.
	TokenTTL time.Duration
	// SigningAlg is ES256, EdDSA or RS256.
	SigningAlg jose.Alg
	// SecretPepper keys the HMAC under which client secrets are stored (32+ bytes).
	SecretPepper []byte
	// KeyEncryptionKey seals signing keys at rest (AES-256-GCM, 32 bytes).
	KeyEncryptionKey []byte
	// ClientCacheTTL and ClientCacheSize bound the in-memory client cache.
	ClientCacheTTL  time.Duration
	ClientCacheSize int
}

// DefaultConfig returns development defaults. The pepper and key encryption
// key are fixed, public values: fine for `agentidp dev`, never for production
// (ConfigFromEnv requires real ones).
func DefaultConfig() Config {
	return Config{
		Issuer:           "http://localhost:8080",
		Audience:         "agentidp",
		TokenTTL:         time.Hour,
		SigningAlg:       jose.ES256,
		SecretPepper:     []byte("agentidp-dev-pepper-not-for-production!!"),
		KeyEncryptionKey: []byte("agentidp-dev-kek-32-bytes-long!!"),
		ClientCacheTTL:   60 * time.Second,
		ClientCacheSize:  100_000,
	}
}

// EnvDocs documents the service's variables.
var EnvDocs = map[string]string{
	"TOKEN_ISSUER":             "iss of access tokens and base URL of discovery (default http://localhost:8080)",
	"TOKEN_AUDIENCE":           "aud of access tokens (default agentidp)",
	"TOKEN_TTL":                "access-token lifetime (default 1h)",
	"TOKEN_SIGNING_ALG":        "ES256 (default), EdDSA or RS256",
	"TOKEN_SECRET_PEPPER":      "required: 32+ bytes (hex or base64) keying the HMAC of stored client secrets",
	"TOKEN_KEY_ENCRYPTION_KEY": "required: 32 bytes (hex or base64) sealing signing keys at rest (AES-256-GCM)",
	"TOKEN_CLIENT_CACHE_TTL":   "lifetime of cached client records (default 60s)",
	"TOKEN_CLIENT_CACHE_SIZE":  "maximum cached client records (default 100000)",
}

// ConfigFromEnv reads the service's variables; problems are collected in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	c := Config{
		Issuer:           env.String("TOKEN_ISSUER", d.Issuer),
		Audience:         env.String("TOKEN_AUDIENCE", d.Audience),
		TokenTTL:         env.Duration("TOKEN_TTL", d.TokenTTL),
		SigningAlg:       jose.Alg(env.OneOf("TOKEN_SIGNING_ALG", string(d.SigningAlg), "ES256", "EdDSA", "RS256")),
		SecretPepper:     env.Key("TOKEN_SECRET_PEPPER", 32, true),
		KeyEncryptionKey: env.Key("TOKEN_KEY_ENCRYPTION_KEY", 32, true),
		ClientCacheTTL:   env.Duration("TOKEN_CLIENT_CACHE_TTL", d.ClientCacheTTL),
		ClientCacheSize:  env.Int("TOKEN_CLIENT_CACHE_SIZE", d.ClientCacheSize),
	}
	if c.KeyEncryptionKey != nil && len(c.KeyEncryptionKey) != 32 {
		env.Fail("TOKEN_KEY_ENCRYPTION_KEY: must be exactly 32 bytes")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		env.Fail("TOKEN_TTL: must be between 1m and 24h")
	}
	if c.ClientCacheSize < 1 {
		env.Fail("TOKEN_CLIENT_CACHE_SIZE: must be positive")
	}
	return c
}
