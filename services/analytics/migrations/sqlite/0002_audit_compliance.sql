-- See postgres/0002_audit_compliance.sql. Dates are YYYY-MM-DD text here.
-- Tamper-evident audit log: one hash chain per organisation (see
-- internal/audit for the hash). Records are appended by the consumer in the
-- transaction that counts the batch; audit_heads serialises appends per
-- organisation (its row is locked until commit).
CREATE TABLE audit_events (
    organization_id TEXT        NOT NULL,
    seq             INTEGER     NOT NULL,
    event_id        TEXT        NOT NULL UNIQUE,
    agent_id        TEXT        NOT NULL,
    action          TEXT        NOT NULL,
    outcome         TEXT        NOT NULL,
    timestamp       TIMESTAMP   NOT NULL,
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
    seq             INTEGER NOT NULL,
    hash            TEXT   NOT NULL
);

-- Signed vouchers for chain prefixes deleted by retention.
CREATE TABLE audit_checkpoints (
    organization_id TEXT        NOT NULL,
    seq             INTEGER     NOT NULL,
    hash            TEXT        NOT NULL,
    created_at      TIMESTAMP   NOT NULL,
    signature       TEXT        NOT NULL,
    PRIMARY KEY (organization_id, seq)
);

-- Events per organisation, UTC day and hour (activity heatmap).
CREATE TABLE analytics_activity (
    organization_id TEXT     NOT NULL,
    date            TEXT     NOT NULL,
    hour            INTEGER  NOT NULL,
    count           INTEGER  NOT NULL,
    PRIMARY KEY (organization_id, date, hour)
);

-- token.issued per organisation, day and agent (the envelope subject).
CREATE TABLE analytics_agent_tokens (
    organization_id TEXT        NOT NULL,
    date            TEXT        NOT NULL,
    agent_id        TEXT        NOT NULL,
    count           INTEGER     NOT NULL,
    last_at         TIMESTAMP   NOT NULL,
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
    agent_at        TIMESTAMP  ,
    created_at      TIMESTAMP  ,
    did             TEXT        NOT NULL DEFAULT '',
    did_at          TIMESTAMP  ,
    PRIMARY KEY (organization_id, agent_id)
);

-- Read model of credentials (credential.* events); never a secret.
CREATE TABLE compliance_credentials (
    organization_id TEXT        NOT NULL,
    credential_id   TEXT        NOT NULL,
    agent_id        TEXT        NOT NULL,
    status          TEXT        NOT NULL,
    expires_at      TIMESTAMP  ,
    issued_at       TIMESTAMP  ,
    updated_at      TIMESTAMP   NOT NULL,
    PRIMARY KEY (organization_id, credential_id)
);
