package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
)

// clientKeyPayload is the token service's ClientKeyData: the credential
// fields plus, for an agent-held key only, keyId, alg and the public JWK.
// The JWK stays raw so that private members, which jose.JWK would silently
// drop, can be detected and the event refused.
type clientKeyPayload struct {
	events.CredentialData
	KeyID string          `json:"keyId"`
	Alg   string          `json:"alg"`
	JWK   json.RawMessage `json:"jwk"`
}

// privateJWKMembers carry private or symmetric key material (RFC 7518
// §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2); a JWK with any of them is refused.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// validKID reports whether kid can be a DID URL fragment here: 1 to 128
// characters of [A-Za-z0-9-_.~] (the token service's rule for client kids).
func validKID(kid string) bool {
	if kid == "" || len(kid) > 128 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

// agentHeldJWK validates the JWK of a credential.generated event: an object
// without private members, kid equal to the event's keyId (filled in when
// absent, as is alg), use sig, and usable for verification
// (jose.NewVerificationKey). Errors describe the key, never its material.
func agentHeldJWK(raw json.RawMessage, kid, alg string) (jose.JWK, error) {
	var members map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &members) != nil || members == nil {
		return jose.JWK{}, errors.New("no JWK object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return jose.JWK{}, fmt.Errorf("JWK has private or symmetric member %q", m)
		}
	}
	var j jose.JWK
	if err := json.Unmarshal(raw, &j); err != nil {
		return jose.JWK{}, errors.New("JWK members must be strings")
	}
	switch j.Kid {
	case "":
		j.Kid = kid
	case kid:
	default:
		return jose.JWK{}, errors.New("JWK kid differs from the event's keyId")
	}
	if j.Alg == "" {
		j.Alg = alg
	}
	if j.Use == "" {
		j.Use = "sig"
	}
	if _, err := jose.NewVerificationKey(j); err != nil {
		return jose.JWK{}, err
	}
	return j, nil
}

// handleCredential applies a credential.generated / credential.revoked
// event of an agent-held key (keyId set); client-secret credentials carry
// no keyId and are ignored. Invalid events are logged and skipped (the
// consumer acks them: retrying cannot fix them); only store failures are
// returned, for redelivery.
func (s *Service) handleCredential(ctx context.Context, e events.Envelope) error {
	var p clientKeyPayload
	if err := e.DecodeData(&p); err != nil {
		s.o.Logger.Warn("skipping malformed credential event", "event", e.ID, "type", e.Type)
		return nil
	}
	if p.KeyID == "" {
		return nil // a client secret: not a key the DID document can list
	}
	if !validAgentID(p.AgentID) || (e.Subject != "" && e.Subject != p.AgentID) || e.OrgID == "" || !validKID(p.KeyID) {
		s.o.Logger.Warn("skipping malformed agent-held key event", "event", e.ID, "type", e.Type)
		return nil
	}
	at := p.At
	if at.IsZero() {
		at = e.Time
	}
	at = at.UTC()
	switch e.Type {
	case events.CredentialGenerated:
		jwk, err := agentHeldJWK(p.JWK, p.KeyID, p.Alg)
		if err != nil {
			s.o.Logger.Warn("refusing agent-held key: not listed in the DID document",
				"event", e.ID, "agent", p.AgentID, "kid", p.KeyID, "reason", err.Error())
			return nil
		}
		added, err := s.store.AddAgentHeldKey(ctx, AgentHeldKey{AgentID: p.AgentID, OrgID: e.OrgID, KID: p.KeyID, PublicJWK: jwk, CreatedAt: at})
		if err != nil {
			return fmt.Errorf("add agent-held key %s of %s: %w", p.KeyID, p.AgentID, err)
		}
		if added {
			s.cache.invalidate(p.AgentID)
		}
	case events.CredentialRevoked:
		revoked, err := s.store.RevokeAgentHeldKey(ctx, p.AgentID, e.OrgID, p.KeyID, at)
		if err != nil {
			return fmt.Errorf("revoke agent-held key %s of %s: %w", p.KeyID, p.AgentID, err)
		}
		if revoked {
			s.cache.invalidate(p.AgentID)
		}
	}
	return nil
}

// listedHeldKeys returns the agent-held keys a document lists: the active
// ones with key material (the caller keeps only those announced in the
// agent's organisation).
func listedHeldKeys(held []AgentHeldKey) []AgentHeldKey {
	var out []AgentHeldKey
	for _, k := range held {
		if k.RevokedAt == nil && k.PublicJWK.Kty != "" {
			out = append(out, k)
		}
	}
	return out
}
