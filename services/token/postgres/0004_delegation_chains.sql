-- Delegations created through POST /api/v1/oauth2/token/delegate. Tokens
-- derived from them by token exchange carry the chain ids (chain_ids claim)
-- and are not stored: revoking a chain writes a revocation row of kind
-- chain, which every gateway applies to the whole subtree.
CREATE TABLE delegation_chains (
    chain_id        TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    delegator_id    TEXT NOT NULL,
    delegatee_id    TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    parent_chain_id TEXT NULL,
    depth           INTEGER NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX delegation_chains_delegator_idx ON delegation_chains (organization_id, delegator_id, created_at, chain_id);
CREATE INDEX delegation_chains_delegatee_idx ON delegation_chains (organization_id, delegatee_id, created_at, chain_id);
