package domain

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/google/uuid"
)

// OAuthError is an RFC 6749 §5.2 error response.
type OAuthError struct {
	Status      int           `json:"-"`
	Code        string        `json:"error"`
	Description string        `json:"error_description,omitempty"`
	RetryAfter  time.Duration `json:"-"`
	// Challenge is set when the client authenticated with HTTP Basic, so
	// the 401 carries WWW-Authenticate (RFC 6749 §5.2).
	Challenge bool `json:"-"`
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

// InvalidRequest is a 400 invalid_request.
func InvalidRequest(desc string) *OAuthError {
	return &OAuthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

// TokenRequest is a parsed token request: client_credentials, or token
// exchange (GrantType GrantTypeTokenExchange, with Exchange set).
type TokenRequest struct {
	GrantType string
	ClientID  string
	Secret    string
	Scope     string
	HasScope  bool
	Basic     bool // client_secret_basic was used
	Exchange  ExchangeParams
	// ClientAssertion is a private_key_jwt client assertion (RFC 7523
	// §2.2); when set it authenticates the client instead of Secret.
	ClientAssertion string
	// Assertion is the partner JWT of the jwt-bearer grant (RFC 7523 §2.1).
	Assertion string
	// Source returns the caller's IP address as the gateway saw it (or the
	// direct peer's; "" when unknown); failed authentications are
	// throttled per address. It is a function so that the success path
	// does not pay for verifying the gateway's signed address unless some
	// key is blocked; nil means unknown.
	Source func() string
}

// sourceAddr is the caller's address, "" when unknown.
func (r TokenRequest) sourceAddr() string {
	if r.Source == nil {
		return ""
	}
	return r.Source()
}

// AuthMethod names the client authentication method of the request.
func (r TokenRequest) AuthMethod() string {
	switch {
	case r.ClientAssertion != "":
		return "private_key_jwt"
	case r.Basic:
		return "client_secret_basic"
	case r.ClientID != "" || r.Secret != "":
		return "client_secret_post"
	}
	return "none"
}

// ExchangeParams are the RFC 8693 §2.1 parameters of a token exchange.
type ExchangeParams struct {
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	Audience           string // space-separated
	Resource           string
	RequestedTokenType string
}

// TokenResponse is RFC 6749 §5.1.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// AccessClaims are the RFC 9068 claims of an access token.
type AccessClaims struct {
	jose.RegisteredClaims
	ClientID       string `json:"client_id"`
	Scope          string `json:"scope"`
	OrganizationID string `json:"organization_id"`
	CredentialID   string `json:"credential_id"`
	// IssuedAtMs is the issue time in Unix milliseconds (private claim):
	// revocation watermarks are compared in milliseconds so that a token
	// issued just after a reactivation is not caught by the suspension in
	// the same second. iat stays the RFC 7519 seconds value.
	IssuedAtMs int64 `json:"iat_ms,omitempty"`
	// Act is the delegation chain of a delegated token (RFC 8693 act):
	// the agent the holder (sub) acts for, nesting earlier delegators.
	Act *ActorClaim `json:"act,omitempty"`
	// MayAct (RFC 8693 §4.4), when present, names the only agent that may
	// act for the subject through token exchange.
	MayAct *ActorClaim `json:"may_act,omitempty"`
	// ChainID is the delegation this token was issued under; ChainIDs are
	// it and every ancestor chain, so revoking any of them revokes the
	// token without a lookup (libs/revocation kind chain).
	ChainID  string   `json:"chain_id,omitempty"`
	ChainIDs []string `json:"chain_ids,omitempty"`
	// Parents are the tokens this delegated token was derived from.
	Parents []ParentClaim `json:"parent_tokens,omitempty"`
}

// invalidClient is the one answer for every client authentication failure,
// so that responses do not reveal which part was wrong.
func invalidClient(basic bool) *OAuthError {
	return &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed", Challenge: basic}
}

// authenticateClient checks the client's id and secret against the cached
// client record (no database on the hot path). Every failure is the same
// invalid_client answer.
func (s *Service) authenticateClient(ctx context.Context, req TokenRequest, now time.Time) (ClientRecord, string, *OAuthError) {
	// A blocked client id or address is refused before its secret is
	// looked at, the right one included: otherwise the block would not
	// slow guessing down.
	if wait := s.throttle.blockedFor(req.ClientID, req.Source, now); wait > 0 {
		s.issued.WithLabelValues("throttled").Inc()
		return ClientRecord{}, "", throttled(wait)
	}
	if req.ClientAssertion != "" {
		rec, oe := s.authenticateAssertion(ctx, req, now)
		return rec, "", oe
	}
	digest := s.digest(req.Secret)
	var rec ClientRecord
	found := false
	matches := func(rec ClientRecord, found bool) bool {
		return found && matchCredential(rec, digest, now) != ""
	}
	if validAgentID(req.ClientID) {
		var err error
		rec, found, err = s.clients.GetOrReload(ctx, req.ClientID, matches)
		if err != nil {
			s.log.ErrorContext(ctx, "load client", "client_id", req.ClientID, "err", err)
			s.issued.WithLabelValues("error").Inc()
			return rec, "", &OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second}
		}
	}
	credID := ""
	if !found {
		// Spend the same time as a real comparison.
		hmac.Equal(digest, s.dummyDigest)
		return rec, "", s.authFailed(ctx, req, ClientRecord{}, "unknown_client")
	}
	credID = matchCredential(rec, digest, now)
	if credID == "" {
		return rec, "", s.authFailed(ctx, req, rec, "invalid_secret")
	}
	if rec.Status != StatusActive {
		return rec, "", s.authFailed(ctx, req, rec, "agent_"+rec.Status)
	}
	return rec, credID, nil
}

// IssueToken authenticates the client and issues an access token. It
// touches no database on the hot path: client records come from the
// in-memory cache.
func (s *Service) IssueToken(ctx context.Context, req TokenRequest) (TokenResponse, *OAuthError) {
	if req.GrantType == GrantTypeJWTBearer {
		return s.federatedToken(ctx, req)
	}
	now := s.now()
	rec, credID, oe := s.authenticateClient(ctx, req, now)
	if oe != nil {
		return TokenResponse{}, oe
	}
	scopes := rec.DefaultScopes
	if req.HasScope {
		scopes = strings.Fields(req.Scope)
		if len(scopes) == 0 || len(req.Scope) > 1024 {
			s.issued.WithLabelValues("invalid_scope").Inc()
			return TokenResponse{}, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "scope must list at least one scope"}
		}
		for _, sc := range scopes {
			if !slices.Contains(rec.Scopes, sc) {
				s.issued.WithLabelValues("invalid_scope").Inc()
				return TokenResponse{}, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "requested scope exceeds the client's scopes"}
			}
		}
		scopes = dedupe(scopes)
	}
	if oe := s.countToken(ctx, rec.OrgID, now); oe != nil {
		s.issued.WithLabelValues("rate_limited").Inc()
		return TokenResponse{}, oe
	}
	scope := strings.Join(scopes, " ")
	jti, err := uuid.NewV7()
	if err != nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		jti = uuid.UUID(b)
	}
	iat := now.Unix()
	exp := now.Add(s.cfg.TokenTTL)
	claims := AccessClaims{
		RegisteredClaims: jose.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: rec.AgentID, Audience: jose.Audience{s.cfg.Audience},
			ExpiresAt: exp.Unix(), NotBefore: iat, IssuedAt: iat, ID: jti.String()},
		ClientID: rec.AgentID, Scope: scope, OrganizationID: rec.OrgID, CredentialID: credID, IssuedAtMs: now.UnixMilli(),
	}
	// A revocation at or after this instant means the cached client record
	// may predate it (another replica committed, its event is in flight):
	// drop the record and refuse rather than sign a token that a watermark
	// does not cover.
	if s.revoked.Revoked(revocation.Token{Subject: rec.AgentID, CredentialID: credID, OrgID: rec.OrgID, IssuedAtMs: claims.IssuedAtMs}) {
		s.clients.Invalidate(rec.AgentID)
		return TokenResponse{}, s.authFailed(ctx, req, rec, "revoked")
	}
	tok, err := s.signer.Sign(claims)
	if err != nil {
		s.log.ErrorContext(ctx, "sign token", "err", err)
		s.issued.WithLabelValues("error").Inc()
		return TokenResponse{}, &OAuthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "could not issue token"}
	}
	if s.pub != nil {
		if ev, err := events.New(events.TokenIssued, Source, rec.OrgID, rec.AgentID, events.TokenIssuedData{
			JTI: claims.ID, ClientID: rec.AgentID, CredentialID: credID, Scope: scope, GrantType: "client_credentials",
			ExpiresAt: time.Unix(exp.Unix(), 0).UTC(), IssuedAt: time.Unix(iat, 0).UTC(),
		}); err == nil {
			s.pub.Publish(ev)
		}
	}
	s.issued.WithLabelValues("issued").Inc()
	return TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(s.cfg.TokenTTL / time.Second), Scope: scope}, nil
}

// countToken enforces the org's daily token limit. While the counters
// cannot be reached, this replica admits its share of what remained
// (quota.Reserver.TakeShare) and adds it back when they return: the limit
// holds across replicas instead of each letting every token through.
func (s *Service) countToken(ctx context.Context, orgID string, now time.Time) *OAuthError {
	if s.counters == nil {
		return nil
	}
	day := now.UTC()
	midnight := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, time.UTC)
	key := events.TokensCounterKey(orgID, events.DayStamp(day))
	limit := s.orgs.Limits(orgID).MaxTokensPerDay
	if limit < 0 {
		s.usage.add(key, midnight)
		return nil
	}
	allowed, _, err := s.quota.Take(ctx, key, limit, midnight)
	if err != nil {
		s.cacheErrors.Inc()
		allowed, _ = s.quota.TakeShare(key, limit, s.replicas(), midnight)
		// One line per 10 s, not one per token, while the outage lasts.
		if sec := now.Unix(); sec-s.cacheLogAt.Load() >= 10 {
			s.cacheLogAt.Store(sec)
			s.log.WarnContext(ctx, "count token usage; admitting this replica's share of the daily limit", "org", orgID, "allowed", allowed, "err", err)
		}
	}
	if !allowed {
		return &OAuthError{Status: http.StatusTooManyRequests, Code: "invalid_request", Description: "daily token limit reached", RetryAfter: midnight.Sub(now)}
	}
	return nil
}

// authFailed records a failed client authentication (metric, rate-limited
// log, auth.failed event in the organisation of rec when the client is a
// known agent, the failure counts of the throttle) and returns the uniform
// invalid_client error, or the throttle's 429 when this attempt was past
// the limit. It is only on the failure path: the shared-counter round trip
// and the event cost nothing on a successful issuance.
func (s *Service) authFailed(ctx context.Context, req TokenRequest, rec ClientRecord, reason string) *OAuthError {
	s.issued.WithLabelValues("invalid_client").Inc()
	now := s.now()
	addr := req.sourceAddr()
	sec := now.Unix()
	if s.failLogAt.Load() != sec {
		s.failLogAt.Store(sec)
		s.failLogged.Store(0)
	}
	if s.failLogged.Add(1) <= 5 {
		s.log.InfoContext(ctx, "client authentication failed", "client_id", truncate(req.ClientID, 64), "reason", reason)
	}
	if s.pub != nil {
		if ev, err := events.New(events.AuthFailed, Source, rec.OrgID, rec.AgentID, events.AuthFailedData{
			ClientID: truncate(req.ClientID, 64), Reason: reason, Method: req.AuthMethod(),
			SourceAddress: addr, At: now.UTC(),
		}); err == nil {
			s.pub.Publish(ev)
		}
	}
	if wait := s.throttle.failed(ctx, req.ClientID, addr, now); wait > 0 {
		return throttled(wait)
	}
	return invalidClient(req.Basic)
}

// RejectClient records a client authentication that failed before it
// reached the service (a malformed Authorization header, a missing
// secret): it is counted and audited like any other failure, and refused
// with 429 while the client id or address is blocked.
func (s *Service) RejectClient(ctx context.Context, req TokenRequest, reason string) *OAuthError {
	if wait := s.throttle.blockedFor(req.ClientID, req.Source, s.now()); wait > 0 {
		s.issued.WithLabelValues("throttled").Inc()
		return throttled(wait)
	}
	return s.authFailed(ctx, req, ClientRecord{}, reason)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Discovery is the RFC 8414 / OpenID discovery document.
func (s *Service) Discovery() map[string]any {
	iss := strings.TrimRight(s.cfg.Issuer, "/")
	return map[string]any{
		"issuer":                                iss,
		"token_endpoint":                        iss + "/oauth2/token",
		"jwks_uri":                              iss + "/.well-known/jwks.json",
		"grant_types_supported":                 s.grantTypes(),
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{string(jose.ES256), string(jose.EdDSA), string(jose.RS256)},
		"scopes_supported":                      KnownScopes,
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(s.cfg.Alg)},
	}
}

// matchCredential returns the id of the client's unexpired credential whose
// digest is digest, or "". Every credential is compared, in constant time.
func matchCredential(rec ClientRecord, digest []byte, now time.Time) string {
	id := ""
	for _, c := range rec.Credentials {
		if hmac.Equal(digest, c.Digest) && (c.ExpiresAt == nil || now.Before(*c.ExpiresAt)) {
			id = c.ID
		}
	}
	return id
}
