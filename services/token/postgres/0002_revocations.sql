-- Revoked token ids (kind jti) and not-before watermarks (kinds agent,
-- credential, org); not_before is Unix milliseconds. Rows are pruned after
-- expires_at, when no token they cover can still be accepted.
CREATE TABLE revocations (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
