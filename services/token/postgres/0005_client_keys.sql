-- Public keys agents authenticate with (private_key_jwt, RFC 7523 §2.2).
-- Only public JWKs are stored; a key registered from a jwks_uri keeps the
-- URI it came from. Revoking a key stops its future use (authentication
-- only: tokens issued with it stay valid until they expire).
CREATE TABLE client_keys (
    agent_id        TEXT NOT NULL REFERENCES agents (agent_id),
    kid             TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    alg             TEXT NOT NULL,
    jwk             TEXT NOT NULL,
    jwks_uri        TEXT NULL,
    status          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ NULL,
    PRIMARY KEY (agent_id, kid)
);
CREATE INDEX client_keys_agent_idx ON client_keys (agent_id, created_at, kid);
