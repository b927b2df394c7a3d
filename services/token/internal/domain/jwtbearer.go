package domain

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
)

// GrantTypeJWTBearer is the RFC 7523 §2.1 grant: a partner IdP's JWT is
// exchanged for a local access token of the agent it maps to.
const GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// maxAssertion bounds a partner assertion (the federation service rejects
// larger tokens anyway).
const maxAssertion = 8 << 10

// ErrFederationUnavailable is wrapped by a FederationExchanger when the
// federation service cannot answer (network, timeout, 5xx).
var ErrFederationUnavailable = errors.New("federation service unavailable")

// FederationResult is the federation service's verdict on a partner token
// (its POST /internal/v1/federation/exchange-check body).
type FederationResult struct {
	Valid          bool   `json:"valid"`
	Reason         string `json:"reason,omitempty"`
	PartnerID      string `json:"partnerId,omitempty"`
	Issuer         string `json:"issuer,omitempty"`
	Subject        string `json:"subject,omitempty"`
	AgentID        string `json:"agentId,omitempty"`
	OrganizationID string `json:"organizationId,omitempty"`
	ExpiresAt      int64  `json:"expiresAt,omitempty"`
}

// FederationExchanger asks the federation service to verify a partner
// token and map it to a local agent. It is the one synchronous
// service-to-service call of the token endpoint (DESIGN.md §2 allows the
// exception): the partner registry and its key sets live there. A bad token
// is a result with Valid false; the error is only for an unreachable or
// failing federation service (wrapping ErrFederationUnavailable).
type FederationExchanger interface {
	ExchangeCheck(ctx context.Context, assertion string) (FederationResult, error)
}

// FederationClaim (private claim fed) records the partner token a
// federated access token was exchanged for.
type FederationClaim struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	PartnerID string `json:"partner_id,omitempty"`
}

type federatedClaims struct {
	AccessClaims
	Federation *FederationClaim `json:"fed,omitempty"`
}

// FederationTokenExchangedData is the payload of federation.token.exchanged.
type FederationTokenExchangedData struct {
	PartnerID string    `json:"partnerId"`
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	AgentID   string    `json:"agentId"`
	JTI       string    `json:"jti"`
	Scope     string    `json:"scope"`
	ExpiresAt time.Time `json:"expiresAt"`
	At        time.Time `json:"at"`
}

// FederationEnabled reports whether the jwt-bearer grant is served.
func (s *Service) FederationEnabled() bool { return s.ca.fed != nil }

func invalidGrant(desc string) *OAuthError {
	return &OAuthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

// federatedToken serves grant_type=jwt-bearer: the federation service
// verifies the partner token and maps it to a local agent, and the agent
// gets a local access token of its organisation with the requested scope
// (a subset of its scopes; its default scopes otherwise). admin:orgs is
// never granted through a partner. Client authentication is optional
// (RFC 7523 §3.1); when present it must be the mapped agent's.
func (s *Service) federatedToken(ctx context.Context, req TokenRequest) (TokenResponse, *OAuthError) {
	return s.federatedGrant(ctx, req, GrantTypeJWTBearer)
}

// isPartnerExchange reports whether an RFC 8693 request exchanges a
// partner's token (a JWT or ID token from another issuer, no actor token)
// rather than delegating one of ours.
func (s *Service) isPartnerExchange(x ExchangeParams) bool {
	if s.ca.fed == nil || x.ActorToken != "" || x.SubjectToken == "" ||
		(x.SubjectTokenType != TokenTypeJWT && x.SubjectTokenType != TokenTypeIDToken) {
		return false
	}
	iss, _, ok := unverifiedSubject(x.SubjectToken)
	return !ok || strings.TrimRight(iss, "/") != strings.TrimRight(s.cfg.Issuer, "/")
}

// exchangePartnerToken is RFC 8693 token exchange of a partner's token
// (say a Kubernetes service-account or CI OIDC token from a trusted
// issuer) for a local access token: the same verification, mapping and
// scope rules as the jwt-bearer grant, answered in RFC 8693's shape, with
// invalid_request for a token that is not accepted (§2.2.2).
func (s *Service) exchangePartnerToken(ctx context.Context, req TokenRequest) (ExchangeResponse, *OAuthError) {
	x := req.Exchange
	switch {
	case x.RequestedTokenType != "" && x.RequestedTokenType != TokenTypeAccessToken:
		return ExchangeResponse{}, exchangeError("invalid_request", "requested_token_type must be "+TokenTypeAccessToken)
	case x.Resource != "":
		return ExchangeResponse{}, exchangeError("invalid_target", "resource is not supported; use audience")
	case x.Audience != "" && x.Audience != s.cfg.Audience:
		return ExchangeResponse{}, exchangeError("invalid_target", "audience must be "+s.cfg.Audience)
	}
	req.Assertion = x.SubjectToken
	res, oe := s.federatedGrant(ctx, req, GrantTypeTokenExchange)
	if oe != nil {
		if oe.Code == "invalid_grant" {
			oe.Code = "invalid_request"
			oe.Description = strings.Replace(oe.Description, "assertion", "subject_token", 1)
		}
		return ExchangeResponse{}, oe
	}
	return ExchangeResponse{AccessToken: res.AccessToken, IssuedTokenType: TokenTypeAccessToken, TokenType: res.TokenType,
		ExpiresIn: res.ExpiresIn, Scope: res.Scope}, nil
}

// federatedGrant issues a local access token for a partner token (the
// jwt-bearer grant, or token exchange of a partner token); grantType is
// recorded in token.issued.
func (s *Service) federatedGrant(ctx context.Context, req TokenRequest, grantType string) (TokenResponse, *OAuthError) {
	if s.ca.fed == nil {
		return TokenResponse{}, &OAuthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "the jwt-bearer grant is not enabled"}
	}
	now := s.now()
	fail := func(oe *OAuthError) (TokenResponse, *OAuthError) {
		s.issued.WithLabelValues(oe.Code).Inc()
		return TokenResponse{}, oe
	}
	if req.Assertion == "" {
		return fail(InvalidRequest("assertion is required"))
	}
	if len(req.Assertion) > maxAssertion {
		return fail(invalidGrant("assertion rejected: malformed token"))
	}
	authenticated := ""
	if req.Secret != "" || req.ClientAssertion != "" {
		rec, _, oe := s.authenticateClient(ctx, req, now)
		if oe != nil {
			return TokenResponse{}, oe
		}
		authenticated = rec.AgentID
	} else if req.ClientID != "" {
		authenticated = req.ClientID
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	r, err := s.ca.fed.ExchangeCheck(fctx, req.Assertion)
	cancel()
	if err != nil {
		s.log.ErrorContext(ctx, "federation exchange check", "err", err)
		return fail(&OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second})
	}
	if !r.Valid {
		return fail(invalidGrant("assertion rejected: " + truncate(r.Reason, 128)))
	}
	if authenticated != "" && authenticated != r.AgentID {
		return fail(invalidGrant("the assertion does not map to the authenticated client"))
	}
	rec, found, err := s.clients.Get(ctx, r.AgentID)
	if err != nil {
		s.log.ErrorContext(ctx, "load client", "client_id", r.AgentID, "err", err)
		return fail(&OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second})
	}
	// The federation service's read model may lag ours: trust the local
	// record for status and organisation.
	if !found || rec.Status != StatusActive || rec.OrgID != r.OrganizationID {
		return fail(invalidGrant("assertion rejected: mapped agent unavailable"))
	}
	allowed := slices.DeleteFunc(slices.Clone(rec.Scopes), func(sc string) bool { return sc == ScopeAdminOrgs })
	scopes := slices.DeleteFunc(slices.Clone(rec.DefaultScopes), func(sc string) bool { return sc == ScopeAdminOrgs })
	if req.HasScope {
		scopes = strings.Fields(req.Scope)
		if len(scopes) == 0 || len(req.Scope) > 1024 {
			return fail(&OAuthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "scope must list at least one scope"})
		}
		for _, sc := range scopes {
			if !slices.Contains(allowed, sc) {
				return fail(&OAuthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "requested scope exceeds the agent's scopes"})
			}
		}
		scopes = dedupe(scopes)
	}
	if oe := s.countToken(ctx, rec.OrgID, now); oe != nil {
		return fail(oe)
	}
	scope := strings.Join(scopes, " ")
	iat := now.Unix()
	exp := now.Add(s.cfg.TokenTTL)
	claims := federatedClaims{
		AccessClaims: AccessClaims{
			RegisteredClaims: jose.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: rec.AgentID, Audience: jose.Audience{s.cfg.Audience},
				ExpiresAt: exp.Unix(), NotBefore: iat, IssuedAt: iat, ID: newID()},
			ClientID: rec.AgentID, Scope: scope, OrganizationID: rec.OrgID, IssuedAtMs: now.UnixMilli(),
		},
		Federation: &FederationClaim{Issuer: r.Issuer, Subject: r.Subject, PartnerID: r.PartnerID},
	}
	if s.revoked.Revoked(revocation.Token{Subject: rec.AgentID, OrgID: rec.OrgID, IssuedAtMs: claims.IssuedAtMs}) {
		s.clients.Invalidate(rec.AgentID)
		return fail(invalidGrant("assertion rejected: mapped agent unavailable"))
	}
	tok, err := s.signer.Sign(claims)
	if err != nil {
		s.log.ErrorContext(ctx, "sign token", "err", err)
		return fail(&OAuthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "could not issue token"})
	}
	if s.pub != nil {
		expAt, at := time.Unix(exp.Unix(), 0).UTC(), time.Unix(iat, 0).UTC()
		if ev, err := events.New(events.TokenIssued, Source, rec.OrgID, rec.AgentID, events.TokenIssuedData{
			JTI: claims.ID, ClientID: rec.AgentID, Scope: scope, GrantType: grantType, ExpiresAt: expAt, IssuedAt: at,
		}); err == nil {
			s.pub.Publish(ev)
		}
		if ev, err := events.New(events.FederationTokenExchanged, Source, rec.OrgID, rec.AgentID, FederationTokenExchangedData{
			PartnerID: r.PartnerID, Issuer: r.Issuer, Subject: r.Subject, AgentID: rec.AgentID, JTI: claims.ID, Scope: scope,
			ExpiresAt: expAt, At: now.UTC(),
		}); err == nil {
			s.pub.Publish(ev)
		}
	}
	s.issued.WithLabelValues("issued").Inc()
	return TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(s.cfg.TokenTTL / time.Second), Scope: scope}, nil
}

// grantTypes are the grants discovery advertises.
func (s *Service) grantTypes() []string {
	g := []string{"client_credentials", GrantTypeTokenExchange}
	if s.ca.fed != nil {
		g = append(g, GrantTypeJWTBearer)
	}
	return g
}
