CREATE TABLE federation_partners (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    issuer                TEXT NOT NULL UNIQUE,
    jwks_uri              TEXT NOT NULL,
    audience              TEXT NOT NULL,
    allowed_organizations TEXT NOT NULL, -- JSON array of organisation ids
    claim_mapping         TEXT NOT NULL, -- JSON {subjectClaim, agentMap}
    status                TEXT NOT NULL,
    expires_at            TIMESTAMP,
    created_at            TIMESTAMP NOT NULL,
    updated_at            TIMESTAMP NOT NULL
);
CREATE INDEX federation_partners_created_idx ON federation_partners (created_at, id);

-- Read model of the agents (fed by agent.* events): where a mapped agent
-- belongs and whether it may act.
CREATE TABLE agents (
    agent_id   TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    status     TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
