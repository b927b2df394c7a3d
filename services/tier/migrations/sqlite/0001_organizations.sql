CREATE TABLE organizations (
    organization_id      TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    slug                 TEXT NOT NULL UNIQUE,
    plan_tier            TEXT NOT NULL,
    max_agents           INTEGER,
    max_tokens_per_month INTEGER,
    status               TEXT NOT NULL,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL
);
CREATE INDEX organizations_created_idx ON organizations (created_at, organization_id);

CREATE TABLE organization_members (
    organization_id TEXT NOT NULL REFERENCES organizations (organization_id),
    agent_id        TEXT NOT NULL,
    role            TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (organization_id, agent_id)
);
