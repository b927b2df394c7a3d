CREATE TABLE agents (
    agent_id        TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    email           TEXT NOT NULL,
    agent_type      TEXT NOT NULL,
    version         TEXT NOT NULL,
    capabilities    TEXT NOT NULL,
    owner           TEXT NOT NULL,
    deployment_env  TEXT NOT NULL,
    status          TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    default_scopes  TEXT NOT NULL,
    did             TEXT NULL,
    did_created_at  TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT agents_org_email_key UNIQUE (organization_id, email)
);
CREATE INDEX agents_org_created_idx ON agents (organization_id, created_at, agent_id);

CREATE TABLE credentials (
    credential_id   TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (agent_id),
    organization_id TEXT NOT NULL,
    secret_digest   BYTEA NOT NULL,
    status          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NULL,
    revoked_at      TIMESTAMPTZ NULL
);
CREATE INDEX credentials_agent_idx ON credentials (agent_id, created_at);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    alg        TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    status     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active_idx ON signing_keys (alg) WHERE status = 'active';
