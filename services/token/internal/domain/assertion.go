package domain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/safehttp"
)

// ClientAssertionTypeJWT is the client_assertion_type of private_key_jwt
// (RFC 7523 §2.2).
const ClientAssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// DefaultAssertionMaxLifetime bounds how far in the future a client
// assertion's exp may be (TOKEN_ASSERTION_MAX_LIFETIME).
const DefaultAssertionMaxLifetime = 5 * time.Minute

// assertionLeeway tolerates clock skew between the client and us.
const assertionLeeway = 5 * time.Second

// maxJTI bounds the jti of a client assertion (it becomes a cache key).
const maxJTI = 256

// ReplayCache is the slice of the shared cache that remembers the jti of
// every accepted client assertion; cache.Cache satisfies it. Because it is
// shared (Redis in production) an assertion is accepted once across every
// replica.
type ReplayCache interface {
	// SetNX stores value only if key does not exist and reports whether it
	// did; exactly one of any number of concurrent callers gets true.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
}

// clientAuth holds what the client-key and federation features need
// beyond the core service.
type clientAuth struct {
	jwks   *http.Client
	replay ReplayCache
	fed    FederationExchanger

	refresh *refreshTimes
}

// refreshTimes remembers when each agent's jwksUri was last fetched again.
type refreshTimes struct {
	mu   sync.Mutex
	last map[string]time.Time // by agent id
}

func newClientAuth(cfg Settings, d Deps) clientAuth {
	return clientAuth{
		jwks:    safehttp.NewClient(safehttp.Options{Allow: cfg.JWKSAllowPrivate, Timeout: jwksFetchTimeout, MaxConnsPerHost: 4}),
		replay:  d.Replay,
		fed:     d.Federation,
		refresh: &refreshTimes{last: map[string]time.Time{}},
	}
}

// assertionClaims are the claims of a client assertion.
type assertionClaims struct {
	jose.RegisteredClaims
}

// unverifiedSubject reads iss and sub of a JWT without verifying it; the
// result only selects the client whose keys then verify the token.
func unverifiedSubject(token string) (iss, sub string, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > jose.DefaultMaxTokenSize {
		return "", "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", false
	}
	var c struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "", "", false
	}
	return c.Iss, c.Sub, true
}

// assertionAudiences are the aud values a client assertion may carry: our
// issuer or the token endpoint URL (either alias).
func (s *Service) assertionAudiences() []string {
	iss := strings.TrimRight(s.cfg.Issuer, "/")
	return []string{iss, iss + "/", iss + "/oauth2/token", iss + "/api/v1/token"}
}

// authenticateAssertion is private_key_jwt (RFC 7523 §2.2, §3): the client
// assertion must be signed by one of the client's registered keys with
// iss = sub = client id, our issuer or token endpoint in aud, a short exp,
// no iat in the future and a jti never seen before. Every failure is the
// same invalid_client answer; a replay-cache failure refuses rather than
// risk accepting a replay.
func (s *Service) authenticateAssertion(ctx context.Context, req TokenRequest, now time.Time) (ClientRecord, *OAuthError) {
	tok := req.ClientAssertion
	iss, sub, ok := unverifiedSubject(tok)
	clientID := iss
	if !ok || iss == "" || iss != sub || !validAgentID(iss) || (req.ClientID != "" && req.ClientID != iss) {
		if req.ClientID != "" {
			clientID = req.ClientID
		}
		freq := req
		freq.ClientID = clientID
		return ClientRecord{}, s.authFailed(ctx, freq, ClientRecord{}, "assertion_malformed")
	}
	// The client id comes from the assertion: check its block now.
	if wait := s.throttle.blockedFor(clientID, nil, now); wait > 0 {
		s.issued.WithLabelValues("throttled").Inc()
		return ClientRecord{}, throttled(wait)
	}
	freq := req
	freq.ClientID = clientID
	var rec ClientRecord // known once loaded: failures land in its organisation
	failed := func(reason string) (ClientRecord, *OAuthError) {
		return ClientRecord{}, s.authFailed(ctx, freq, rec, reason)
	}
	rec, found, err := s.clients.Get(ctx, clientID)
	if err != nil {
		s.log.ErrorContext(ctx, "load client", "client_id", clientID, "err", err)
		s.issued.WithLabelValues("error").Inc()
		return rec, &OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again later", RetryAfter: time.Second}
	}
	if !found {
		return failed("unknown_client")
	}
	var c assertionClaims
	// alg none, HS*, embedded keys and a kid not registered for this
	// client all fail here: jose pins the alg to the registered key.
	opts := jose.VerifyOptions{Issuer: clientID, Now: now, Leeway: assertionLeeway}
	err = jose.Verify(tok, clientKeySet(rec.Keys), opts, &c)
	if errors.Is(err, jose.ErrUnknownKey) && len(rec.JWKSURIs) > 0 && rec.Status == StatusActive &&
		s.mayRefreshClientJWKS(clientID, now) && s.refreshClientJWKS(ctx, rec) {
		// The agent may have rotated the keys at its jwksUri.
		if rec, found, err = s.clients.Get(ctx, clientID); err != nil || !found {
			return failed("unknown_client")
		}
		c = assertionClaims{}
		err = jose.Verify(tok, clientKeySet(rec.Keys), opts, &c)
	}
	if err != nil {
		return failed("assertion_invalid")
	}
	audOK := false
	for _, a := range s.assertionAudiences() {
		if c.Audience.Contains(a) {
			audOK = true
			break
		}
	}
	maxLife := s.cfg.AssertionMaxLifetime
	if maxLife <= 0 {
		maxLife = DefaultAssertionMaxLifetime
	}
	switch {
	case !audOK:
		return failed("assertion_audience")
	case c.Subject != clientID:
		return failed("assertion_subject")
	case c.ExpiresAt > now.Add(maxLife+assertionLeeway).Unix():
		return failed("assertion_lifetime")
	case c.ID == "" || len(c.ID) > maxJTI:
		return failed("assertion_jti")
	}
	if rec.Status != StatusActive {
		return failed("agent_" + rec.Status)
	}
	if s.ca.replay == nil {
		// Without a replay set an assertion could be used many times.
		return failed("assertion_replay_unavailable")
	}
	// Remember the jti until the assertion could no longer be accepted.
	ttl := time.Unix(c.ExpiresAt, 0).Add(assertionLeeway).Sub(now) + time.Second
	first, err := s.ca.replay.SetNX(ctx, "assertion:jti:"+clientID+":"+c.ID, []byte{'1'}, ttl)
	if err != nil {
		s.log.WarnContext(ctx, "client assertion replay check failed; refusing", "client_id", clientID, "err", err)
		return failed("assertion_replay_unavailable")
	}
	if !first {
		return failed("assertion_replayed")
	}
	return rec, nil
}
