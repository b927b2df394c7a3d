package domain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/google/uuid"
)

// Scopes the API checks.
const (
	ScopeAdminOrgs  = "admin:orgs"
	ScopeAgentsRead = "agents:read"
)

// Limits on partner fields.
const (
	maxURL         = 2048
	maxAllowedOrgs = 1000
	maxAgentMap    = 10000
	maxClaimValue  = 256
)

var claimNameRe = regexp.MustCompile(`^[A-Za-z0-9_:.\-]{1,64}$`)

// Options configure the Service.
type Options struct {
	Audience      string         // default audience of partner tokens
	AllowInsecure bool           // accept http issuers and JWKS URIs (development)
	Allow         []netip.Prefix // private ranges partner URLs may use
	Algs          []jose.Alg     // accepted token algorithms
	Leeway        time.Duration  // clock skew tolerated on exp/nbf/iat
	Logger        *slog.Logger
	Notify        func()
	Now           func() time.Time
}

// Service manages partners and verifies their tokens.
type Service struct {
	store Store
	keys  KeySets
	o     Options
}

// NewService returns the service; zero options take defaults.
func NewService(store Store, keys KeySets, o Options) *Service {
	if len(o.Algs) == 0 {
		o.Algs = []jose.Alg{jose.RS256, jose.ES256, jose.EdDSA}
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: store, keys: keys, o: o}
}

// Now is the service's clock (Options.Now).
func (s *Service) Now() time.Time { return s.o.Now() }

func notFound() *httpx.Error {
	return httpx.NotFound(CodePartnerNotFound, "federation partner not found")
}

func admin(caller authn.Identity) error { return httpx.RequireScope(caller, ScopeAdminOrgs) }

// RegisterInput is the body of POST /federation/trust.
type RegisterInput struct {
	Name                 string
	Issuer               string
	JWKSURI              string
	AllowedOrganizations []string
	ExpiresAt            *string
	Audience             *string
	ClaimMapping         *ClaimMapping
}

type fieldErrors map[string]string

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return httpx.Validation("invalid federation partner", map[string]any(toAny(f)))
}

func toAny(f fieldErrors) map[string]any {
	out := make(map[string]any, len(f))
	for k, v := range f {
		out[k] = v
	}
	return out
}

func (s *Service) checkName(f fieldErrors, name string) string {
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 2 || n > 100 || !utf8.ValidString(name) {
		f["name"] = "must be 2 to 100 characters"
	}
	return name
}

// checkIssuer holds the issuer to the outbound URL rules as well as the
// JWKS URI: it is only compared with tokens' iss today, but it is the URL
// an OpenID discovery fetch would start from, so it must not name an
// address the dialer refuses.
func (s *Service) checkIssuer(ctx context.Context, f fieldErrors, issuer string) {
	u, err := url.Parse(issuer)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "" || len(issuer) > maxURL:
		f["issuer"] = "must be an absolute https URL"
	case u.Scheme != "https" && !(u.Scheme == "http" && s.o.AllowInsecure):
		f["issuer"] = "must use https"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		f["issuer"] = "must not contain credentials, a query or a fragment"
	default:
		if err := s.checkURL(ctx, issuer); err != nil {
			f["issuer"] = err.Error()
		}
	}
}

func (s *Service) checkJWKSURI(ctx context.Context, f fieldErrors, uri string) {
	if err := s.checkURL(ctx, uri); err != nil {
		f["jwksUri"] = err.Error()
	}
}

// checkURL applies the JWKS client's dialer rules and allow-list at
// registration (safehttp.CheckURL), so a URL in disguise is refused before
// anything is fetched or stored.
func (s *Service) checkURL(ctx context.Context, raw string) error {
	return safehttp.CheckURL(ctx, raw, safehttp.CheckOptions{Allow: s.o.Allow, RequireHTTPS: !s.o.AllowInsecure})
}

// loadKeys fetches a partner's JWK set at registration. The caller sees why
// it failed in words that name no address (a transport error carries our
// resolver's address and the partner host's resolved addresses); the full
// error goes to the log.
func (s *Service) loadKeys(ctx context.Context, partnerID, uri string) error {
	err := s.keys.Load(ctx, partnerID, uri)
	if err == nil {
		return nil
	}
	s.o.Logger.Warn("fetch partner JWKS", "partner", partnerID, "err", err)
	msg := err.Error()
	if phrase, ok := safehttp.Describe(err); ok {
		msg = phrase
	}
	return httpx.Validation("jwksUri: could not fetch a usable JWK set: "+msg, nil)
}

func checkOrgs(f fieldErrors, orgs []string) []string {
	if len(orgs) > maxAllowedOrgs {
		f["allowedOrganizations"] = fmt.Sprintf("at most %d organisations", maxAllowedOrgs)
		return nil
	}
	out := []string{}
	for _, o := range orgs {
		if u, err := uuid.Parse(o); err != nil || len(o) != 36 {
			f["allowedOrganizations"] = "every entry must be an organisation id (UUID)"
			return nil
		} else if !slices.Contains(out, u.String()) {
			out = append(out, u.String())
		}
	}
	slices.Sort(out)
	return out
}

func (s *Service) checkExpiry(f fieldErrors, raw string) *time.Time {
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		f["expiresAt"] = "must be an RFC 3339 date-time"
		return nil
	}
	if !t.After(s.o.Now()) {
		f["expiresAt"] = "must be in the future"
		return nil
	}
	t = t.UTC().Truncate(time.Microsecond)
	return &t
}

func checkAudience(f fieldErrors, aud string) {
	if aud == "" || len(aud) > maxURL || !utf8.ValidString(aud) {
		f["audience"] = "must be a non-empty string of at most 2048 bytes"
	}
}

func checkMapping(f fieldErrors, m *ClaimMapping) ClaimMapping {
	out := ClaimMapping{SubjectClaim: "sub", AgentMap: map[string]string{}}
	if m == nil {
		return out
	}
	if m.SubjectClaim != "" {
		if !claimNameRe.MatchString(m.SubjectClaim) {
			f["claimMapping.subjectClaim"] = "must be a claim name of 1 to 64 letters, digits, _ : . -"
		}
		out.SubjectClaim = m.SubjectClaim
	}
	if len(m.AgentMap) > maxAgentMap {
		f["claimMapping.agentMap"] = fmt.Sprintf("at most %d entries", maxAgentMap)
		return out
	}
	for k, v := range m.AgentMap {
		if k == "" || len(k) > maxClaimValue || !utf8.ValidString(k) {
			f["claimMapping.agentMap"] = "claim values must be 1 to 256 bytes"
			continue
		}
		if _, err := uuid.Parse(v); err != nil || len(v) != 36 {
			f["claimMapping.agentMap"] = "every value must be a local agent id (UUID)"
			continue
		}
		out.AgentMap[k] = strings.ToLower(v)
	}
	return out
}

func partnerEvent(t events.Type, p Partner, now time.Time) (events.Envelope, error) {
	return events.New(t, Source, "", p.ID, PartnerData{PartnerID: p.ID, Name: p.Name, Issuer: p.Issuer, Status: p.EffectiveStatus(now), At: now})
}

// Register adds a trusted partner after fetching its JWKS: a set without a
// usable signing key is a 400, and nothing is stored.
func (s *Service) Register(ctx context.Context, caller authn.Identity, in RegisterInput) (Partner, error) {
	if err := admin(caller); err != nil {
		return Partner{}, err
	}
	f := fieldErrors{}
	now := s.o.Now().UTC().Truncate(time.Microsecond)
	p := Partner{ID: uuid.NewString(), Name: s.checkName(f, in.Name), Issuer: in.Issuer, JWKSURI: in.JWKSURI,
		Audience: s.o.Audience, Status: StatusActive, CreatedAt: now, UpdatedAt: now}
	s.checkIssuer(ctx, f, in.Issuer)
	s.checkJWKSURI(ctx, f, in.JWKSURI)
	p.AllowedOrganizations = checkOrgs(f, in.AllowedOrganizations)
	if in.ExpiresAt != nil {
		p.ExpiresAt = s.checkExpiry(f, *in.ExpiresAt)
	}
	if in.Audience != nil {
		p.Audience = *in.Audience
	}
	checkAudience(f, p.Audience)
	p.ClaimMapping = checkMapping(f, in.ClaimMapping)
	if err := f.err(); err != nil {
		return Partner{}, err
	}
	if _, err := s.store.GetByIssuer(ctx, p.Issuer); err == nil {
		return Partner{}, httpx.Conflict(CodePartnerExists, "a partner with this issuer is already registered")
	}
	if err := s.loadKeys(ctx, p.ID, p.JWKSURI); err != nil {
		return Partner{}, err
	}
	ev, err := partnerEvent(events.FederationPartnerAdded, p, now)
	if err != nil {
		return Partner{}, httpx.Internal(err)
	}
	if err := s.store.Create(ctx, p, []events.Envelope{ev}); err != nil {
		s.keys.Forget(p.ID)
		if errors.Is(err, ErrIssuerTaken) {
			return Partner{}, httpx.Conflict(CodePartnerExists, "a partner with this issuer is already registered")
		}
		return Partner{}, httpx.Unavailable("partner store unavailable", err)
	}
	s.o.Notify()
	return p, nil
}

// List returns a page of partners.
func (s *Service) List(ctx context.Context, caller authn.Identity, offset, limit int) ([]Partner, int64, error) {
	if err := admin(caller); err != nil {
		return nil, 0, err
	}
	list, total, err := s.store.List(ctx, offset, limit)
	if err != nil {
		return nil, 0, httpx.Unavailable("partner store unavailable", err)
	}
	return list, total, nil
}

func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// Get returns one partner.
func (s *Service) Get(ctx context.Context, caller authn.Identity, id string) (Partner, error) {
	if err := admin(caller); err != nil {
		return Partner{}, err
	}
	if !validID(id) {
		return Partner{}, notFound()
	}
	p, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Partner{}, notFound()
	}
	if err != nil {
		return Partner{}, httpx.Unavailable("partner store unavailable", err)
	}
	return p, nil
}

// UpdateInput is the body of PATCH /federation/partners/{id}. ExpiresAt
// set to JSON null clears the expiry.
type UpdateInput struct {
	Name                 *string
	Status               *string
	AllowedOrganizations *[]string
	ExpiresAt            json.RawMessage
	JWKSURI              *string
	Audience             *string
	ClaimMapping         *ClaimMapping
}

// Update changes a partner; a new JWKS URI is fetched and validated first.
func (s *Service) Update(ctx context.Context, caller authn.Identity, id string, in UpdateInput) (Partner, error) {
	if err := admin(caller); err != nil {
		return Partner{}, err
	}
	if !validID(id) {
		return Partner{}, notFound()
	}
	f := fieldErrors{}
	var name string
	if in.Name != nil {
		name = s.checkName(f, *in.Name)
	}
	if in.Status != nil && *in.Status != StatusActive && *in.Status != StatusSuspended {
		f["status"] = "must be active or suspended"
	}
	var orgs []string
	if in.AllowedOrganizations != nil {
		orgs = checkOrgs(f, *in.AllowedOrganizations)
	}
	var expires *time.Time
	clearExpiry := false
	if len(in.ExpiresAt) > 0 {
		if string(in.ExpiresAt) == "null" {
			clearExpiry = true
		} else {
			var raw string
			if json.Unmarshal(in.ExpiresAt, &raw) != nil {
				f["expiresAt"] = "must be an RFC 3339 date-time or null"
			} else {
				expires = s.checkExpiry(f, raw)
			}
		}
	}
	if in.JWKSURI != nil {
		s.checkJWKSURI(ctx, f, *in.JWKSURI)
	}
	if in.Audience != nil {
		checkAudience(f, *in.Audience)
	}
	var mapping ClaimMapping
	if in.ClaimMapping != nil {
		mapping = checkMapping(f, in.ClaimMapping)
	}
	if err := f.err(); err != nil {
		return Partner{}, err
	}
	cur, err := s.Get(ctx, caller, id)
	if err != nil {
		return Partner{}, err
	}
	uriChanged := in.JWKSURI != nil && *in.JWKSURI != cur.JWKSURI
	if uriChanged {
		if err := s.loadKeys(ctx, id, *in.JWKSURI); err != nil {
			return Partner{}, err
		}
	}
	now := s.o.Now().UTC().Truncate(time.Microsecond)
	p, err := s.store.Update(ctx, id, func(p *Partner) ([]events.Envelope, error) {
		if in.Name != nil {
			p.Name = name
		}
		if in.Status != nil {
			p.Status = *in.Status
		}
		if in.AllowedOrganizations != nil {
			p.AllowedOrganizations = orgs
		}
		if clearExpiry {
			p.ExpiresAt = nil
		} else if expires != nil {
			p.ExpiresAt = expires
		}
		if in.JWKSURI != nil {
			p.JWKSURI = *in.JWKSURI
		}
		if in.Audience != nil {
			p.Audience = *in.Audience
		}
		if in.ClaimMapping != nil {
			p.ClaimMapping = mapping
		}
		p.UpdatedAt = now
		ev, err := partnerEvent(events.FederationPartnerUpdated, *p, now)
		return []events.Envelope{ev}, err
	})
	if errors.Is(err, ErrNotFound) {
		return Partner{}, notFound()
	}
	if err != nil {
		return Partner{}, httpx.Unavailable("partner store unavailable", err)
	}
	s.o.Notify()
	return p, nil
}

// Delete removes a partner; its tokens stop verifying at once.
func (s *Service) Delete(ctx context.Context, caller authn.Identity, id string) error {
	p, err := s.Get(ctx, caller, id)
	if err != nil {
		return err
	}
	now := s.o.Now().UTC()
	ev, err := partnerEvent(events.FederationPartnerRemoved, p, now)
	if err != nil {
		return httpx.Internal(err)
	}
	err = s.store.Delete(ctx, id, []events.Envelope{ev})
	if errors.Is(err, ErrNotFound) {
		return notFound()
	}
	if err != nil {
		return httpx.Unavailable("partner store unavailable", err)
	}
	s.keys.Forget(id)
	s.o.Notify()
	return nil
}

// VerifyResult is the answer of POST /federation/verify.
type VerifyResult struct {
	Valid     bool           `json:"valid"`
	Issuer    string         `json:"issuer,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
	PartnerID string         `json:"partnerId,omitempty"`
	AgentID   string         `json:"agentId,omitempty"`
	Reason    string         `json:"reason,omitempty"`
}

func invalid(reason string) VerifyResult { return VerifyResult{Valid: false, Reason: reason} }

// unverifiedIssuer reads iss from the payload without trusting it; it only
// selects the partner whose keys and issuer the token is then checked
// against.
func unverifiedIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Iss == "" {
		return "", false
	}
	return c.Iss, true
}

func reason(err error) string {
	switch {
	case errors.Is(err, jose.ErrAlgorithm):
		return "algorithm not allowed"
	case errors.Is(err, jose.ErrUnknownKey):
		return "unknown signing key"
	case errors.Is(err, jose.ErrSignature):
		return "invalid signature"
	case errors.Is(err, jose.ErrExpired):
		return "token expired"
	case errors.Is(err, jose.ErrMissingExp):
		return "token has no exp"
	case errors.Is(err, jose.ErrNotYetValid):
		return "token not yet valid"
	case errors.Is(err, jose.ErrIssuer):
		return "issuer mismatch"
	case errors.Is(err, jose.ErrAudience):
		return "audience mismatch"
	}
	return "malformed token"
}

// verifyToken checks a partner token. The error is only for infrastructure
// failures; a bad token is a result with Valid false.
func (s *Service) verifyToken(ctx context.Context, token string) (VerifyResult, Partner, error) {
	if token == "" || len(token) > jose.DefaultMaxTokenSize {
		return invalid("malformed token"), Partner{}, nil
	}
	hdr, err := jose.ParseUnverifiedHeader(token)
	if err != nil {
		return invalid(reason(err)), Partner{}, nil
	}
	if !slices.Contains(s.o.Algs, hdr.Alg) {
		return invalid("algorithm not allowed"), Partner{}, nil
	}
	iss, ok := unverifiedIssuer(token)
	if !ok {
		return invalid("malformed token"), Partner{}, nil
	}
	p, err := s.store.GetByIssuer(ctx, iss)
	if errors.Is(err, ErrNotFound) {
		return invalid("unknown issuer"), Partner{}, nil
	}
	if err != nil {
		return VerifyResult{}, Partner{}, httpx.Unavailable("partner store unavailable", err)
	}
	switch p.EffectiveStatus(s.o.Now()) {
	case StatusSuspended:
		return invalid("partner suspended"), p, nil
	case StatusExpired:
		return invalid("partner trust expired"), p, nil
	}
	claims := map[string]any{}
	err = jose.Verify(token, s.keys.KeySet(ctx, p.ID, p.JWKSURI), jose.VerifyOptions{
		Issuer: p.Issuer, Audience: p.Audience, Leeway: s.o.Leeway, Now: s.o.Now(),
	}, &claims)
	if err != nil {
		return invalid(reason(err)), p, nil
	}
	r := VerifyResult{Valid: true, Issuer: p.Issuer, Claims: claims, PartnerID: p.ID}
	if sub, ok := claims[p.ClaimMapping.SubjectClaim].(string); ok {
		r.AgentID = p.ClaimMapping.AgentMap[sub]
	}
	return r, p, nil
}

// Verify checks a partner token for a caller holding agents:read. When the
// partner restricts organisations, the caller's organisation must be one of
// them (the relying party is the caller).
func (s *Service) Verify(ctx context.Context, caller authn.Identity, token string) (VerifyResult, error) {
	if err := httpx.RequireScope(caller, ScopeAgentsRead, ScopeAdminOrgs); err != nil {
		return VerifyResult{}, err
	}
	r, p, err := s.verifyToken(ctx, token)
	if err != nil || !r.Valid {
		return r, err
	}
	if len(p.AllowedOrganizations) > 0 && !slices.Contains(p.AllowedOrganizations, caller.OrgID) && !caller.HasScope(ScopeAdminOrgs) {
		return invalid("organization not allowed for this partner"), nil
	}
	return r, nil
}

// Exchange is the result of an exchange check: the local agent a valid
// partner token maps to.
type Exchange struct {
	Valid          bool           `json:"valid"`
	Reason         string         `json:"reason,omitempty"`
	PartnerID      string         `json:"partnerId,omitempty"`
	Issuer         string         `json:"issuer,omitempty"`
	Subject        string         `json:"subject,omitempty"`
	AgentID        string         `json:"agentId,omitempty"`
	OrganizationID string         `json:"organizationId,omitempty"`
	ExpiresAt      int64          `json:"expiresAt,omitempty"`
	Claims         map[string]any `json:"claims,omitempty"`
}

// ExchangeCheck verifies a partner token and maps it to a local agent: the
// subject claim must be in the partner's agent map, the agent must be known
// and active, and belong to an allowed organisation when the partner
// restricts them. The token service mints the local token from the result.
func (s *Service) ExchangeCheck(ctx context.Context, token string) (Exchange, error) {
	r, p, err := s.verifyToken(ctx, token)
	if err != nil {
		return Exchange{}, err
	}
	if !r.Valid {
		return Exchange{Reason: r.Reason}, nil
	}
	sub, _ := r.Claims[p.ClaimMapping.SubjectClaim].(string)
	agentID := p.ClaimMapping.AgentMap[sub]
	if sub == "" || agentID == "" {
		return Exchange{Reason: "subject not mapped to a local agent"}, nil
	}
	a, err := s.store.GetAgent(ctx, agentID)
	if errors.Is(err, ErrNotFound) {
		return Exchange{Reason: "mapped agent unknown"}, nil
	}
	if err != nil {
		return Exchange{}, httpx.Unavailable("agent store unavailable", err)
	}
	if a.Status != "active" {
		return Exchange{Reason: "mapped agent is " + a.Status}, nil
	}
	if len(p.AllowedOrganizations) > 0 && !slices.Contains(p.AllowedOrganizations, a.OrgID) {
		return Exchange{Reason: "mapped agent's organization not allowed for this partner"}, nil
	}
	exp, _ := r.Claims["exp"].(float64)
	return Exchange{Valid: true, PartnerID: p.ID, Issuer: p.Issuer, Subject: sub, AgentID: a.AgentID,
		OrganizationID: a.OrgID, ExpiresAt: int64(exp), Claims: r.Claims}, nil
}

// HandleAgentEvent keeps the agent read model current; idempotent.
func (s *Service) HandleAgentEvent(ctx context.Context, e events.Envelope) error {
	if e.Type.Domain() != "agent" {
		return nil
	}
	var d events.AgentData
	if err := e.DecodeData(&d); err != nil || !validID(d.AgentID) || d.OrganizationID == "" {
		s.o.Logger.Warn("skipping malformed agent event", "event", e.ID, "type", e.Type)
		return nil
	}
	status := d.Status
	if e.Type == events.AgentDecommissioned {
		status = "decommissioned"
	}
	if status == "" {
		status = "active"
	}
	at := d.At
	if at.IsZero() {
		at = e.Time
	}
	return s.store.ApplyAgent(ctx, AgentRef{AgentID: strings.ToLower(d.AgentID), OrgID: d.OrganizationID, Status: status, UpdatedAt: at.UTC()})
}
