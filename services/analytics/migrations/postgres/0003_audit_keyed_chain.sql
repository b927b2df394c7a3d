-- Keyed audit chain (see internal/audit): records written from now on are
-- chain version 2, an HMAC under a key that is not in this database, named
-- by key_id. Rows written before keep version 1 (unkeyed SHA-256, key_id
-- '') and are vouched for by the one upgrade anchor per organisation the
-- service signs at its first start after this migration. The defaults make
-- the rows an older replica still inserts version 1 as well, so they can
-- never pass for keyed ones.
ALTER TABLE audit_events ADD COLUMN chain_version SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE audit_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_checkpoints ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_anchors (
    organization_id TEXT        PRIMARY KEY,
    seq             BIGINT      NOT NULL,
    hash            TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    key_id          TEXT        NOT NULL,
    signature       TEXT        NOT NULL
);
