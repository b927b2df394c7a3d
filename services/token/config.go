package token

import (
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/secrets"
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
	// KeyEncryptionKey seals signing keys at rest (AES-256-GCM, 32 bytes)
	// in the local secrets store, and opens legacy sealed keys.
	KeyEncryptionKey []byte
	// Vault, when set, keeps signing keys in Vault KV v2 instead.
	Vault *secrets.VaultConfig
	// KeyRotationInterval is how long a signing key signs.
	KeyRotationInterval time.Duration
	// KeyPublishLead is how long the next key is in the JWKS before it signs.
	KeyPublishLead time.Duration
	// ClientCacheTTL and ClientCacheSize bound the in-memory client cache.
	ClientCacheTTL  time.Duration
	ClientCacheSize int
	// RotationGrace keeps a rotated credential's old secret working for
	// this long (0, the default: it stops at once and tokens issued under
	// the credential are revoked; > 0: a new credential is created, the
	// old one expires after the grace and its tokens live until their exp).
	RotationGrace time.Duration
	// KVReplicas is the replica count of the KV buckets the service
	// creates or ensures (NATS_STREAM_REPLICAS, default 1).
	KVReplicas int
	// MaxDelegationDepth bounds delegation chains (hops, default 3).
	MaxDelegationDepth int
	// ClientAuth configures private_key_jwt and the jwt-bearer grant.
	ClientAuth ClientAuthConfig
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

		MaxDelegationDepth: 3,

		KeyRotationInterval: 30 * 24 * time.Hour,
		KeyPublishLead:      time.Hour,
	}
}

// EnvDocs documents the service's variables.
var EnvDocs = map[string]string{
	"TOKEN_ISSUER":                "iss of access tokens and base URL of discovery (default http://localhost:8080)",
	"TOKEN_AUDIENCE":              "aud of access tokens (default agentidp)",
	"TOKEN_TTL":                   "access-token lifetime (default 1h)",
	"TOKEN_ROTATION_GRACE":        "how long a rotated client secret keeps working beside the new one (default 0: none, as in the seed)",
	"TOKEN_SIGNING_ALG":           "ES256 (default), EdDSA or RS256",
	"TOKEN_SECRET_PEPPER":         "required: 32+ bytes (hex or base64) keying the HMAC of stored client secrets",
	"TOKEN_KEY_ENCRYPTION_KEY":    "32 bytes (hex or base64) sealing signing keys in the local secrets store (AES-256-GCM); required unless VAULT_ADDR is set",
	"TOKEN_KEY_ROTATION_INTERVAL": "how long a signing key signs before the next takes over (default 720h = 30 days, min 1h)",
	"TOKEN_KEY_PUBLISH_LEAD":      "how long the next key is published in the JWKS before it signs (default 1h; at least 5m, the gateway's JWKS refresh; less than the rotation interval)",
	"VAULT_ADDR":                  "Vault address: set = signing keys in Vault KV v2 (see libs/secrets for VAULT_TOKEN, VAULT_ROLE_ID, VAULT_SECRET_ID, VAULT_MOUNT, VAULT_PATH_PREFIX, VAULT_TIMEOUT)",
	"TOKEN_CLIENT_CACHE_TTL":      "lifetime of cached client records (default 60s)",
	"TOKEN_CLIENT_CACHE_SIZE":     "maximum cached client records (default 100000)",
	"TOKEN_DELEGATION_MAX_DEPTH":  "maximum delegation chain length in hops for /delegate and token exchange (default 3, 1 to 10)",
}

// ConfigFromEnv reads the service's variables; problems are collected in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	c := Config{
		Issuer:          env.String("TOKEN_ISSUER", d.Issuer),
		Audience:        env.String("TOKEN_AUDIENCE", d.Audience),
		TokenTTL:        env.Duration("TOKEN_TTL", d.TokenTTL),
		SigningAlg:      jose.Alg(env.OneOf("TOKEN_SIGNING_ALG", string(d.SigningAlg), "ES256", "EdDSA", "RS256")),
		SecretPepper:    env.Key("TOKEN_SECRET_PEPPER", 32, true),
		Vault:           secrets.VaultConfigFromEnv(env),
		ClientCacheTTL:  env.Duration("TOKEN_CLIENT_CACHE_TTL", d.ClientCacheTTL),
		ClientCacheSize: env.Int("TOKEN_CLIENT_CACHE_SIZE", d.ClientCacheSize),
	}
	c.KeyEncryptionKey = env.Key("TOKEN_KEY_ENCRYPTION_KEY", 32, c.Vault == nil)
	c.RotationGrace = env.Duration("TOKEN_ROTATION_GRACE", d.RotationGrace)
	c.KeyRotationInterval = env.Duration("TOKEN_KEY_ROTATION_INTERVAL", d.KeyRotationInterval)
	c.KeyPublishLead = env.Duration("TOKEN_KEY_PUBLISH_LEAD", d.KeyPublishLead)
	if c.KeyRotationInterval < time.Hour {
		env.Fail("TOKEN_KEY_ROTATION_INTERVAL: must be at least 1h")
	}
	if c.KeyPublishLead < 5*time.Minute {
		env.Fail("TOKEN_KEY_PUBLISH_LEAD: must be at least 5m (the gateway's JWKS refresh interval)")
	} else if c.KeyPublishLead >= c.KeyRotationInterval {
		env.Fail("TOKEN_KEY_PUBLISH_LEAD: must be shorter than TOKEN_KEY_ROTATION_INTERVAL")
	}
	if c.KeyEncryptionKey != nil && len(c.KeyEncryptionKey) != 32 {
		env.Fail("TOKEN_KEY_ENCRYPTION_KEY: must be exactly 32 bytes")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		env.Fail("TOKEN_TTL: must be between 1m and 24h")
	}
	c.MaxDelegationDepth = env.Int("TOKEN_DELEGATION_MAX_DEPTH", d.MaxDelegationDepth)
	if c.MaxDelegationDepth < 1 || c.MaxDelegationDepth > 10 {
		env.Fail("TOKEN_DELEGATION_MAX_DEPTH: must be between 1 and 10")
	}
	if c.ClientCacheSize < 1 {
		env.Fail("TOKEN_CLIENT_CACHE_SIZE: must be positive")
	}
	// The buckets this service creates (revocations) or ensures (the
	// organisations' read model, which tier also ensures) take the same
	// replica count as the streams (svcrun reads it too): left at 1, every
	// token replica's start would shrink an R3 bucket to one replica.
	c.KVReplicas = env.Int("NATS_STREAM_REPLICAS", 1)
	if c.KVReplicas < 1 {
		env.Fail("NATS_STREAM_REPLICAS: must be at least 1")
	}
	c.ClientAuth = clientAuthFromEnv(env)
	return c
}
