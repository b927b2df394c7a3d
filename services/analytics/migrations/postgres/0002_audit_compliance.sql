-- Tamper-evident audit log: one hash chain per organisation (see
-- internal/audit for the hash). Records are appended by the consumer in the
-- transaction that counts the batch; audit_heads serialises appends per
-- organisation (its row is locked until commit).
CREATE TABLE audit_events (
    organization_id TEXT        NOT NULL,
    seq             BIGINT      NOT NULL,
    event_id        TEXT        NOT NULL UNIQUE,
    agent_id        TEXT        NOT NULL,
    action          TEXT        NOT NULL,
    outcome         TEXT        NOT NULL,
    timestamp       TIMESTAMPTZ NOT NULL,
    source          TEXT        NOT NULL,
    -- TEXT, not JSONB: the hash covers these exact bytes.
    metadata        TEXT        NOT NULL,
    prev_hash       TEXT        NOT NULL,
    hash            TEXT        NOT NULL,
    PRIMARY KEY (organization_id, seq)
);
CREATE INDEX audit_events_org_time_idx ON audit_events (organization_id, timestamp DESC, seq DESC);

CREATE TABLE audit_heads (
    organization_id TEXT   PRIMARY KEY,
    seq             BIGINT NOT NULL,
    hash            TEXT   NOT NULL
);

-- Signed vouchers for chain prefixes deleted by retention.
CREATE TABLE audit_checkpoints (
    organization_id TEXT        NOT NULL,
    seq             BIGINT      NOT NULL,
    hash            TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    signature       TEXT        NOT NULL,
    PRIMARY KEY (organization_id, seq)
);

-- Events per organisation, UTC day and hour (activity heatmap).
CREATE TABLE analytics_activity (
    organization_id TEXT     NOT NULL,
    date            DATE     NOT NULL,
    hour            SMALLINT NOT NULL,
    count           BIGINT   NOT NULL,
    PRIMARY KEY (organization_id, date, hour)
);

-- token.issued per organisation, day and agent (the envelope subject).
CREATE TABLE analytics_agent_tokens (
    organization_id TEXT        NOT NULL,
    date            DATE        NOT NULL,
    agent_id        TEXT        NOT NULL,
    count           BIGINT      NOT NULL,
    last_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, date, agent_id)
);

-- Read model of agents (agent.* and did.created events) for compliance.
-- agent_at / did_at are the event times of the state kept (last wins).
CREATE TABLE compliance_agents (
    organization_id TEXT        NOT NULL,
    agent_id        TEXT        NOT NULL,
    email           TEXT        NOT NULL DEFAULT '',
    agent_type      TEXT        NOT NULL DEFAULT '',
    status          TEXT        NOT NULL DEFAULT '',
    scopes          TEXT        NOT NULL DEFAULT '',
    agent_at        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ,
    did             TEXT        NOT NULL DEFAULT '',
    did_at          TIMESTAMPTZ,
    PRIMARY KEY (organization_id, agent_id)
);

-- Read model of credentials (credential.* events); never a secret.
CREATE TABLE compliance_credentials (
    organization_id TEXT        NOT NULL,
    credential_id   TEXT        NOT NULL,
    agent_id        TEXT        NOT NULL,
    status          TEXT        NOT NULL,
    expires_at      TIMESTAMPTZ,
    issued_at       TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, credential_id)
);
