package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/gateway/internal/jwks"
)

// maxActorDepth bounds the flattened delegation chain.
const maxActorDepth = 16

// accessClaims are the access-token claims the gateway uses. Embedding
// RegisteredClaims lets jose.Verify decode the payload once.
type accessClaims struct {
	jose.RegisteredClaims
	ClientID       string `json:"client_id"`
	Scope          string `json:"scope"`
	OrganizationID string `json:"organization_id"`
	CredentialID   string `json:"credential_id"`
	// IssuedAtMs is the token service's millisecond issue time, compared
	// with revocation watermarks (libs/revocation).
	IssuedAtMs int64  `json:"iat_ms"`
	Act        *actor `json:"act,omitempty"`
	// ChainID and ChainIDs name the delegation chains a delegated token was
	// issued under (its own and every ancestor's); Parents are the tokens
	// it was derived from. Revoking any of them revokes the token
	// (libs/revocation), checked here with no lookup.
	ChainID  string        `json:"chain_id,omitempty"`
	ChainIDs []string      `json:"chain_ids,omitempty"`
	Parents  []parentToken `json:"parent_tokens,omitempty"`
}

// parentToken is one entry of a delegated token's parent_tokens claim.
type parentToken struct {
	JTI          string `json:"jti"`
	Sub          string `json:"sub,omitempty"`
	CredentialID string `json:"credential_id,omitempty"`
	IssuedAtMs   int64  `json:"iat_ms,omitempty"`
}

// actor is an RFC 8693 actor claim; nested actors are earlier in the chain.
type actor struct {
	Sub      string `json:"sub"`
	ClientID string `json:"client_id,omitempty"`
	Act      *actor `json:"act,omitempty"`
}

// actors flattens the act claim, current actor first.
func (c *accessClaims) actors() []string {
	if c.Act == nil {
		return nil
	}
	var out []string
	for a := c.Act; a != nil && len(out) < maxActorDepth; a = a.Act {
		id := a.Sub
		if id == "" {
			id = a.ClientID
		}
		out = append(out, id)
	}
	return out
}

// authError is a 401 with the reason kept for logs and metrics only.
type authError struct {
	reason string
	err    error
}

func (e *authError) Error() string { return e.reason }

var errNoKeys = errors.New("signing keys not loaded yet")

// bearerToken extracts the token from an Authorization header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}

// authenticate verifies token, or finds it among recently verified ones.
// An unknown kid triggers one rate-limited JWKS refetch and a second
// attempt.
func (g *Gateway) authenticate(ctx context.Context, token string) (*verifiedToken, error) {
	if !g.keys.Loaded() {
		return nil, errNoKeys
	}
	now := g.now()
	if g.tokens != nil {
		if v, ok := g.tokens.get(token, now, g.cfg.Leeway, g.keyKnown); ok {
			return v, nil
		}
	}
	opts := jose.VerifyOptions{
		Issuer:   g.cfg.Issuer,
		Audience: g.cfg.Audience,
		Typ:      "at+jwt",
		Now:      now,
		Leeway:   g.cfg.Leeway,
	}
	var claims accessClaims
	keys := &kidRecorder{keys: g.keys}
	err := jose.Verify(token, keys, opts, &claims)
	if errors.Is(err, jose.ErrUnknownKey) && g.keys.RefreshForKid(ctx, keys.kid) {
		claims = accessClaims{}
		err = jose.Verify(token, keys, opts, &claims)
	}
	if err != nil {
		return nil, &authError{reason: authReason(err), err: err}
	}
	if claims.Subject == "" {
		return nil, &authError{reason: "token has no subject"}
	}
	if claims.OrganizationID == "" {
		return nil, &authError{reason: "token has no organization"}
	}
	v := newVerifiedToken(&claims, keys.kid)
	if g.tokens != nil {
		g.tokens.put(token, v)
	}
	return v, nil
}

// kidRecorder remembers the kid Verify looked up, so neither a refetch nor
// the token cache needs to decode the header again.
type kidRecorder struct {
	keys *jwks.Cache
	kid  string
}

func (r *kidRecorder) Key(kid string) (*jose.VerificationKey, bool) {
	r.kid = kid
	return r.keys.Key(kid)
}

func (g *Gateway) keyKnown(kid string) bool {
	_, ok := g.keys.Key(kid)
	return ok
}

func authReason(err error) string {
	switch {
	case errors.Is(err, jose.ErrExpired):
		return "token expired"
	case errors.Is(err, jose.ErrUnknownKey):
		return "unknown signing key"
	case errors.Is(err, jose.ErrAlgorithm):
		return "algorithm not allowed"
	case errors.Is(err, jose.ErrSignature):
		return "invalid signature"
	case errors.Is(err, jose.ErrIssuer):
		return "invalid issuer"
	case errors.Is(err, jose.ErrAudience):
		return "invalid audience"
	case errors.Is(err, jose.ErrTyp):
		return "invalid token type"
	case errors.Is(err, jose.ErrMissingExp):
		return "token has no expiry"
	case errors.Is(err, jose.ErrNotYetValid):
		return "token not yet valid"
	}
	return "malformed token"
}
