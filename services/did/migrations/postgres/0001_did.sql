-- Read model of the agents (fed by agent.* events).
CREATE TABLE agents (
    agent_id       TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    email          TEXT NOT NULL,
    agent_type     TEXT NOT NULL,
    status         TEXT NOT NULL,
    capabilities   TEXT NOT NULL,
    owner          TEXT NOT NULL,
    version        TEXT NOT NULL,
    deployment_env TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Public halves of the DID keys; subject is an agent id or "instance".
CREATE TABLE agent_did_keys (
    agent_id   TEXT NOT NULL,
    kid        TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    key_ref    TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ,
    PRIMARY KEY (agent_id, kid)
);
-- At most one active key per subject: concurrent first-key creation on
-- several replicas ends with exactly one winner.
CREATE UNIQUE INDEX agent_did_keys_one_active ON agent_did_keys (agent_id) WHERE status = 'active';

-- Private keys sealed with AES-256-GCM (the local key store used when no
-- secrets backend is configured).
CREATE TABLE did_sealed_keys (
    ref        TEXT PRIMARY KEY,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
