package domain

import (
	"context"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/revocation"
)

// AgentFilter narrows ListAgents; empty fields do not filter.
type AgentFilter struct {
	Owner     string
	AgentType string
	Status    string
}

// AgentChange is what an UpdateAgent mutation asks the store to do besides
// writing the agent back.
type AgentChange struct {
	// Events are added to the outbox in the same transaction.
	Events []events.Envelope
	// MaxAgents, when >= 0, makes the store fail with ErrAgentLimit if the
	// org already has that many non-decommissioned agents other than this one.
	MaxAgents int64
	// RevokeCredentials revokes every active credential of the agent
	// (decommissioning), at the agent's UpdatedAt.
	RevokeCredentials bool
	// Skip leaves everything unchanged (no write, no events).
	Skip bool
	// Revocations are recorded in the same transaction (watermarks of a
	// suspension or decommissioning).
	Revocations []Revocation
}

// CredentialChange is what an UpdateCredential mutation asks the store to
// do besides writing the credential back. With no events nothing is
// written.
type CredentialChange struct {
	// Events are added to the outbox in the same transaction.
	Events []events.Envelope
	// Revocations are recorded in the same transaction.
	Revocations []Revocation
	// Insert, when set, is a new credential of the same agent inserted in
	// the same transaction (rotation with a grace period).
	Insert *Credential
}

// Revocation is a row of the revocations table: a revoked jti or a
// not-before watermark of an agent, credential or organisation
// (libs/revocation explains the semantics).
type Revocation struct {
	Kind revocation.Kind
	Key  string
	// NotBefore is the watermark in Unix milliseconds: tokens issued at or
	// before it are revoked.
	NotBefore int64
	// ExpiresAt is when the row can be pruned: no token it covers can be
	// accepted any more.
	ExpiresAt time.Time
}

// Store is the token service's persistence. Every method scoped by orgID
// treats another organisation's rows as missing (ErrNotFound). Events passed
// in are written to the outbox in the same transaction as the change, so a
// change is published if and only if it commits.
type Store interface {
	// CreateAgent inserts a. When maxAgents >= 0 and the org already has
	// maxAgents non-decommissioned agents it fails with ErrAgentLimit; a
	// duplicate (org, email) fails with ErrAgentExists. It returns the org's
	// count of non-decommissioned agents after the insert.
	CreateAgent(ctx context.Context, a Agent, maxAgents int64, evs []events.Envelope) (int64, error)
	// CountAgentsByOrg returns every organisation's number of
	// non-decommissioned agents (organisations with none are absent).
	CountAgentsByOrg(ctx context.Context) (map[string]int64, error)
	// GetAgent returns the agent or ErrNotFound.
	GetAgent(ctx context.Context, orgID, agentID string) (Agent, error)
	// AgentOrg returns the organisation an agent belongs to, or
	// ErrNotFound. Only the platform operator's cross-organisation
	// requests use it.
	AgentOrg(ctx context.Context, agentID string) (string, error)
	// FindAgentByEmail returns the org's agent with that email or ErrNotFound.
	FindAgentByEmail(ctx context.Context, orgID, email string) (Agent, error)
	// ListAgents returns one page in (createdAt, agentId) order and the
	// total number of matches.
	ListAgents(ctx context.Context, orgID string, f AgentFilter, offset, limit int) ([]Agent, int64, error)
	// UpdateAgent loads the agent inside a transaction (locked against
	// concurrent updates), calls mutate, and writes the result with the
	// change's events. mutate's error is returned as is and nothing is
	// written. It returns the agent as stored and the org's count of
	// non-decommissioned agents afterwards.
	UpdateAgent(ctx context.Context, orgID, agentID string, mutate func(a *Agent) (AgentChange, error)) (Agent, int64, error)

	// CreateCredential inserts c for its agent (c.ClientID), which must exist
	// in orgID (ErrNotFound) and not be decommissioned (ErrDecommissioned).
	CreateCredential(ctx context.Context, orgID string, c Credential, evs []events.Envelope) error
	// ListCredentials returns the agent's credentials, oldest first
	// (ErrNotFound when the agent does not exist in orgID).
	ListCredentials(ctx context.Context, orgID, agentID string) ([]Credential, error)
	// UpdateCredential loads the credential of the agent inside a
	// transaction, calls mutate and writes status, digest, expiresAt and
	// revokedAt back with the change's events, revocations and inserted
	// credential. ErrNotFound for a missing agent or credential. When mutate
	// returns no events nothing is written.
	UpdateCredential(ctx context.Context, orgID, agentID, credentialID string, mutate func(a Agent, c *Credential) (CredentialChange, error)) (Credential, error)

	// AddRevocations records revocations with events in one transaction. A
	// watermark only moves forward: an existing row with a later NotBefore
	// is kept.
	AddRevocations(ctx context.Context, revs []Revocation, evs []events.Envelope) error
	// ListRevocations returns every row that has not expired at now.
	ListRevocations(ctx context.Context, now time.Time) ([]Revocation, error)
	// PruneRevocations deletes rows expired at now and returns how many.
	PruneRevocations(ctx context.Context, now time.Time) (int64, error)

	// LoadClient returns the client record for an agent id with its active
	// credentials (any org), or ErrNotFound.
	LoadClient(ctx context.Context, clientID string) (ClientRecord, error)

	// ActiveSigningKey returns the active sealed key for alg or ErrNotFound.
	ActiveSigningKey(ctx context.Context, alg string) (SealedKey, error)
	// InsertSigningKey stores k; a second active key for one alg fails with
	// ErrConflict.
	InsertSigningKey(ctx context.Context, k SealedKey) error
	// SigningKeys returns every non-deleted key (active and retired), oldest
	// first.
	SigningKeys(ctx context.Context) ([]SealedKey, error)

	DelegationStore
	ClientKeyStore
}

// SealedKey is a signing key row: the private key is sealed (encrypted).
type SealedKey struct {
	KID       string
	Alg       string
	Sealed    []byte
	Status    string // active | retired
	CreatedAt time.Time
}
