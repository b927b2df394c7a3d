-- An organisation's subscription as Stripe reports it.
CREATE TABLE tenant_subscriptions (
    organization_id        TEXT PRIMARY KEY,
    tier                   TEXT NOT NULL,
    status                 TEXT NOT NULL,
    stripe_customer_id     TEXT NOT NULL DEFAULT '',
    stripe_subscription_id TEXT NOT NULL DEFAULT '',
    current_period_end     TIMESTAMPTZ,
    cancel_at_period_end   BOOLEAN NOT NULL DEFAULT FALSE,
    stripe_event_created   BIGINT NOT NULL DEFAULT 0,
    updated_at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX tenant_subscriptions_subscription_idx ON tenant_subscriptions (stripe_subscription_id);
CREATE INDEX tenant_subscriptions_customer_idx ON tenant_subscriptions (stripe_customer_id);

-- Every Stripe event id processed, written in the transaction of its effect.
CREATE TABLE stripe_events (
    event_id    TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

-- Usage per organisation, UTC day (YYYY-MM-DD) and metric.
CREATE TABLE usage_daily (
    organization_id TEXT NOT NULL,
    day             TEXT NOT NULL,
    metric          TEXT NOT NULL,
    count           BIGINT NOT NULL,
    reported        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, day, metric)
);

-- Suite event ids already counted into usage_daily (pruned after a week).
CREATE TABLE usage_events (
    event_id     TEXT PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX usage_events_processed_at_idx ON usage_events (processed_at);
