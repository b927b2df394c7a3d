// Package domain is the did service's core: the agent read model it keeps
// from agent.* events, the DID keys it issues and rotates, and the DID
// documents, resolution results and agent cards it renders.
package domain

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
)

// Source is the event source of the did service.
const Source = "did"

// Agent statuses (as the token service publishes them).
const (
	StatusActive         = "active"
	StatusSuspended      = "suspended"
	StatusDecommissioned = "decommissioned"
)

// Key statuses.
const (
	KeyActive  = "active"
	KeyRetired = "retired"
)

// InstanceSubject is the key subject of the IdP's own did:web DID; it is not
// a UUID, so it can never collide with an agent id.
const InstanceSubject = "instance"

// CodeAgentNotFound is the seed's 404 code.
const CodeAgentNotFound = "AGENT_NOT_FOUND"

// CodeAgentDecommissioned is the code of the 410 for a decommissioned agent.
const CodeAgentDecommissioned = "AGENT_DECOMMISSIONED"

// Agent is the did service's read model of an agent, built from the events.
type Agent struct {
	AgentID       string
	OrgID         string
	Email         string
	AgentType     string
	Status        string
	Capabilities  []string
	Owner         string
	Version       string
	DeploymentEnv string
	// Scopes are the agent's allowed scopes as the latest agent event
	// carrying them said (the token service sends them on every agent.*
	// event); nil while unknown (a row written before the did service
	// kept them, or events without them). The privilege rule of key
	// rotation needs them and refuses while they are unknown.
	Scopes    []string
	CreatedAt time.Time // time of the first event seen
	UpdatedAt time.Time // time of the latest event applied
}

// Key is one DID key's public half and where its private half is kept.
type Key struct {
	Subject   string // agent id, or InstanceSubject
	KID       string // RFC 7638 thumbprint
	PublicJWK jose.JWK
	KeyRef    string // path of the private key in the KeyStore
	Status    string
	CreatedAt time.Time
	RetiredAt *time.Time
}

// AgentHeldKey is a public key an agent registered itself with the token
// service (POST /api/v1/agents/{id}/keys); the agent holds the private half.
// It is a verification method of the agent's DID while RevokedAt is nil.
type AgentHeldKey struct {
	AgentID   string
	OrgID     string // organisation of the event that announced it
	KID       string
	PublicJWK jose.JWK // zero for a revocation seen before its generation
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Errors a Store returns (possibly wrapped).
var (
	ErrNotFound    = errors.New("not found")
	ErrKeyExists   = errors.New("subject already has a DID key")
	ErrNoActiveKey = errors.New("subject has no active DID key")
)

// Store persists the agent read model and the DID keys. Methods that change
// state write the given events to the outbox in the same transaction.
type Store interface {
	// ApplyAgent inserts a (CreatedAt = UpdatedAt = a.UpdatedAt) when the
	// agent is unknown. Otherwise it overwrites the mutable fields only if
	// a.UpdatedAt is not before the stored UpdatedAt (older, redelivered
	// events change nothing), and never moves a decommissioned agent to
	// another status. A nil a.Scopes (the event did not carry them) keeps
	// the stored scopes; a non-nil one replaces them. It returns the stored
	// agent after the call.
	ApplyAgent(ctx context.Context, a Agent) (Agent, error)
	// GetAgent returns the agent with id or ErrNotFound.
	GetAgent(ctx context.Context, id string) (Agent, error)
	// CreateFirstKey inserts k (Status active) with evs unless k.Subject
	// already has a key of any status: then it writes nothing and returns
	// ErrKeyExists, also when a concurrent caller won the race.
	CreateFirstKey(ctx context.Context, k Key, evs []events.Envelope) error
	// Keys returns every key of subject ordered by CreatedAt then KID
	// (none: an empty slice, no error).
	Keys(ctx context.Context, subject string) ([]Key, error)
	// RotateKey retires the subject's active key at k.CreatedAt and inserts
	// k as the active key, with the events mkEvents builds from the retired
	// key, in one transaction. It returns the key it retired, or
	// ErrNoActiveKey (writing nothing). An error from mkEvents aborts.
	RotateKey(ctx context.Context, k Key, mkEvents func(retired Key) ([]events.Envelope, error)) (Key, error)
	// AddAgentHeldKey inserts k (RevokedAt ignored: active) unless the
	// agent already has a row for k.KID, active or revoked: then it writes
	// nothing and reports false (redelivery; kids are never reused, so a
	// revoked key never comes back).
	AddAgentHeldKey(ctx context.Context, k AgentHeldKey) (bool, error)
	// RevokeAgentHeldKey marks the agent's key kid revoked at at and
	// reports true if it was active. An unknown kid is recorded as revoked
	// (zero PublicJWK, CreatedAt = at) so that a generation delivered after
	// its revocation adds nothing; it reports false, as for a key already
	// revoked (nothing changes then).
	RevokeAgentHeldKey(ctx context.Context, agentID, orgID, kid string, at time.Time) (bool, error)
	// AgentHeldKeys returns every agent-held key row of agentID, revoked
	// ones included, ordered by CreatedAt then KID (none: an empty slice).
	AgentHeldKeys(ctx context.Context, agentID string) ([]AgentHeldKey, error)
}

// KeyStore keeps DID private keys (PKCS#8 DER) by reference. The service
// uses internal/secretkeys, an adapter over the secrets port (Vault KV v2
// when configured, else the local sealed store); internal/sealedkeys, the
// legacy table, is only a migration source.
type KeyStore interface {
	// Put stores the private key at ref; storing the same ref twice is
	// not an error.
	Put(ctx context.Context, ref string, privateKey []byte) error
	// Get returns the private key at ref, or an error wrapping ErrNotFound.
	Get(ctx context.Context, ref string) ([]byte, error)
}

// KeyRefPrefix starts every key reference: a reference is the key's path
// in the secrets store, KeyRefPrefix + subject + "/" + kid.
const KeyRefPrefix = "did/keys/"

// LegacyKeyRefPrefix starts the references written before the secrets
// port ("did/<subject>/<kid>", rows of the did_sealed_keys table).
const LegacyKeyRefPrefix = "did/"

// KeyRef is where the private key kid of subject is kept.
func KeyRef(subject, kid string) string {
	return KeyRefPrefix + subject + "/" + kid
}

// MigratedKeyRef maps a legacy reference "did/<subject>/<kid>" to
// KeyRef(subject, kid); any other reference is returned unchanged.
func MigratedKeyRef(ref string) string {
	if strings.HasPrefix(ref, KeyRefPrefix) {
		return ref
	}
	if rest, ok := strings.CutPrefix(ref, LegacyKeyRefPrefix); ok {
		return KeyRefPrefix + rest
	}
	return ref
}

// DIDData is the payload of did.created and did.key_rotated.
type DIDData struct {
	AgentID     string    `json:"agentId"`
	DID         string    `json:"did"`
	KID         string    `json:"kid"`
	PreviousKID string    `json:"previousKid,omitempty"`
	At          time.Time `json:"at"`
}
