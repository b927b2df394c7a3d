-- The agents' allowed scopes (JSON array), from the agent.* events, for the
-- privilege rule of DID key rotation. NULL: not known yet (rows written
-- before this migration, until the agent's next event); rotation is then
-- refused to everyone but a platform operator.
ALTER TABLE agents ADD COLUMN scopes TEXT;
