-- Signing keys under management: metadata here, private keys in the
-- secrets store at token/signing-keys/<kid>. The legacy signing_keys table
-- (sealed keys) is emptied by the service at start as it migrates its rows.
CREATE TABLE signing_key_ring (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired', 'expired', 'withdrawn')),
    public_jwk   TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    activate_at  TIMESTAMP NOT NULL,
    retire_at    TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    withdrawn_at TIMESTAMP NULL,
    updated_at   TIMESTAMP NOT NULL,
    revision     BIGINT NOT NULL DEFAULT 1
);
-- At most one key signs and at most one waits to: replicas racing to create
-- either converge on the row that won.
CREATE UNIQUE INDEX signing_key_ring_one_active_idx ON signing_key_ring (state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_key_ring_one_next_idx ON signing_key_ring (state) WHERE state = 'next';
