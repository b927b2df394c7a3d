package domain

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// DID Core contexts of every document.
var documentContext = []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"}

// Document is a DID document (W3C DID Core 1.0, JSON-LD representation).
type Document struct {
	Context            []string             `json:"@context"`
	ID                 string               `json:"id"`
	Controller         string               `json:"controller,omitempty"`
	VerificationMethod []VerificationMethod `json:"verificationMethod"`
	Authentication     []string             `json:"authentication"`
	AssertionMethod    []string             `json:"assertionMethod"`
	Service            []ServiceEndpoint    `json:"service,omitempty"`
}

// VerificationMethod is a JsonWebKey2020 verification method.
type VerificationMethod struct {
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	Controller   string   `json:"controller"`
	PublicKeyJwk jose.JWK `json:"publicKeyJwk"`
}

// ServiceEndpoint is a DID document service entry.
type ServiceEndpoint struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	ServiceEndpoint string `json:"serviceEndpoint"`
}

// Resolution is a W3C DID Resolution result.
type Resolution struct {
	Context               string             `json:"@context"`
	DIDDocument           *Document          `json:"didDocument"`
	DIDResolutionMetadata ResolutionMetadata `json:"didResolutionMetadata"`
	DIDDocumentMetadata   DocumentMetadata   `json:"didDocumentMetadata"`
}

// ResolutionMetadata is the didResolutionMetadata member.
type ResolutionMetadata struct {
	ContentType string `json:"contentType,omitempty"`
	Error       string `json:"error,omitempty"`
}

// DocumentMetadata is the didDocumentMetadata member. AgentStatus is an
// extension that tells a resolver a suspended agent's DID still resolves but
// the agent may not act.
type DocumentMetadata struct {
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Deactivated bool      `json:"deactivated"`
	AgentStatus string    `json:"agentStatus,omitempty"`
	// AgentHeldKeys is an extension naming the verification methods whose
	// private key the agent holds (registered by the agent), as opposed to
	// the IdP-custodial DID keys.
	AgentHeldKeys []string `json:"agentHeldKeys,omitempty"`
}

// Card is an AGNTCY-style agent card.
type Card struct {
	DID              string    `json:"did"`
	Name             string    `json:"name"`
	AgentType        string    `json:"agentType"`
	Capabilities     []string  `json:"capabilities"`
	Owner            string    `json:"owner,omitempty"`
	Version          string    `json:"version,omitempty"`
	DeploymentEnv    string    `json:"deploymentEnv,omitempty"`
	Status           string    `json:"status"`
	IdentityProvider string    `json:"identityProvider"`
	IssuedAt         time.Time `json:"issuedAt"`
}

// WebHost turns a public base URL into the did:web method-specific host,
// percent-encoding the port's colon ("localhost:8080" → "localhost%3A8080").
func WebHost(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return "", errInvalidBase
	}
	return strings.ReplaceAll(strings.ToLower(u.Host), ":", "%3A"), nil
}

// ValidWebHost reports whether h is a did:web host: a DNS name or IP with
// an optional percent-encoded port, nothing else.
func ValidWebHost(h string) bool {
	if h == "" || len(h) > 253+8 {
		return false
	}
	host, port, hasPort := strings.Cut(h, "%3A")
	if hasPort {
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return false
		}
	}
	if host == "" {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// document renders the DID document of did from its keys: active keys are
// listed and referenced from authentication and assertionMethod; retired
// keys younger than retiredTTL are listed only, so signatures made just
// before a rotation still verify. The agent-held keys held (already
// filtered to the active ones) are listed and referenced from
// authentication only: the agent proves possession with them, but
// assertions in the agent's name stay with the IdP-custodial key whose
// lifecycle the IdP controls. A held key whose id is already taken (a kid
// equal to a custodial one) is skipped, so ids stay unique.
func document(did, controller string, keys []Key, held []AgentHeldKey, services []ServiceEndpoint, now time.Time, retiredTTL time.Duration) Document {
	d := Document{
		Context: documentContext, ID: did, Controller: controller,
		VerificationMethod: []VerificationMethod{}, Authentication: []string{}, AssertionMethod: []string{},
		Service: services,
	}
	for _, k := range keys {
		id := did + "#" + k.KID
		switch {
		case k.Status == KeyActive:
			d.Authentication = append(d.Authentication, id)
			d.AssertionMethod = append(d.AssertionMethod, id)
		case k.RetiredAt != nil && now.Before(k.RetiredAt.Add(retiredTTL)):
		default:
			continue
		}
		d.VerificationMethod = append(d.VerificationMethod, VerificationMethod{
			ID: id, Type: "JsonWebKey2020", Controller: did, PublicKeyJwk: k.PublicJWK,
		})
	}
	for _, k := range held {
		id := did + "#" + k.KID
		if slices.ContainsFunc(d.VerificationMethod, func(vm VerificationMethod) bool { return vm.ID == id }) {
			continue
		}
		d.VerificationMethod = append(d.VerificationMethod, VerificationMethod{
			ID: id, Type: "JsonWebKey2020", Controller: did, PublicKeyJwk: k.PublicJWK,
		})
		d.Authentication = append(d.Authentication, id)
	}
	return d
}
