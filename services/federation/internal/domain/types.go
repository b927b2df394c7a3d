// Package domain is the federation service's core: the registry of trusted
// partner identity providers and the verification of their tokens.
package domain

import (
	"context"
	"errors"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
)

// Source is the event source of the federation service.
const Source = "federation"

// Partner statuses. Expired is never stored: it is reported for an active
// partner whose expiry has passed.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusExpired   = "expired"
)

// Error codes.
const (
	CodePartnerNotFound = "PARTNER_NOT_FOUND"
	CodePartnerExists   = "PARTNER_ALREADY_EXISTS"
)

// ClaimMapping maps a partner token to a local agent: the value of
// SubjectClaim is looked up in AgentMap.
type ClaimMapping struct {
	SubjectClaim string            `json:"subjectClaim"`
	AgentMap     map[string]string `json:"agentMap"`
}

// Partner is a trusted identity provider.
type Partner struct {
	ID                   string
	Name                 string
	Issuer               string
	JWKSURI              string
	Audience             string
	AllowedOrganizations []string
	ClaimMapping         ClaimMapping
	Status               string // active or suspended
	ExpiresAt            *time.Time
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// EffectiveStatus is Status, or expired once ExpiresAt has passed.
func (p Partner) EffectiveStatus(now time.Time) string {
	if p.Status == StatusActive && p.ExpiresAt != nil && !now.Before(*p.ExpiresAt) {
		return StatusExpired
	}
	return p.Status
}

// AgentRef is the federation service's read model of an agent.
type AgentRef struct {
	AgentID   string
	OrgID     string
	Status    string
	UpdatedAt time.Time
}

// Errors a Store returns (possibly wrapped).
var (
	ErrNotFound    = errors.New("not found")
	ErrIssuerTaken = errors.New("a partner with this issuer exists")
)

// Store persists partners and the agent read model. Methods that change
// partners write the given events to the outbox in the same transaction.
type Store interface {
	// Create inserts p and evs; ErrIssuerTaken when p.Issuer is registered.
	Create(ctx context.Context, p Partner, evs []events.Envelope) error
	// Get returns the partner with id or ErrNotFound.
	Get(ctx context.Context, id string) (Partner, error)
	// GetByIssuer returns the partner whose issuer equals issuer exactly,
	// or ErrNotFound.
	GetByIssuer(ctx context.Context, issuer string) (Partner, error)
	// List returns a page of partners ordered by CreatedAt then ID, and the
	// total count.
	List(ctx context.Context, offset, limit int) ([]Partner, int64, error)
	// Update loads the partner inside a transaction, lets change modify it
	// and name the events, then saves every field except ID, Issuer and
	// CreatedAt with the events. An error from change aborts and is
	// returned as is; ErrNotFound when id does not exist.
	Update(ctx context.Context, id string, change func(p *Partner) ([]events.Envelope, error)) (Partner, error)
	// Delete removes the partner and writes evs; ErrNotFound when missing.
	Delete(ctx context.Context, id string, evs []events.Envelope) error
	// ApplyAgent upserts a, unless the stored row is newer; a
	// decommissioned agent stays decommissioned.
	ApplyAgent(ctx context.Context, a AgentRef) error
	// GetAgent returns the agent or ErrNotFound.
	GetAgent(ctx context.Context, id string) (AgentRef, error)
}

// KeySets fetches and caches partner JWK sets (internal/jwkscache).
type KeySets interface {
	// Load fetches uri now; it fails unless the set holds at least one
	// usable signing key, and otherwise becomes the partner's cached set.
	Load(ctx context.Context, partnerID, uri string) error
	// KeySet is the partner's cached set, refreshed as needed.
	KeySet(ctx context.Context, partnerID, uri string) jose.KeySet
	// Forget drops the partner's cached set.
	Forget(partnerID string)
}

// PartnerData is the payload of federation.partner.* events.
type PartnerData struct {
	PartnerID string    `json:"partnerId"`
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	Status    string    `json:"status"`
	At        time.Time `json:"at"`
}
