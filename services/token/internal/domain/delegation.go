package domain

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/google/uuid"
)

// Delegation error codes (seed names).
const (
	CodeInvalidScopes = "INVALID_SCOPES"
	CodeInvalidTTL    = "INVALID_TTL"
	CodeChainNotFound = "DELEGATION_NOT_FOUND"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
)

// Delegation lifetime bounds of POST /delegate (seconds).
const (
	MinDelegationTTL     = 60
	MaxDelegationTTL     = 86400
	DefaultDelegationTTL = 3600
)

// DefaultMaxDelegationDepth is the default of TOKEN_DELEGATION_MAX_DEPTH.
const DefaultMaxDelegationDepth = 3

// ActorClaim is an RFC 8693 §4.1 act claim. In AgentIdP's delegated tokens
// sub is the agent holding the token (the delegatee) and act names the
// agent it acts for (the delegator), nesting earlier delegators.
type ActorClaim struct {
	Sub string      `json:"sub"`
	Act *ActorClaim `json:"act,omitempty"`
}

// ParentClaim describes a token a delegated token was derived from, so
// that any verifier can tell offline that revoking the parent (its jti, its
// credential, its subject) revokes the derived token (libs/revocation
// Token.Parents).
type ParentClaim struct {
	JTI          string `json:"jti"`
	Sub          string `json:"sub,omitempty"`
	CredentialID string `json:"credential_id,omitempty"`
	IssuedAtMs   int64  `json:"iat_ms,omitempty"`
}

// actors flattens act, the immediate delegator first.
func (a *ActorClaim) actors() []string {
	var out []string
	for x := a; x != nil && len(out) < 16; x = x.Act {
		out = append(out, x.Sub)
	}
	return out
}

// nestActors builds the act claim for actors (immediate delegator first).
func nestActors(actors []string) *ActorClaim {
	var act *ActorClaim
	for i := len(actors) - 1; i >= 0; i-- {
		act = &ActorClaim{Sub: actors[i], Act: act}
	}
	return act
}

// chainOf is the delegation chain of a token: the outermost delegator
// first, the token's subject last.
func chainOf(c AccessClaims) []string {
	actors := c.Act.actors()
	chain := make([]string, 0, len(actors)+1)
	for i := len(actors) - 1; i >= 0; i-- {
		chain = append(chain, actors[i])
	}
	return append(chain, c.Subject)
}

// chainIDs are every chain id a token names (its own last).
func chainIDs(c AccessClaims) []string {
	if c.ChainID != "" && !slices.Contains(c.ChainIDs, c.ChainID) {
		return append(slices.Clip(c.ChainIDs), c.ChainID)
	}
	return c.ChainIDs
}

// Delegation is a row of delegation_chains: one delegation created through
// POST /delegate.
type Delegation struct {
	ChainID          string     `json:"chainId"`
	OrganizationID   string     `json:"organizationId"`
	DelegatorAgentID string     `json:"delegatorAgentId"`
	DelegateeAgentID string     `json:"delegateeAgentId"`
	Scopes           []string   `json:"scopes"`
	ParentChainID    *string    `json:"parentChainId"`
	Depth            int        `json:"depth"`
	ExpiresAt        time.Time  `json:"expiresAt"`
	RevokedAt        *time.Time `json:"revokedAt"`
	CreatedAt        time.Time  `json:"createdAt"`
	// Status is derived: active, revoked or expired.
	Status string `json:"status"`
}

// DelegationStore is the persistence of delegation chains (part of Store).
type DelegationStore interface {
	// CreateDelegation inserts d with its events (outbox) in one transaction.
	CreateDelegation(ctx context.Context, d Delegation, evs []events.Envelope) error
	// GetDelegation returns the org's chain or ErrNotFound.
	GetDelegation(ctx context.Context, orgID, chainID string) (Delegation, error)
	// RevokeDelegation sets revoked_at on the org's chain if it is not
	// revoked yet, recording revs and evs in the same transaction. It
	// reports false (and writes nothing) when the chain was already
	// revoked; ErrNotFound when it does not exist.
	RevokeDelegation(ctx context.Context, orgID, chainID string, at time.Time, revs []Revocation, evs []events.Envelope) (bool, error)
	// ListDelegations returns one page of the org's chains whose delegator
	// (or, with asDelegatee, delegatee) is agentID, in (createdAt, chainId)
	// order, and the total number of matches.
	ListDelegations(ctx context.Context, orgID, agentID string, asDelegatee bool, offset, limit int) ([]Delegation, int64, error)
}

// DelegationInput is what the delegation policy decides on (policies/
// delegation.rego documents it).
type DelegationInput struct {
	Subject         PolicySubject `json:"subject"`
	Actor           PolicyActor   `json:"actor"`
	Chain           []string      `json:"chain"`
	Scopes          []string      `json:"scopes"`
	RequestedScopes []string      `json:"requested_scopes"`
	Audience        []string      `json:"audience"`
	Depth           int           `json:"depth"`
	MaxDepth        int           `json:"max_depth"`
}

// PolicySubject is the exchanged token as the policy sees it.
type PolicySubject struct {
	Sub            string   `json:"sub"`
	OrganizationID string   `json:"organization_id"`
	Scopes         []string `json:"scopes"`
	ChainIDs       []string `json:"chain_ids"`
}

// PolicyActor is the acting agent as the policy sees it.
type PolicyActor struct {
	Sub            string `json:"sub"`
	OrganizationID string `json:"organization_id"`
}

// PolicyDecision is the policy's answer.
type PolicyDecision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason"`
}

// DelegationPolicy decides token exchanges (the OPA adapter implements it).
type DelegationPolicy interface {
	Decide(ctx context.Context, in DelegationInput) (PolicyDecision, error)
}

// DelegationData is the payload of delegation.created: the decision and
// the whole chain, for the audit log.
type DelegationData struct {
	ChainID          string    `json:"chainId"`
	ParentChainIDs   []string  `json:"parentChainIds,omitempty"`
	DelegatorAgentID string    `json:"delegatorAgentId"`
	DelegateeAgentID string    `json:"delegateeAgentId"`
	Chain            []string  `json:"chain"`
	Scopes           []string  `json:"scopes"`
	Audience         []string  `json:"audience,omitempty"`
	Depth            int       `json:"depth"`
	Via              string    `json:"via"` // delegate | token_exchange
	Decision         string    `json:"decision"`
	Reason           string    `json:"reason"`
	JTI              string    `json:"jti"`
	ExpiresAt        time.Time `json:"expiresAt"`
	At               time.Time `json:"at"`
}

// DelegationRevokedData is the payload of delegation.revoked.
type DelegationRevokedData struct {
	ChainID          string    `json:"chainId"`
	DelegatorAgentID string    `json:"delegatorAgentId"`
	DelegateeAgentID string    `json:"delegateeAgentId"`
	RevokedBy        string    `json:"revokedBy"`
	At               time.Time `json:"at"`
}

// DelegateInput is the body of POST /delegate: the seed's fields and the
// seed diagram's (delegatee_id, space-separated scope).
type DelegateInput struct {
	DelegateeAgentID string   `json:"delegateeAgentId"`
	Scopes           []string `json:"scopes"`
	TTLSeconds       *int     `json:"ttlSeconds"`
	DelegateeID      string   `json:"delegatee_id"`
	Scope            *string  `json:"scope"`
}

// DelegateResult is the 201 body of POST /delegate.
type DelegateResult struct {
	DelegationToken  string    `json:"delegationToken"`
	ChainID          string    `json:"chainId"`
	DelegatorAgentID string    `json:"delegatorAgentId"`
	DelegateeAgentID string    `json:"delegateeAgentId"`
	Scopes           []string  `json:"scopes"`
	ExpiresAt        time.Time `json:"expiresAt"`
}

// VerifyResult is the body of POST /verify-delegation.
type VerifyResult struct {
	Valid            bool       `json:"valid"`
	Reason           string     `json:"reason,omitempty"`
	DelegatorAgentID string     `json:"delegatorAgentId,omitempty"`
	DelegateeAgentID string     `json:"delegateeAgentId,omitempty"`
	Scopes           []string   `json:"scopes,omitempty"`
	Chain            []string   `json:"chain,omitempty"`
	ChainID          string     `json:"chainId,omitempty"`
	ExpiresAt        *time.Time `json:"expiresAt,omitempty"`
}

// DelegationPage is a page of GET /delegations.
type DelegationPage struct {
	Data []Delegation `json:"data"`
	httpx.Pagination
}

// ExchangeResponse is RFC 8693 §2.2.1.
type ExchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = uuid.UUID(b)
	}
	return id.String()
}

func fieldError(code, msg string) *httpx.Error {
	return &httpx.Error{Status: http.StatusBadRequest, Code: code, Message: msg}
}

// Delegate creates a delegation from the caller to another agent of its
// organisation and returns a delegation token for the delegatee.
//
// The caller delegates the authority of the token it presents: the scopes
// must be a subset of the token's, and the delegation never outlives it. A
// caller that is itself acting under a delegation re-delegates through
// token exchange instead (the internal context does not carry the chain
// ids the new token would have to name).
func (s *Service) Delegate(ctx context.Context, caller authn.Identity, in DelegateInput) (DelegateResult, error) {
	if len(caller.Scopes) == 0 {
		return DelegateResult{}, httpx.Forbidden("the token grants no scope")
	}
	if len(caller.Actors) > 0 {
		return DelegateResult{}, httpx.Forbidden("a delegated token cannot create delegations; use token exchange")
	}
	delegatee := in.DelegateeAgentID
	if in.DelegateeID != "" {
		if delegatee != "" && delegatee != in.DelegateeID {
			return DelegateResult{}, httpx.Validation("delegateeAgentId and delegatee_id disagree", nil)
		}
		delegatee = in.DelegateeID
	}
	if delegatee == "" {
		return DelegateResult{}, httpx.Validation("delegateeAgentId is required", map[string]string{"delegateeAgentId": "required"})
	}
	scopes := in.Scopes
	if in.Scope != nil {
		if in.Scopes != nil {
			return DelegateResult{}, httpx.Validation("give scopes or scope, not both", nil)
		}
		scopes = strings.Fields(*in.Scope)
	}
	if len(scopes) == 0 || len(scopes) > len(KnownScopes) {
		return DelegateResult{}, fieldError(CodeInvalidScopes, "scopes must list 1 to 8 scopes")
	}
	for _, sc := range scopes {
		if !slices.Contains(KnownScopes, sc) {
			return DelegateResult{}, fieldError(CodeInvalidScopes, fmt.Sprintf("unknown scope %q", truncate(sc, 64)))
		}
		if !caller.HasScope(sc) {
			return DelegateResult{}, fieldError(CodeInvalidScopes, fmt.Sprintf("cannot delegate scope %q the token does not grant", sc))
		}
		if sc == ScopeAdminOrgs {
			return DelegateResult{}, fieldError(CodeInvalidScopes, "admin:orgs cannot be delegated")
		}
	}
	scopes = dedupe(scopes)
	ttl := DefaultDelegationTTL
	if in.TTLSeconds != nil {
		ttl = *in.TTLSeconds
	}
	if ttl < MinDelegationTTL || ttl > MaxDelegationTTL {
		return DelegateResult{}, fieldError(CodeInvalidTTL, fmt.Sprintf("ttlSeconds must be between %d and %d", MinDelegationTTL, MaxDelegationTTL))
	}
	if delegatee == caller.Subject {
		return DelegateResult{}, httpx.Validation("an agent cannot delegate to itself", map[string]string{"delegateeAgentId": "must not be the caller"})
	}
	if !validAgentID(delegatee) || !validAgentID(caller.Subject) {
		return DelegateResult{}, notFoundAgent()
	}
	a, err := s.store.GetAgent(ctx, caller.OrgID, delegatee)
	if errors.Is(err, ErrNotFound) || (err == nil && a.Status != StatusActive) {
		return DelegateResult{}, notFoundAgent()
	}
	if err != nil {
		return DelegateResult{}, httpx.Internal(fmt.Errorf("delegate: load agent: %w", err))
	}
	now := s.now()
	exp := now.Add(time.Duration(ttl) * time.Second)
	if parent := time.Unix(caller.ExpiresAt, 0); caller.ExpiresAt > 0 && parent.Before(exp) {
		exp = parent
	}
	if !exp.After(now) {
		return DelegateResult{}, fieldError(CodeInvalidTTL, "the presented token has expired")
	}
	chainID := newID()
	claims := AccessClaims{
		RegisteredClaims: jose.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: delegatee, Audience: jose.Audience{s.cfg.Audience},
			ExpiresAt: exp.Unix(), NotBefore: now.Unix(), IssuedAt: now.Unix(), ID: newID()},
		ClientID: delegatee, Scope: strings.Join(scopes, " "), OrganizationID: caller.OrgID, IssuedAtMs: now.UnixMilli(),
		Act: &ActorClaim{Sub: caller.Subject}, ChainID: chainID, ChainIDs: []string{chainID},
	}
	if caller.JTI != "" {
		// The caller's own token is the parent: revoking it, its
		// credential or its agent revokes this delegation too.
		claims.Parents = []ParentClaim{{JTI: caller.JTI, Sub: caller.Subject, CredentialID: caller.CredentialID, IssuedAtMs: caller.IssuedAtMs}}
	}
	tok, err := s.signer.Sign(claims)
	if err != nil {
		return DelegateResult{}, httpx.Internal(fmt.Errorf("sign delegation token: %w", err))
	}
	d := Delegation{ChainID: chainID, OrganizationID: caller.OrgID, DelegatorAgentID: caller.Subject, DelegateeAgentID: delegatee,
		Scopes: scopes, Depth: 1, ExpiresAt: exp.UTC().Truncate(time.Second), CreatedAt: now.UTC()}
	ev, err := events.New(events.DelegationCreated, Source, caller.OrgID, delegatee, DelegationData{
		ChainID: chainID, DelegatorAgentID: caller.Subject, DelegateeAgentID: delegatee, Chain: []string{caller.Subject, delegatee},
		Scopes: scopes, Audience: claims.Audience, Depth: 1, Via: "delegate", Decision: "allow", Reason: "allowed",
		JTI: claims.ID, ExpiresAt: d.ExpiresAt, At: now.UTC(),
	})
	if err != nil {
		return DelegateResult{}, httpx.Internal(err)
	}
	if err := s.store.CreateDelegation(ctx, d, []events.Envelope{ev}); err != nil {
		return DelegateResult{}, httpx.Internal(fmt.Errorf("create delegation: %w", err))
	}
	s.notify()
	s.delegations.WithLabelValues("delegate", "created").Inc()
	return DelegateResult{DelegationToken: tok, ChainID: chainID, DelegatorAgentID: caller.Subject, DelegateeAgentID: delegatee,
		Scopes: scopes, ExpiresAt: d.ExpiresAt}, nil
}

// VerifyDelegation checks a delegation token of the caller's organisation.
// It never fails: anything but a valid, unrevoked delegation token of the
// caller's organisation is {valid:false, reason}.
func (s *Service) VerifyDelegation(ctx context.Context, caller authn.Identity, token string) VerifyResult {
	res := s.verifyDelegation(caller, token)
	outcome := "valid"
	if !res.Valid {
		outcome = "invalid"
	}
	s.delegations.WithLabelValues("verify", outcome).Inc()
	return res
}

func (s *Service) verifyDelegation(caller authn.Identity, token string) VerifyResult {
	if len(token) > 16<<10 {
		return VerifyResult{Reason: "malformed token"}
	}
	if !s.revoked.Ready() {
		return VerifyResult{Reason: "revocation state unavailable; try again"}
	}
	c, ok := s.verifyOwn(token, s.now())
	switch {
	case !ok:
		return VerifyResult{Reason: "invalid or expired token"}
	case c.OrganizationID != caller.OrgID:
		return VerifyResult{Reason: "invalid or expired token"}
	case c.Act == nil || c.ChainID == "":
		return VerifyResult{Reason: "not a delegation token"}
	case s.revoked.Revoked(tokenOf(c)):
		return VerifyResult{Reason: "revoked"}
	}
	exp := time.Unix(c.ExpiresAt, 0).UTC()
	return VerifyResult{Valid: true, DelegatorAgentID: c.Act.Sub, DelegateeAgentID: c.Subject, Scopes: strings.Fields(c.Scope),
		Chain: chainOf(c), ChainID: c.ChainID, ExpiresAt: &exp}
}

// RevokeDelegation revokes a chain created through POST /delegate: only
// its delegator (or an admin:orgs caller of the organisation) may. Every
// token naming the chain — the delegatee's and every token derived from it
// by exchange — is rejected from then on, at every gateway. Revoking an
// already revoked chain succeeds and changes nothing.
func (s *Service) RevokeDelegation(ctx context.Context, caller authn.Identity, chainID string) error {
	if !revocation.ValidKeyPart(chainID) || len(chainID) != 36 {
		return httpx.NotFound(CodeChainNotFound, "delegation not found")
	}
	d, err := s.store.GetDelegation(ctx, caller.OrgID, chainID)
	if errors.Is(err, ErrNotFound) {
		return httpx.NotFound(CodeChainNotFound, "delegation not found")
	}
	if err != nil {
		return httpx.Internal(fmt.Errorf("revoke delegation: %w", err))
	}
	if d.DelegatorAgentID != caller.Subject && !caller.HasScope(ScopeAdminOrgs) {
		return httpx.Forbidden("only the delegator may revoke a delegation")
	}
	if d.RevokedAt != nil {
		return nil
	}
	now := s.now()
	rev := s.watermark(revocation.KindChain, chainID, now)
	ev, err := events.New(events.DelegationRevoked, Source, caller.OrgID, d.DelegateeAgentID, DelegationRevokedData{
		ChainID: chainID, DelegatorAgentID: d.DelegatorAgentID, DelegateeAgentID: d.DelegateeAgentID, RevokedBy: caller.Subject, At: now.UTC(),
	})
	if err != nil {
		return httpx.Internal(err)
	}
	changed, err := s.store.RevokeDelegation(ctx, caller.OrgID, chainID, now.UTC(), []Revocation{rev}, []events.Envelope{ev})
	if errors.Is(err, ErrNotFound) {
		return httpx.NotFound(CodeChainNotFound, "delegation not found")
	}
	if err != nil {
		return httpx.Unavailable("could not record the revocation", fmt.Errorf("revoke delegation: %w", err))
	}
	if !changed {
		return nil
	}
	s.notify()
	s.revocationsCommitted(ctx, []Revocation{rev})
	s.delegations.WithLabelValues("revoke", "revoked").Inc()
	return nil
}

// ListDelegations lists the caller's chains as delegator (role
// "delegator", the default) or delegatee.
func (s *Service) ListDelegations(ctx context.Context, caller authn.Identity, role string, page httpx.Page) (DelegationPage, error) {
	if role != "" && role != "delegator" && role != "delegatee" {
		return DelegationPage{}, httpx.Validation("role must be delegator or delegatee", map[string]string{"role": truncate(role, 32)})
	}
	if !validAgentID(caller.Subject) {
		return DelegationPage{Data: []Delegation{}, Pagination: httpx.NewPagination(page, 0)}, nil
	}
	rows, total, err := s.store.ListDelegations(ctx, caller.OrgID, caller.Subject, role == "delegatee", page.Offset(), page.Limit)
	if err != nil {
		return DelegationPage{}, httpx.Internal(fmt.Errorf("list delegations: %w", err))
	}
	now := s.now()
	for i := range rows {
		rows[i].Status = delegationStatus(rows[i], now)
	}
	if rows == nil {
		rows = []Delegation{}
	}
	return DelegationPage{Data: rows, Pagination: httpx.NewPagination(page, total)}, nil
}

func delegationStatus(d Delegation, now time.Time) string {
	switch {
	case d.RevokedAt != nil:
		return "revoked"
	case !now.Before(d.ExpiresAt):
		return "expired"
	}
	return "active"
}

// exchangeError is an RFC 8693 §2.2.2 error.
func exchangeError(code, desc string) *OAuthError {
	return &OAuthError{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// ExchangeToken is RFC 8693 token exchange: the authenticated client, which
// must be the subject of actor_token, obtains a token that lets it act for
// the subject of subject_token. Every hop only narrows scope, audience and
// lifetime; the chain is bounded by the maximum depth and every exchange is
// decided by the delegation policy. The answer is audited (delegation.created
// or auth.failed). Like client_credentials issuance it writes nothing to
// the database.
func (s *Service) ExchangeToken(ctx context.Context, req TokenRequest) (ExchangeResponse, *OAuthError) {
	if s.isPartnerExchange(req.Exchange) {
		return s.exchangePartnerToken(ctx, req)
	}
	now := s.now()
	rec, credID, oe := s.authenticateClient(ctx, req, now)
	if oe != nil {
		return ExchangeResponse{}, oe
	}
	x := req.Exchange
	fail := func(code, desc string) (ExchangeResponse, *OAuthError) {
		s.delegations.WithLabelValues("exchange", code).Inc()
		return ExchangeResponse{}, exchangeError(code, desc)
	}
	switch {
	case x.SubjectToken == "":
		return fail("invalid_request", "subject_token is required")
	case x.SubjectTokenType != TokenTypeAccessToken && x.SubjectTokenType != TokenTypeJWT:
		return fail("invalid_request", "subject_token_type must be "+TokenTypeAccessToken+" or "+TokenTypeJWT)
	case x.ActorToken == "":
		return fail("invalid_request", "actor_token is required")
	case x.ActorTokenType != TokenTypeAccessToken && x.ActorTokenType != TokenTypeJWT:
		return fail("invalid_request", "actor_token_type must be "+TokenTypeAccessToken+" or "+TokenTypeJWT)
	case x.RequestedTokenType != "" && x.RequestedTokenType != TokenTypeAccessToken:
		return fail("invalid_request", "requested_token_type must be "+TokenTypeAccessToken)
	case x.Resource != "":
		return fail("invalid_target", "resource is not supported; use audience")
	}
	if !s.revoked.Ready() {
		return ExchangeResponse{}, &OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second}
	}
	sub, ok := s.verifyOwn(x.SubjectToken, now)
	if !ok || s.revoked.Revoked(tokenOf(sub)) {
		return fail("invalid_request", "subject_token is invalid, expired or revoked")
	}
	act, ok := s.verifyOwn(x.ActorToken, now)
	if !ok || s.revoked.Revoked(tokenOf(act)) {
		return fail("invalid_request", "actor_token is invalid, expired or revoked")
	}
	// The actor proves who it is with its own client_credentials token; a
	// delegated token never stands for the agent holding it.
	if act.Act != nil || act.ChainID != "" || len(act.ChainIDs) > 0 || act.Subject != act.ClientID {
		return fail("invalid_request", "actor_token must be the actor's own access token, not a delegated one")
	}
	if act.Subject != rec.AgentID {
		return fail("invalid_request", "actor_token does not belong to the authenticated client")
	}
	if sub.OrganizationID != act.OrganizationID || act.OrganizationID != rec.OrgID {
		return fail("invalid_request", "subject and actor must belong to the same organization")
	}
	if sub.MayAct != nil && sub.MayAct.Sub != act.Subject {
		return fail("invalid_request", "the subject token does not allow this actor (may_act)")
	}
	subActors := sub.Act.actors()
	depth := len(subActors) + 1
	if depth > s.cfg.MaxDelegationDepth {
		return s.denyExchange(ctx, rec, append(chainOf(sub), act.Subject), "invalid_request",
			fmt.Sprintf("delegation depth %d exceeds the maximum of %d", depth, s.cfg.MaxDelegationDepth))
	}
	subScopes := strings.Fields(sub.Scope)
	scopes := subScopes
	if req.HasScope {
		scopes = strings.Fields(req.Scope)
		if len(scopes) == 0 || len(req.Scope) > 1024 {
			return fail("invalid_scope", "scope must list at least one scope")
		}
		for _, sc := range scopes {
			if !slices.Contains(subScopes, sc) {
				return fail("invalid_scope", "requested scope exceeds the subject token's scope")
			}
		}
		scopes = dedupe(scopes)
	}
	aud := sub.Audience
	if x.Audience != "" {
		aud = strings.Fields(x.Audience)
		for _, a := range aud {
			if !sub.Audience.Contains(a) {
				return fail("invalid_target", "requested audience exceeds the subject token's audience")
			}
		}
		// Every token must still be accepted by our resource servers.
		if !jose.Audience(aud).Contains(s.cfg.Audience) {
			return fail("invalid_target", "audience must include "+s.cfg.Audience)
		}
	}
	chain := append(chainOf(sub), act.Subject)
	d, err := s.policy(ctx, DelegationInput{
		Subject:         PolicySubject{Sub: sub.Subject, OrganizationID: sub.OrganizationID, Scopes: subScopes, ChainIDs: orEmpty(chainIDs(sub))},
		Actor:           PolicyActor{Sub: act.Subject, OrganizationID: act.OrganizationID},
		Chain:           chain,
		Scopes:          subScopes,
		RequestedScopes: scopes,
		Audience:        aud,
		Depth:           depth,
		MaxDepth:        s.cfg.MaxDelegationDepth,
	})
	if err != nil {
		s.log.ErrorContext(ctx, "delegation policy", "err", err)
		s.delegations.WithLabelValues("exchange", "error").Inc()
		return ExchangeResponse{}, &OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second}
	}
	if !d.Allow {
		return s.denyExchange(ctx, rec, chain, "invalid_request", "delegation denied by policy: "+d.Reason)
	}
	if oe := s.countToken(ctx, rec.OrgID, now); oe != nil {
		s.delegations.WithLabelValues("exchange", "rate_limited").Inc()
		return ExchangeResponse{}, oe
	}
	exp := min(now.Add(s.cfg.TokenTTL).Unix(), sub.ExpiresAt, act.ExpiresAt)
	chainID := newID()
	parentChains := chainIDs(sub)
	parents := make([]ParentClaim, 0, len(sub.Parents)+2)
	parents = append(parents, sub.Parents...)
	parents = append(parents,
		ParentClaim{JTI: sub.ID, Sub: sub.Subject, CredentialID: sub.CredentialID, IssuedAtMs: revocation.IssuedAtMs(sub.IssuedAt, sub.IssuedAtMs)},
		ParentClaim{JTI: act.ID, Sub: act.Subject, CredentialID: act.CredentialID, IssuedAtMs: revocation.IssuedAtMs(act.IssuedAt, act.IssuedAtMs)})
	if len(parents) > revocation.MaxParents {
		return fail("invalid_request", "delegation chain too long")
	}
	actors := make([]string, 0, depth)
	actors = append(actors, sub.Subject)
	actors = append(actors, subActors...)
	scope := strings.Join(scopes, " ")
	claims := AccessClaims{
		RegisteredClaims: jose.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: act.Subject, Audience: jose.Audience(aud),
			ExpiresAt: exp, NotBefore: now.Unix(), IssuedAt: now.Unix(), ID: newID()},
		ClientID: act.Subject, Scope: scope, OrganizationID: rec.OrgID, CredentialID: credID, IssuedAtMs: now.UnixMilli(),
		Act: nestActors(actors), ChainID: chainID, ChainIDs: append(slices.Clip(parentChains), chainID), Parents: parents,
	}
	tok, err := s.signer.Sign(claims)
	if err != nil {
		s.log.ErrorContext(ctx, "sign token", "err", err)
		s.delegations.WithLabelValues("exchange", "error").Inc()
		return ExchangeResponse{}, &OAuthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "could not issue token"}
	}
	if s.pub != nil {
		if ev, err := events.New(events.DelegationCreated, Source, rec.OrgID, act.Subject, DelegationData{
			ChainID: chainID, ParentChainIDs: parentChains, DelegatorAgentID: sub.Subject, DelegateeAgentID: act.Subject, Chain: chain,
			Scopes: scopes, Audience: aud, Depth: depth, Via: "token_exchange", Decision: "allow", Reason: d.Reason,
			JTI: claims.ID, ExpiresAt: time.Unix(exp, 0).UTC(), At: now.UTC(),
		}); err == nil {
			s.pub.Publish(ev)
		}
	}
	s.delegations.WithLabelValues("exchange", "issued").Inc()
	return ExchangeResponse{AccessToken: tok, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: exp - now.Unix(), Scope: scope}, nil
}

// policy evaluates the delegation policy; without one every exchange is
// denied (fail closed).
func (s *Service) policy(ctx context.Context, in DelegationInput) (PolicyDecision, error) {
	if s.delegationPolicy == nil {
		return PolicyDecision{Reason: "no delegation policy loaded"}, nil
	}
	return s.delegationPolicy.Decide(ctx, in)
}

// denyExchange audits a refused exchange (auth.failed with the reason and
// the chain) and returns the error.
func (s *Service) denyExchange(ctx context.Context, rec ClientRecord, chain []string, code, reason string) (ExchangeResponse, *OAuthError) {
	s.delegations.WithLabelValues("exchange", "denied").Inc()
	if s.pub != nil {
		if ev, err := events.New(events.AuthFailed, Source, rec.OrgID, rec.AgentID, events.AuthFailedData{
			ClientID: rec.AgentID, Reason: "delegation_denied: " + reason + " (chain " + strings.Join(chain, ",") + ")", At: s.now().UTC(),
		}); err == nil {
			s.pub.Publish(ev)
		}
	}
	s.log.InfoContext(ctx, "token exchange denied", "client_id", rec.AgentID, "reason", reason)
	return ExchangeResponse{}, exchangeError(code, reason)
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
