package domain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
)

// RevocationMargin is added to the token lifetime when deciding how long a
// revocation must be kept: it covers the gateway's clock-skew leeway on exp
// and replicas' clock differences.
const RevocationMargin = 5 * time.Minute

// TokenRevokedData is the payload of token.revoked. (Proposed for
// libs/events; kept here until the lib has it.)
type TokenRevokedData struct {
	JTI          string    `json:"jti"`
	ClientID     string    `json:"clientId"`
	CredentialID string    `json:"credentialId,omitempty"`
	RevokedBy    string    `json:"revokedBy"`
	ExpiresAt    time.Time `json:"expiresAt"`
	At           time.Time `json:"at"`
}

// TokenIntrospectedData is the payload of token.introspected. JTI and
// ClientID are empty when the token could not be verified.
type TokenIntrospectedData struct {
	JTI            string    `json:"jti,omitempty"`
	ClientID       string    `json:"clientId,omitempty"`
	Active         bool      `json:"active"`
	IntrospectedBy string    `json:"introspectedBy"`
	At             time.Time `json:"at"`
}

// Introspection is the RFC 7662 response. An inactive token is only
// {"active":false}.
type Introspection struct {
	Active         bool          `json:"active"`
	Scope          string        `json:"scope,omitempty"`
	ClientID       string        `json:"client_id,omitempty"`
	Subject        string        `json:"sub,omitempty"`
	ExpiresAt      int64         `json:"exp,omitempty"`
	IssuedAt       int64         `json:"iat,omitempty"`
	Issuer         string        `json:"iss,omitempty"`
	Audience       jose.Audience `json:"aud,omitempty"`
	JTI            string        `json:"jti,omitempty"`
	TokenType      string        `json:"token_type,omitempty"`
	OrganizationID string        `json:"organization_id,omitempty"`
}

// Revocations is the service's revocation set: loaded from the store,
// updated on every local commit and (by the assembly) from NATS KV.
func (s *Service) Revocations() *revocation.Set { return s.revoked }

// MaxRevocationAge is how long a revocation must be kept: the longest token
// lifetime plus RevocationMargin.
func (s *Service) MaxRevocationAge() time.Duration { return s.cfg.TokenTTL + RevocationMargin }

// watermark is a not-before watermark for kind/key at at.
func (s *Service) watermark(kind revocation.Kind, key string, at time.Time) Revocation {
	return Revocation{Kind: kind, Key: key, NotBefore: at.UnixMilli(), ExpiresAt: at.Add(s.MaxRevocationAge()).UTC()}
}

// revocationsCommitted applies committed revocations locally (read your
// writes) and mirrors them to the other replicas and the gateways.
func (s *Service) revocationsCommitted(ctx context.Context, revs []Revocation) {
	if len(revs) == 0 {
		return
	}
	for _, r := range revs {
		s.revoked.Put(r.Kind, r.Key, r.NotBefore)
	}
	if s.mirror != nil {
		s.mirror(context.WithoutCancel(ctx), revs)
	}
}

// refreshStaleRevocations reads the database's revocations into the set
// when its NATS KV feed is stale (Deps.RevocationsStale), and always for a
// gateway's fallback check (always: the gateway asks exactly when NATS is
// in trouble, so the answer must not depend on NATS). Reloads run one at a
// time and at most every revocation.HeartbeatInterval; concurrent callers
// share one, so the answer reflects the database as of at most that long
// ago.
func (s *Service) refreshStaleRevocations(ctx context.Context, fallback bool) error {
	if !fallback && (s.revStale == nil || !s.revStale()) {
		return nil
	}
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	start := s.now()
	if start.Sub(s.reload.at) < revocation.HeartbeatInterval {
		return nil
	}
	rows, err := s.store.ListRevocations(ctx, start)
	if err != nil {
		return fmt.Errorf("reload revocations: %w", err)
	}
	for _, r := range rows {
		s.revoked.Put(r.Kind, r.Key, r.NotBefore)
	}
	s.reload.at = start
	return nil
}

// LoadRevocations prunes expired rows, loads the rest into the set and
// marks it ready; it returns the rows (the assembly reconciles NATS KV
// with them). On error the set keeps what it had.
func (s *Service) LoadRevocations(ctx context.Context) ([]Revocation, error) {
	now := s.now()
	if _, err := s.store.PruneRevocations(ctx, now); err != nil {
		return nil, err
	}
	rows, err := s.store.ListRevocations(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		s.revoked.Put(r.Kind, r.Key, r.NotBefore)
	}
	s.revoked.Prune(now.Add(-s.MaxRevocationAge()).UnixMilli())
	s.revoked.MarkReady()
	return rows, nil
}

// verifyKeys is the key set parsed from a JWKS document.
type verifyKeys struct {
	jwks []byte
	set  *jose.StaticKeySet
}

// verificationKeys returns exactly the keys the service publishes (its
// JWKS), re-parsed whenever the published document changes, so that
// introspection follows signing-key rotation without knowing about it.
func (s *Service) verificationKeys() *jose.StaticKeySet {
	raw := s.JWKS()
	if cur := s.verify.Load(); cur != nil && bytes.Equal(cur.jwks, raw) {
		return cur.set
	}
	var doc jose.JWKS
	if err := json.Unmarshal(raw, &doc); err != nil {
		s.log.Error("parse own JWKS", "err", err)
		return nil
	}
	set, err := jose.NewStaticKeySet(doc)
	if err != nil {
		s.log.Error("own JWKS", "err", err)
		return nil
	}
	s.verify.Store(&verifyKeys{jwks: raw, set: set})
	return set
}

// verifyOwn verifies a token against the service's own published keys,
// issuer, audience and type; ok is false for anything that is not a valid,
// unexpired access token of this issuer.
func (s *Service) verifyOwn(token string, now time.Time) (AccessClaims, bool) {
	var c AccessClaims
	keys := s.verificationKeys()
	if keys == nil || token == "" {
		return c, false
	}
	if cached, ok := s.verified.get(token, keys, now); ok {
		return cached, true
	}
	err := jose.Verify(token, keys, jose.VerifyOptions{Issuer: s.cfg.Issuer, Audience: s.cfg.Audience, Typ: "at+jwt", Now: now}, &c)
	if err != nil || c.Subject == "" || c.OrganizationID == "" || c.ID == "" {
		return AccessClaims{}, false
	}
	if h, err := jose.ParseUnverifiedHeader(token); err == nil {
		s.verified.put(token, h.Kid, c)
	}
	return c, true
}

// tokenOf is what the revocation check needs of a token, including its
// delegation chain (actors, chain ids, parent tokens).
func tokenOf(c AccessClaims) revocation.Token {
	t := revocation.Token{JTI: c.ID, Subject: c.Subject, CredentialID: c.CredentialID, OrgID: c.OrganizationID,
		IssuedAtMs: revocation.IssuedAtMs(c.IssuedAt, c.IssuedAtMs)}
	if c.Act != nil {
		t.Actors = c.Act.actors()
		t.Chains = chainIDs(c)
		for _, p := range c.Parents {
			t.Parents = append(t.Parents, revocation.Token{JTI: p.JTI, Subject: p.Sub, CredentialID: p.CredentialID,
				OrgID: c.OrganizationID, IssuedAtMs: p.IssuedAtMs})
		}
	}
	return t
}

// mayActOnToken reports whether caller may introspect or revoke a token of
// organisation org: its own organisation's, and for the platform operator
// (admin:orgs) every organisation's — whatever it may do to another
// organisation's agents it may do to their tokens. To anyone else a
// foreign token is one this server does not know (RFC 7662 §2.2, RFC 7009
// §2.2), so the answer reveals nothing about it.
func mayActOnToken(caller authn.Identity, org string) bool {
	return org == caller.OrgID || caller.HasScope(ScopeAdminOrgs)
}

// Introspect answers RFC 7662 for a token the caller may act on
// (mayActOnToken). Anything else — garbage, expired, foreign, revoked,
// unknown key — is {"active":false}. Without the revocation state it fails
// with 503 rather than guess.
func (s *Service) Introspect(ctx context.Context, caller authn.Identity, token string) (Introspection, error) {
	if err := httpx.RequireScope(caller, ScopeTokensRead); err != nil {
		return Introspection{}, err
	}
	if !s.revoked.Ready() {
		s.introspect.WithLabelValues("unavailable").Inc()
		return Introspection{}, httpx.Unavailable("revocation state not loaded", errors.New("revocation set not ready"))
	}
	if err := s.refreshStaleRevocations(ctx, caller.Subject == revocation.FallbackCaller); err != nil {
		s.introspect.WithLabelValues("unavailable").Inc()
		return Introspection{}, httpx.Unavailable("revocation state unavailable", err)
	}
	now := s.now()
	c, ok := s.verifyOwn(token, now)
	visible := ok && mayActOnToken(caller, c.OrganizationID)
	active := visible && !s.revoked.Revoked(tokenOf(c))
	if s.pub != nil {
		d := TokenIntrospectedData{Active: active, IntrospectedBy: caller.Subject, At: now.UTC()}
		org := caller.OrgID
		if visible {
			d.JTI, d.ClientID = c.ID, c.ClientID
		}
		if ev, err := events.New(events.TokenIntrospected, Source, org, caller.Subject, d); err == nil {
			s.pub.Publish(ev)
		}
	}
	if !active {
		s.introspect.WithLabelValues("inactive").Inc()
		return Introspection{}, nil
	}
	s.introspect.WithLabelValues("active").Inc()
	return Introspection{Active: true, Scope: c.Scope, ClientID: c.ClientID, Subject: c.Subject, ExpiresAt: c.ExpiresAt,
		IssuedAt: c.IssuedAt, Issuer: c.Issuer, Audience: c.Audience, JTI: c.ID, TokenType: "Bearer",
		OrganizationID: c.OrganizationID}, nil
}

// RevokeToken revokes one access token the caller may act on
// (mayActOnToken; RFC 7009). A token that is not one — garbage, expired,
// foreign, unknown — changes nothing and is not an error, so the answer
// reveals nothing.
func (s *Service) RevokeToken(ctx context.Context, caller authn.Identity, token string) error {
	if err := httpx.RequireScope(caller, ScopeTokensRead); err != nil {
		return err
	}
	now := s.now()
	c, ok := s.verifyOwn(token, now)
	if !ok || !mayActOnToken(caller, c.OrganizationID) || !revocation.ValidKeyPart(c.ID) {
		return nil
	}
	if _, done := s.revoked.Get(revocation.KindJTI, c.ID); done {
		return nil
	}
	exp := time.Unix(c.ExpiresAt, 0).UTC()
	rev := Revocation{Kind: revocation.KindJTI, Key: c.ID, NotBefore: now.UnixMilli(), ExpiresAt: exp.Add(RevocationMargin)}
	ev, err := events.New(events.TokenRevoked, Source, c.OrganizationID, c.Subject, TokenRevokedData{
		JTI: c.ID, ClientID: c.ClientID, CredentialID: c.CredentialID, RevokedBy: caller.Subject, ExpiresAt: exp, At: now.UTC(),
	})
	if err != nil {
		return httpx.Internal(err)
	}
	if err := s.store.AddRevocations(ctx, []Revocation{rev}, []events.Envelope{ev}); err != nil {
		return httpx.Unavailable("could not record the revocation", fmt.Errorf("revoke token: %w", err))
	}
	s.notify()
	s.revocationsCommitted(ctx, []Revocation{rev})
	return nil
}

// RevokeOrg writes the watermark of a deleted organisation: every token of
// the organisation issued at or before at is revoked. Idempotent — every
// replica sees the deletion and writes the same row (at is the deletion
// time from the read model); nothing is written once no token it would
// cover can be alive.
func (s *Service) RevokeOrg(ctx context.Context, orgID string, at time.Time) error {
	if at.IsZero() {
		at = s.now()
	}
	if !revocation.ValidKeyPart(orgID) {
		return fmt.Errorf("revoke org %q: id cannot be a revocation key", orgID)
	}
	rev := s.watermark(revocation.KindOrg, orgID, at)
	if !rev.ExpiresAt.After(s.now()) {
		return nil
	}
	if v, ok := s.revoked.Get(revocation.KindOrg, orgID); ok && v >= rev.NotBefore {
		return nil
	}
	if err := s.store.AddRevocations(ctx, []Revocation{rev}, nil); err != nil {
		return fmt.Errorf("revoke org %s: %w", orgID, err)
	}
	s.revocationsCommitted(ctx, []Revocation{rev})
	return nil
}

// AgentInfo is the response of GET /agent-info.
type AgentInfo struct {
	AgentID        string   `json:"agentId"`
	Email          string   `json:"email"`
	AgentType      string   `json:"agentType"`
	Version        string   `json:"version"`
	Capabilities   []string `json:"capabilities"`
	Owner          string   `json:"owner"`
	DeploymentEnv  string   `json:"deploymentEnv"`
	Status         string   `json:"status"`
	OrganizationID string   `json:"organizationId"`
	Scopes         []string `json:"scopes"`
	DID            *string  `json:"did"`
}

// AgentInfo returns the calling agent's identity, with the scopes granted
// in the presented token (not every scope the agent may request).
func (s *Service) AgentInfo(ctx context.Context, caller authn.Identity) (AgentInfo, error) {
	if len(caller.Scopes) == 0 {
		return AgentInfo{}, httpx.Forbidden("the token grants no scope")
	}
	if !validAgentID(caller.Subject) {
		return AgentInfo{}, notFoundAgent()
	}
	a, err := s.store.GetAgent(ctx, caller.OrgID, caller.Subject)
	if errors.Is(err, ErrNotFound) {
		return AgentInfo{}, notFoundAgent()
	}
	if err != nil {
		return AgentInfo{}, httpx.Internal(fmt.Errorf("agent info %s: %w", caller.Subject, err))
	}
	scopes := append([]string{}, caller.Scopes...)
	return AgentInfo{AgentID: a.AgentID, Email: a.Email, AgentType: a.AgentType, Version: a.Version,
		Capabilities: a.Capabilities, Owner: a.Owner, DeploymentEnv: a.DeploymentEnv, Status: a.Status,
		OrganizationID: a.OrganizationID, Scopes: scopes, DID: a.DID}, nil
}

// orgDeleted reports whether an org read-model entry is a deletion.
func orgDeleted(status string) bool { return strings.EqualFold(status, "deleted") }
