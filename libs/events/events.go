// Package events defines the suite's event contract: the envelope every
// service publishes, the event types, their NATS subjects and the JetStream
// stream that captures them. It is the single place where these names live.
//
// The envelope follows CloudEvents 1.0 attribute names (specversion, id,
// type, source, time, subject, datacontenttype, data) and adds org_id, the
// organisation the event belongs to. Within a version (.v1) shapes only gain
// fields; golden files in testdata pin them.
package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// StreamName is the JetStream stream that captures every suite event.
const StreamName = "AGENTIDP"

// SubjectPrefix starts every event subject.
const SubjectPrefix = "agentidp"

// AllSubjects is the subject filter the stream captures.
const AllSubjects = SubjectPrefix + ".>"

// DeadLetterStream holds messages that consumers gave up on.
const DeadLetterStream = "AGENTIDP_DLQ"

// DeadLetterPrefix starts dead-letter subjects: agentidp_dlq.<consumer>.
const DeadLetterPrefix = "agentidp_dlq"

// ReplayStream holds dead-lettered events republished for one consumer by
// `agentidp events replay`. It is separate from StreamName so that only the
// named consumer sees a replay (consumers filtering agentidp.> would
// otherwise receive every other consumer's replays too).
const ReplayStream = "AGENTIDP_REPLAY"

// ReplayPrefix starts replay subjects: agentidp_replay.<consumer>.
const ReplayPrefix = "agentidp_replay"

// Type names an event, e.g. "token.issued".
type Type string

// Event types published by the suite.
const (
	AgentCreated        Type = "agent.created"
	AgentUpdated        Type = "agent.updated"
	AgentSuspended      Type = "agent.suspended"
	AgentReactivated    Type = "agent.reactivated"
	AgentDecommissioned Type = "agent.decommissioned"

	CredentialGenerated Type = "credential.generated"
	CredentialRotated   Type = "credential.rotated"
	CredentialRevoked   Type = "credential.revoked"

	TokenIssued       Type = "token.issued"
	TokenRevoked      Type = "token.revoked"
	TokenIntrospected Type = "token.introspected"
	AuthFailed        Type = "auth.failed"

	DelegationCreated Type = "delegation.created"
	DelegationRevoked Type = "delegation.revoked"

	OrgCreated     Type = "org.created"
	OrgUpdated     Type = "org.updated"
	OrgDeleted     Type = "org.deleted"
	OrgMemberAdded Type = "org.member_added"
	TierChanged    Type = "tier.changed"

	WebhookDeliveryFailed      Type = "webhook.delivery.failed"
	WebhookEndpointDisabled    Type = "webhook.endpoint.disabled"
	BillingSubscriptionUpdated Type = "billing.subscription.updated"

	DIDCreated               Type = "did.created"
	DIDKeyRotated            Type = "did.key_rotated"
	FederationPartnerAdded   Type = "federation.partner.added"
	FederationPartnerUpdated Type = "federation.partner.updated"
	FederationPartnerRemoved Type = "federation.partner.removed"
	FederationTokenExchanged Type = "federation.token.exchanged"
)

// Types lists every known event type.
var Types = []Type{
	AgentCreated, AgentUpdated, AgentSuspended, AgentReactivated, AgentDecommissioned,
	CredentialGenerated, CredentialRotated, CredentialRevoked,
	TokenIssued, TokenRevoked, TokenIntrospected, AuthFailed,
	DelegationCreated, DelegationRevoked,
	OrgCreated, OrgUpdated, OrgDeleted, OrgMemberAdded, TierChanged,
	WebhookDeliveryFailed, WebhookEndpointDisabled, BillingSubscriptionUpdated,
	DIDCreated, DIDKeyRotated,
	FederationPartnerAdded, FederationPartnerUpdated, FederationPartnerRemoved, FederationTokenExchanged,
}

// Subject is the NATS subject the event type is published on:
// agentidp.<domain>.<event>.v1 (dots inside the event name are kept, so
// "webhook.delivery.failed" becomes agentidp.webhook.delivery.failed.v1).
func (t Type) Subject() string {
	return SubjectPrefix + "." + string(t) + ".v1"
}

// Domain is the first part of the type ("token" for "token.issued").
func (t Type) Domain() string {
	d, _, _ := strings.Cut(string(t), ".")
	return d
}

// DomainSubjects is the filter for every event of one domain,
// e.g. "agentidp.agent.>".
func DomainSubjects(domain string) string {
	return SubjectPrefix + "." + domain + ".>"
}

// TypeFromSubject recovers the event type from a subject.
func TypeFromSubject(subject string) (Type, error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", fmt.Errorf("subject %q: not an event subject", subject)
	}
	name, ok := strings.CutSuffix(rest, ".v1")
	if !ok || name == "" {
		return "", fmt.Errorf("subject %q: no version suffix", subject)
	}
	return Type(name), nil
}

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// Envelope is the wire form of every event.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            Type            `json:"type"`
	Source          string          `json:"source"`
	Time            time.Time       `json:"time"`
	OrgID           string          `json:"org_id"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// New builds an envelope with a fresh UUIDv7 id. data is marshalled to JSON;
// it must never carry secrets.
func New(t Type, source, orgID, subject string, data any) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("marshal %s data: %w", t, err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              id.String(),
		Type:            t,
		Source:          source,
		Time:            time.Now().UTC(),
		OrgID:           orgID,
		Subject:         subject,
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Encode returns the JSON wire form.
func (e Envelope) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return b, nil
}

// Decode parses and validates an envelope.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("decode event: %w", err)
	}
	if e.ID == "" || e.Type == "" {
		return Envelope{}, fmt.Errorf("decode event: id and type are required")
	}
	return e, nil
}

// DecodeData unmarshals the envelope's data into v.
func (e Envelope) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s data of event %s: %w", e.Type, e.ID, err)
	}
	return nil
}
