-- The claim walks each endpoint's due deliveries in order and stops after
-- the few it takes (LIMIT), instead of ranking the whole backlog: index
-- the pending/failed deliveries by endpoint then due time. It replaces the
-- index on due time alone, which no query needs any more.
CREATE INDEX webhook_deliveries_sub_due_idx ON webhook_deliveries (subscription_id, next_attempt_at, id) WHERE status IN ('pending', 'failed');
DROP INDEX webhook_deliveries_due_idx;
