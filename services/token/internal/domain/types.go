// Package domain holds the token service's domain: agents, credentials,
// client authentication and access-token issuance, and the interfaces it
// consumes (store, counters, org read model, key storage, event publisher).
// It imports no adapter; the module's root package wires adapters in.
//
// (The domain lives here rather than in the module root because the root
// package assembles the HTTP adapter, which itself needs these types.)
package domain

import (
	"errors"

	"github.com/agentidp/agentidp/libs/jose"
	"slices"
	"time"
)

// Agent statuses.
const (
	StatusActive         = "active"
	StatusSuspended      = "suspended"
	StatusDecommissioned = "decommissioned"
)

// Credential statuses.
const (
	CredentialActive  = "active"
	CredentialRevoked = "revoked"
)

// AgentTypes are the accepted agentType values.
var AgentTypes = []string{"screener", "classifier", "orchestrator", "extractor", "summarizer", "router", "monitor", "custom"}

// DeploymentEnvs are the accepted deploymentEnv values.
var DeploymentEnvs = []string{"development", "staging", "production"}

// AgentStatuses are the accepted status filter values.
var AgentStatuses = []string{StatusActive, StatusSuspended, StatusDecommissioned}

// Scope names the service knows.
const (
	ScopeAgentsRead    = "agents:read"
	ScopeAgentsWrite   = "agents:write"
	ScopeTokensRead    = "tokens:read"
	ScopeAuditRead     = "audit:read"
	ScopeWebhooksRead  = "webhooks:read"
	ScopeWebhooksWrite = "webhooks:write"
	ScopeAnalyticsRead = "analytics:read"
	ScopeBillingRead   = "billing:read"
	ScopeBillingWrite  = "billing:write"
	ScopeAdminOrgs     = "admin:orgs"
)

// KnownScopes lists every scope an agent may be granted.
var KnownScopes = []string{
	ScopeAgentsRead, ScopeAgentsWrite, ScopeTokensRead, ScopeAuditRead,
	ScopeWebhooksRead, ScopeWebhooksWrite, ScopeAnalyticsRead, ScopeBillingRead, ScopeBillingWrite, ScopeAdminOrgs,
}

// Agent is a registered AI agent (seed field names).
type Agent struct {
	AgentID        string     `json:"agentId"`
	Email          string     `json:"email"`
	AgentType      string     `json:"agentType"`
	Version        string     `json:"version"`
	Capabilities   []string   `json:"capabilities"`
	Owner          string     `json:"owner"`
	DeploymentEnv  string     `json:"deploymentEnv"`
	Status         string     `json:"status"`
	OrganizationID string     `json:"organizationId"`
	Scopes         []string   `json:"scopes"`
	DefaultScopes  []string   `json:"defaultScopes"`
	DID            *string    `json:"did"`
	DIDCreatedAt   *time.Time `json:"didCreatedAt"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
}

// Credential is a client secret's metadata. The secret itself exists only
// in the response that creates or rotates it; Digest is never serialised.
type Credential struct {
	CredentialID string     `json:"credentialId"`
	ClientID     string     `json:"clientId"`
	Status       string     `json:"status"`
	CreatedAt    time.Time  `json:"createdAt"`
	ExpiresAt    *time.Time `json:"expiresAt"`
	RevokedAt    *time.Time `json:"revokedAt"`
	Digest       []byte     `json:"-"`
}

// NewCredential is the response to creating or rotating a credential: the
// only place the plain secret ever appears.
type NewCredential struct {
	Credential
	ClientSecret string `json:"clientSecret"`
}

// ClientRecord is what token issuance needs about a client, cached in memory
// so that the token endpoint needs no database round trip.
type ClientRecord struct {
	AgentID       string
	OrgID         string
	Status        string
	Scopes        []string
	DefaultScopes []string
	Credentials   []ClientCredential // active credentials only
	// Keys are the active public keys of private_key_jwt (parsed once).
	Keys []*jose.VerificationKey
	// JWKSURIs are the jwksUris the active keys were registered from
	// (fetched again when an assertion names a key we do not have).
	JWKSURIs []string
}

// ClientCredential is an active credential's digest and expiry.
type ClientCredential struct {
	ID        string
	Digest    []byte
	ExpiresAt *time.Time
}

// Store errors.
var (
	// ErrNotFound: the row does not exist (or belongs to another org).
	ErrNotFound = errors.New("not found")
	// ErrAgentExists: an agent with that email exists in the org.
	ErrAgentExists = errors.New("agent already exists")
	// ErrAgentLimit: the org's agent limit would be exceeded.
	ErrAgentLimit = errors.New("agent limit reached")
	// ErrDecommissioned: the agent is decommissioned.
	ErrDecommissioned = errors.New("agent decommissioned")
	// ErrConflict: a uniqueness constraint was hit (e.g. a second active
	// signing key for one alg).
	ErrConflict = errors.New("conflict")
)

func containsAll(set, sub []string) bool {
	for _, s := range sub {
		if !slices.Contains(set, s) {
			return false
		}
	}
	return true
}
