CREATE TABLE webhook_subscriptions (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    name            TEXT NOT NULL,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL, -- JSON array of event types or "*"
    active          BOOLEAN NOT NULL,
    secret_path     TEXT NOT NULL,
    failure_count   INTEGER NOT NULL DEFAULT 0,
    failing_since   TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_subscriptions_org_idx ON webhook_subscriptions (organization_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    organization_id  TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER NULL,
    last_error       TEXT NOT NULL DEFAULT '',
    next_attempt_at  TIMESTAMPTZ NULL,
    lease_until      TIMESTAMPTZ NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_lease_idx ON webhook_deliveries (subscription_id, lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX webhook_deliveries_list_idx ON webhook_deliveries (subscription_id, created_at DESC, id DESC);

-- Local sealed secret store (AES-256-GCM); replaced by Vault KV v2 when configured.
CREATE TABLE webhook_secrets (
    path       TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
