package events

import "time"

// AgentData is the payload of agent.* events.
type AgentData struct {
	AgentID        string    `json:"agentId"`
	OrganizationID string    `json:"organizationId"`
	Email          string    `json:"email"`
	AgentType      string    `json:"agentType"`
	Status         string    `json:"status"`
	PreviousStatus string    `json:"previousStatus,omitempty"`
	Scopes         []string  `json:"scopes,omitempty"`
	At             time.Time `json:"at"`
}

// CredentialData is the payload of credential.* events. It never carries the
// secret or its digest.
type CredentialData struct {
	CredentialID string     `json:"credentialId"`
	AgentID      string     `json:"agentId"`
	Status       string     `json:"status"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	At           time.Time  `json:"at"`
}

// TokenIssuedData is the payload of token.issued.
type TokenIssuedData struct {
	JTI          string    `json:"jti"`
	ClientID     string    `json:"clientId"`
	CredentialID string    `json:"credentialId,omitempty"`
	Scope        string    `json:"scope"`
	GrantType    string    `json:"grantType"`
	ExpiresAt    time.Time `json:"expiresAt"`
	IssuedAt     time.Time `json:"issuedAt"`
}

// AuthFailedData is the payload of auth.failed. ClientID is as presented by
// the caller and may not exist; when it names a known agent the envelope
// carries the agent's organisation and id, so the failure lands in that
// tenant's audit log. Never a secret or an assertion.
type AuthFailedData struct {
	ClientID string `json:"clientId,omitempty"`
	// Reason is the failure's category, e.g. unknown_client,
	// invalid_secret, agent_suspended, assertion_invalid, malformed.
	Reason string `json:"reason"`
	// Method is the client authentication method: client_secret_basic,
	// client_secret_post or private_key_jwt ("none" when absent).
	Method string `json:"method,omitempty"`
	// SourceAddress is the caller's IP address as the gateway saw it.
	SourceAddress string    `json:"sourceAddress,omitempty"`
	At            time.Time `json:"at"`
}

// Limits are an organisation's tier limits; -1 means unlimited.
type Limits struct {
	MaxAgents       int64 `json:"maxAgents"`
	MaxCallsPerDay  int64 `json:"maxCallsPerDay"`
	MaxTokensPerDay int64 `json:"maxTokensPerDay"`
}

// OrgData is the payload of org.* events and the value of the organisation
// read model (NATS KV bucket OrgsBucket).
type OrgData struct {
	OrganizationID string    `json:"organizationId"`
	Name           string    `json:"name"`
	Slug           string    `json:"slug"`
	PlanTier       string    `json:"planTier"`
	Status         string    `json:"status"`
	Limits         Limits    `json:"limits"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// OrgMemberData is the payload of org.member_added.
type OrgMemberData struct {
	OrganizationID string    `json:"organizationId"`
	AgentID        string    `json:"agentId"`
	Role           string    `json:"role"`
	At             time.Time `json:"at"`
}

// TierChangedData is the payload of tier.changed.
type TierChangedData struct {
	OrganizationID string    `json:"organizationId"`
	From           string    `json:"from"`
	To             string    `json:"to"`
	Limits         Limits    `json:"limits"`
	At             time.Time `json:"at"`
}

// OrgsBucket is the NATS KV bucket holding every organisation's OrgData,
// keyed by organisation id. The tier service writes it; the gateway and the
// token service watch it so that no request needs a call to tier.
const OrgsBucket = "agentidp_orgs"

// KeysChangedSubject is the core NATS subject (outside the event stream,
// so consumers of agentidp.> never see it) on which the token service
// announces a change of its signing keys. Gateways refresh their JWKS at
// once when they hear it, so a withdrawn key stops verifying within
// milliseconds instead of at the next periodic refresh.
const KeysChangedSubject = "agentidp_internal.keys.changed"
