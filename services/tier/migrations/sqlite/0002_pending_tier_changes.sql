-- Downgrades ordered by billing, applied when apply_at has passed (one per
-- organisation; a later upgrade deletes it).
CREATE TABLE pending_tier_changes (
    organization_id TEXT PRIMARY KEY,
    tier            TEXT NOT NULL,
    apply_at        TIMESTAMP NOT NULL
);
CREATE INDEX pending_tier_changes_apply_at_idx ON pending_tier_changes (apply_at);

-- The effectiveAt of the last billing plan change applied per organisation,
-- so an older billing.subscription.updated delivered late is ignored.
CREATE TABLE billing_plan_state (
    organization_id TEXT PRIMARY KEY,
    effective_at    TIMESTAMP NOT NULL
);
