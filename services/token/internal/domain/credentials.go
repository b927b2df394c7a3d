package domain

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/google/uuid"
)

// SecretPrefix marks AgentIdP client secrets (helps secret scanners).
const SecretPrefix = "ais_"

// CreateCredentialInput is the body of POST /agents/{id}/credentials.
type CreateCredentialInput struct {
	ExpiresAt *time.Time `json:"expiresAt"`
}

// NewSecret returns a fresh 256-bit client secret.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func credentialEvent(t events.Type, orgID string, c Credential, at time.Time) (events.Envelope, error) {
	return events.New(t, Source, orgID, c.ClientID, events.CredentialData{
		CredentialID: c.CredentialID, AgentID: c.ClientID, Status: c.Status, ExpiresAt: c.ExpiresAt, At: at,
	})
}

func notFoundCredential() *httpx.Error {
	return httpx.NotFound(CodeCredentialNotFound, "credential not found")
}

// NewCredentialFor builds a credential (and its secret) for agentID.
func NewCredentialFor(pepper []byte, agentID string, expiresAt *time.Time, now time.Time) (NewCredential, error) {
	secret, err := NewSecret()
	if err != nil {
		return NewCredential{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return NewCredential{}, err
	}
	return NewCredential{
		Credential: Credential{CredentialID: id.String(), ClientID: agentID, Status: CredentialActive,
			CreatedAt: now, ExpiresAt: expiresAt, Digest: DigestSecret(pepper, secret)},
		ClientSecret: secret,
	}, nil
}

// CreateCredential issues a new client secret for an agent of the caller's org.
func (s *Service) CreateCredential(ctx context.Context, caller authn.Identity, agentID string, in CreateCredentialInput) (NewCredential, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opCreateCredential)
	if err != nil {
		return NewCredential{}, err
	}
	org := target.OrganizationID
	now := s.now().UTC().Truncate(time.Microsecond)
	var exp *time.Time
	if in.ExpiresAt != nil {
		e := in.ExpiresAt.UTC().Truncate(time.Microsecond)
		if !e.After(now) {
			return NewCredential{}, httpx.Validation("invalid request body", map[string]string{"expiresAt": "must be in the future"})
		}
		exp = &e
	}
	nc, err := NewCredentialFor(s.cfg.Pepper, agentID, exp, now)
	if err != nil {
		return NewCredential{}, httpx.Internal(err)
	}
	ev, err := credentialEvent(events.CredentialGenerated, org, nc.Credential, now)
	if err != nil {
		return NewCredential{}, httpx.Internal(err)
	}
	if err := s.store.CreateCredential(ctx, org, nc.Credential, []events.Envelope{ev}); err != nil {
		return NewCredential{}, s.mapAgentErr(agentID, err, -1)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	return nc, nil
}

// ListCredentials lists an agent's credentials (never their secrets).
func (s *Service) ListCredentials(ctx context.Context, caller authn.Identity, agentID string) ([]Credential, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opReadAgent)
	if err != nil {
		return nil, err
	}
	org := target.OrganizationID
	cs, err := s.store.ListCredentials(ctx, org, agentID)
	if err != nil {
		return nil, s.mapAgentErr(agentID, err, -1)
	}
	if cs == nil {
		cs = []Credential{}
	}
	return cs, nil
}

// RotateCredential replaces a credential's secret. Without a grace period
// (the default) the old secret stops working at once and every token issued
// under the credential so far is revoked (credential watermark). With
// Settings.RotationGrace > 0 the new secret is a new credential and the old
// one expires after the grace period; tokens issued under it stay valid
// until they expire (no watermark), since the point of a grace period is
// that clients switch over without failures.
func (s *Service) RotateCredential(ctx context.Context, caller authn.Identity, agentID, credentialID string) (NewCredential, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opRotateCredential)
	if err != nil {
		return NewCredential{}, err
	}
	org := target.OrganizationID
	if !validAgentID(credentialID) {
		return NewCredential{}, notFoundCredential()
	}
	secret, err := NewSecret()
	if err != nil {
		return NewCredential{}, httpx.Internal(err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var revs []Revocation
	var fresh *NewCredential
	c, err := s.store.UpdateCredential(ctx, org, agentID, credentialID, func(a Agent, c *Credential) (CredentialChange, error) {
		if err := mayManage(caller, a, opRotateCredential); err != nil {
			return CredentialChange{}, err
		}
		if a.Status == StatusDecommissioned {
			return CredentialChange{}, httpx.Conflict(CodeAgentDecommission, "the agent is decommissioned")
		}
		if c.Status != CredentialActive {
			return CredentialChange{}, httpx.Conflict("CREDENTIAL_REVOKED", "a revoked credential cannot be rotated")
		}
		if c.ExpiresAt != nil && !c.ExpiresAt.After(now) {
			return CredentialChange{}, httpx.Conflict("CREDENTIAL_EXPIRED", "an expired credential cannot be rotated")
		}
		if g := s.cfg.RotationGrace; g > 0 {
			nc, err := NewCredentialFor(s.cfg.Pepper, agentID, c.ExpiresAt, now)
			if err != nil {
				return CredentialChange{}, err
			}
			nc.ClientSecret = ""
			nc.Digest = DigestSecret(s.cfg.Pepper, secret)
			fresh = &nc
			end := now.Add(g)
			if c.ExpiresAt == nil || end.Before(*c.ExpiresAt) {
				c.ExpiresAt = &end
			}
			ev, err := credentialEvent(events.CredentialRotated, a.OrganizationID, *c, now)
			if err != nil {
				return CredentialChange{}, err
			}
			gen, err := credentialEvent(events.CredentialGenerated, a.OrganizationID, nc.Credential, now)
			if err != nil {
				return CredentialChange{}, err
			}
			ins := nc.Credential
			return CredentialChange{Events: []events.Envelope{ev, gen}, Insert: &ins}, nil
		}
		c.Digest = DigestSecret(s.cfg.Pepper, secret)
		ev, err := credentialEvent(events.CredentialRotated, a.OrganizationID, *c, now)
		if err != nil {
			return CredentialChange{}, err
		}
		revs = []Revocation{s.watermark(revocation.KindCredential, c.CredentialID, now)}
		return CredentialChange{Events: []events.Envelope{ev}, Revocations: revs}, nil
	})
	if err != nil {
		return NewCredential{}, s.mapCredentialErr(agentID, err)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	s.revocationsCommitted(ctx, revs)
	if fresh != nil {
		return NewCredential{Credential: fresh.Credential, ClientSecret: secret}, nil
	}
	return NewCredential{Credential: c, ClientSecret: secret}, nil
}

// RevokeCredential revokes a credential and every token issued under it;
// revoking twice succeeds.
func (s *Service) RevokeCredential(ctx context.Context, caller authn.Identity, agentID, credentialID string) error {
	target, err := s.authorizeOn(ctx, caller, agentID, opRevokeCredential)
	if err != nil {
		return err
	}
	org := target.OrganizationID
	if !validAgentID(credentialID) {
		return notFoundCredential()
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var revs []Revocation
	_, err = s.store.UpdateCredential(ctx, org, agentID, credentialID, func(a Agent, c *Credential) (CredentialChange, error) {
		if err := mayManage(caller, a, opRevokeCredential); err != nil {
			return CredentialChange{}, err
		}
		if c.Status == CredentialRevoked {
			return CredentialChange{}, nil
		}
		c.Status = CredentialRevoked
		c.RevokedAt = &now
		ev, err := credentialEvent(events.CredentialRevoked, a.OrganizationID, *c, now)
		if err != nil {
			return CredentialChange{}, err
		}
		revs = []Revocation{s.watermark(revocation.KindCredential, c.CredentialID, now)}
		return CredentialChange{Events: []events.Envelope{ev}, Revocations: revs}, nil
	})
	if err != nil {
		return s.mapCredentialErr(agentID, err)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	s.revocationsCommitted(ctx, revs)
	return nil
}

// ErrCredentialNotFound distinguishes a missing credential from a missing
// agent in UpdateCredential.
var ErrCredentialNotFound = fmt.Errorf("credential %w", ErrNotFound)

func (s *Service) mapCredentialErr(agentID string, err error) error {
	if errors.Is(err, ErrCredentialNotFound) {
		return notFoundCredential()
	}
	return s.mapAgentErr(agentID, err, -1)
}
