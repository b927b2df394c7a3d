-- Public keys the agents registered themselves (token service,
-- credential.generated with a keyId): the agent holds the private half, so
-- they are verification methods of its DID but not IdP-custodial keys.
-- kids are never reused per agent, so a row is never reactivated: a
-- revocation seen before its generation leaves a revoked row with an empty
-- public_jwk, and the late generation then changes nothing.
CREATE TABLE agent_held_keys (
    agent_id   TEXT NOT NULL,
    kid        TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    PRIMARY KEY (agent_id, kid)
);
