-- See postgres/0003_audit_keyed_chain.sql.
ALTER TABLE audit_events ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_checkpoints ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_anchors (
    organization_id TEXT        PRIMARY KEY,
    seq             INTEGER     NOT NULL,
    hash            TEXT        NOT NULL,
    created_at      TIMESTAMP   NOT NULL,
    key_id          TEXT        NOT NULL,
    signature       TEXT        NOT NULL
);
