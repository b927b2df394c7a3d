-- Ids of events already counted, so a redelivered event is not counted
-- again. Pruned after 8 days (the event stream keeps events 7 days).
CREATE TABLE processed_events (
    event_id     TEXT PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- Daily counters per organisation and metric (event type).
CREATE TABLE analytics_events (
    organization_id TEXT   NOT NULL,
    date            DATE   NOT NULL,
    metric_type     TEXT   NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (organization_id, date, metric_type)
);
