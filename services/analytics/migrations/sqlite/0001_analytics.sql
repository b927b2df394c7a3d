-- See postgres/0001_analytics.sql. Dates are 'YYYY-MM-DD' text here.
CREATE TABLE processed_events (
    event_id     TEXT PRIMARY KEY,
    processed_at TIMESTAMP NOT NULL
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

CREATE TABLE analytics_events (
    organization_id TEXT    NOT NULL,
    date            TEXT    NOT NULL,
    metric_type     TEXT    NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (organization_id, date, metric_type)
);
