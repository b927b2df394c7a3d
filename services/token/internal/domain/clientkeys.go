package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/safehttp"
)

// Client key error codes.
const (
	CodeClientKeyNotFound = "CLIENT_KEY_NOT_FOUND"
	CodeClientKeyExists   = "CLIENT_KEY_ALREADY_EXISTS"
	CodeClientKeyLimit    = "CLIENT_KEY_LIMIT_EXCEEDED"
)

// Client key statuses.
const (
	ClientKeyActive  = "active"
	ClientKeyRevoked = "revoked"
)

// MaxClientKeys bounds an agent's active keys: a key set is scanned on
// every private_key_jwt authentication and held in the client cache.
const MaxClientKeys = 10

// Limits of a jwks_uri registration.
const (
	jwksFetchTimeout = 5 * time.Second
	jwksMaxBytes     = 64 << 10
)

// ErrKeyLimit: the agent already has MaxClientKeys active keys.
var ErrKeyLimit = errors.New("client key limit reached")

// ClientKey is a public key an agent authenticates with at the token
// endpoint (private_key_jwt). Only the public JWK is ever stored.
type ClientKey struct {
	KeyID     string     `json:"keyId"`
	AgentID   string     `json:"agentId"`
	Alg       string     `json:"alg"`
	JWK       jose.JWK   `json:"jwk"`
	JWKSURI   *string    `json:"jwksUri"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt"`
}

// ClientKeyStore persists client keys (part of Store). Every method scoped
// by orgID treats another organisation's agent as missing (ErrNotFound).
type ClientKeyStore interface {
	// CreateClientKeys inserts keys for agentID (which must exist in orgID,
	// ErrNotFound, and not be decommissioned, ErrDecommissioned) with evs in
	// one transaction. A kid the agent already used (active or revoked)
	// fails with ErrConflict; more than MaxClientKeys active keys with
	// ErrKeyLimit. Nothing is written on failure.
	CreateClientKeys(ctx context.Context, orgID, agentID string, keys []ClientKey, evs []events.Envelope) error
	// ListClientKeys returns the agent's keys in (createdAt, kid) order;
	// ErrNotFound when the agent does not exist in orgID.
	ListClientKeys(ctx context.Context, orgID, agentID string) ([]ClientKey, error)
	// RevokeClientKey marks the key revoked at at, with evs, if it is
	// active; it reports false (and writes nothing) when it already was.
	// ErrNotFound for a missing agent or key.
	RevokeClientKey(ctx context.Context, orgID, agentID, kid string, at time.Time, evs []events.Envelope) (bool, error)
	// ActiveClientKeys returns the agent's active keys (any org): the
	// client cache loads them with the client record.
	ActiveClientKeys(ctx context.Context, agentID string) ([]ClientKey, error)
}

// ClientKeyData is the payload of credential.generated / credential.revoked
// for a client key: the credential fields plus keyId and alg (fields only
// added, so consumers of credential.* keep working).
type ClientKeyData struct {
	events.CredentialData
	KeyID   string `json:"keyId"`
	Alg     string `json:"alg,omitempty"`
	JWKSURI string `json:"jwksUri,omitempty"`
	// JWK is the agent's public key (never private material), so the did
	// service can list it as a verification method of the agent's DID.
	JWK *jose.JWK `json:"jwk,omitempty"`
}

// RegisterClientKeyInput is the body of POST /agents/{id}/keys: a public
// JWK, or a jwks_uri whose keys are fetched once and registered.
type RegisterClientKeyInput struct {
	JWK     json.RawMessage `json:"jwk"`
	JWKSURI string          `json:"jwksUri"`
}

// RegisteredClientKeys is the 201 body: the first key's fields at the top
// level and, for a jwks_uri with several keys, every key in Keys.
type RegisteredClientKeys struct {
	ClientKey
	Keys []ClientKey `json:"keys,omitempty"`
}

// privateJWKMembers are the members that carry private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func notFoundClientKey() *httpx.Error {
	return httpx.NotFound(CodeClientKeyNotFound, "client key not found")
}

// validKID reports whether kid can name a key in a URL path: 1 to 128
// characters of the base64url alphabet plus '.' and '~' (RFC 7638
// thumbprints and common kid formats fit).
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

// inferAlg is the only algorithm a key type supports here.
func inferAlg(j jose.JWK) jose.Alg {
	switch {
	case j.Kty == "EC" && j.Crv == "P-256":
		return jose.ES256
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		return jose.EdDSA
	case j.Kty == "RSA":
		return jose.RS256
	}
	return ""
}

// parseClientJWK validates one public JWK: no private members, a supported
// key type and curve, alg (inferred when absent) matching the key, use sig,
// and a URL-safe kid (the RFC 7638 thumbprint when absent).
func parseClientJWK(raw json.RawMessage) (jose.JWK, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return jose.JWK{}, errors.New("must be a JSON object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return jose.JWK{}, fmt.Errorf("must be a public key (member %q is private or symmetric key material)", m)
		}
	}
	var j jose.JWK
	if err := json.Unmarshal(raw, &j); err != nil {
		return jose.JWK{}, errors.New("members must be strings")
	}
	if j.Kty == "oct" {
		return jose.JWK{}, errors.New("symmetric keys are not accepted")
	}
	if j.Use != "" && j.Use != "sig" {
		return jose.JWK{}, errors.New(`use must be "sig"`)
	}
	if j.Alg == "" {
		j.Alg = string(inferAlg(j))
		if j.Alg == "" {
			return jose.JWK{}, errors.New("unsupported key type or curve (EC P-256, OKP Ed25519 or RSA 2048+)")
		}
	}
	if j.Kid == "" {
		tp, err := jose.Thumbprint(j)
		if err != nil {
			return jose.JWK{}, fmt.Errorf("invalid key: %s", joseReason(err))
		}
		j.Kid = tp
	}
	if !validKID(j.Kid) {
		return jose.JWK{}, errors.New("kid must be 1 to 128 characters of [A-Za-z0-9-_.~]")
	}
	j.Use = "sig"
	if _, err := jose.NewVerificationKey(j); err != nil {
		return jose.JWK{}, fmt.Errorf("invalid key: %s", joseReason(err))
	}
	return j, nil
}

// joseReason is a client-facing description of a jose validation error
// (the messages describe only the submitted public key).
func joseReason(err error) string {
	switch {
	case errors.Is(err, jose.ErrAlgorithm):
		return "unsupported key type, curve or alg (EC P-256/ES256, OKP Ed25519/EdDSA, RSA 2048+/RS256)"
	case errors.Is(err, jose.ErrMalformed):
		return "malformed key material: " + truncate(err.Error(), 200)
	}
	return truncate(err.Error(), 200)
}

// fetchClientJWKS fetches a jwks_uri through the SSRF-safe client and
// returns its usable signing keys (keys of unsupported types or for
// encryption are skipped; private material anywhere fails the request).
func (s *Service) fetchClientJWKS(ctx context.Context, raw string) ([]jose.JWK, error) {
	if _, err := safehttp.ValidateURL(ctx, raw, s.cfg.JWKSAllowPrivate, !s.cfg.JWKSAllowInsecure); err != nil {
		return nil, httpx.Validation("invalid jwksUri", map[string]string{"jwksUri": err.Error()})
	}
	fetch := func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		res, err := s.ca.jwks.Do(req)
		if err != nil {
			if errors.Is(err, safehttp.ErrBlockedAddress) {
				return nil, safehttp.ErrBlockedAddress
			}
			return nil, errors.New("could not fetch the key set")
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("key set answered HTTP %d", res.StatusCode)
		}
		b, err := safehttp.ReadBody(res.Body, jwksMaxBytes)
		if errors.Is(err, safehttp.ErrTooLarge) {
			return nil, fmt.Errorf("key set larger than %d bytes", jwksMaxBytes)
		}
		if err != nil {
			return nil, errors.New("could not read the key set")
		}
		return b, nil
	}
	body, err := fetch()
	if err != nil {
		return nil, httpx.Validation("invalid jwksUri", map[string]string{"jwksUri": err.Error()})
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, httpx.Validation("invalid jwksUri", map[string]string{"jwksUri": "response is not a JWK set"})
	}
	var out []jose.JWK
	seen := map[string]bool{}
	for _, rk := range set.Keys {
		var members map[string]json.RawMessage
		if json.Unmarshal(rk, &members) == nil {
			for _, m := range privateJWKMembers {
				if _, ok := members[m]; ok {
					return nil, httpx.Validation("invalid jwksUri", map[string]string{"jwksUri": "the key set contains private or symmetric key material"})
				}
			}
		}
		j, err := parseClientJWK(rk)
		if err != nil || seen[j.Kid] {
			continue
		}
		seen[j.Kid] = true
		out = append(out, j)
	}
	if len(out) == 0 {
		return nil, httpx.Validation("invalid jwksUri", map[string]string{"jwksUri": "the key set has no usable signing key"})
	}
	if len(out) > MaxClientKeys {
		return nil, httpx.Conflict(CodeClientKeyLimit, fmt.Sprintf("an agent may have at most %d active keys", MaxClientKeys))
	}
	return out, nil
}

func clientKeyEvent(t events.Type, orgID string, k ClientKey, at time.Time) (events.Envelope, error) {
	d := ClientKeyData{
		CredentialData: events.CredentialData{CredentialID: k.KeyID, AgentID: k.AgentID, Status: k.Status, At: at},
		KeyID:          k.KeyID, Alg: k.Alg,
	}
	if k.JWK.Kty != "" {
		jwk := k.JWK
		d.JWK = &jwk
	}
	if k.JWKSURI != nil {
		d.JWKSURI = *k.JWKSURI
	}
	return events.New(t, Source, orgID, k.AgentID, d)
}

// RegisterClientKey registers a public key (or every usable key of a
// jwks_uri) for an agent of the caller's organisation; the agent can then
// authenticate with private_key_jwt.
func (s *Service) RegisterClientKey(ctx context.Context, caller authn.Identity, agentID string, in RegisterClientKeyInput) (RegisteredClientKeys, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opRegisterKey)
	if err != nil {
		return RegisteredClientKeys{}, err
	}
	org := target.OrganizationID
	hasJWK := len(in.JWK) > 0 && string(in.JWK) != "null"
	if hasJWK == (in.JWKSURI != "") {
		return RegisteredClientKeys{}, httpx.Validation("give exactly one of jwk and jwksUri", map[string]string{"jwk": "exactly one of jwk and jwksUri"})
	}
	// authorizeOn found the agent in the org: nothing is fetched for an
	// agent that does not exist or that the caller may not manage.
	var jwks []jose.JWK
	var uri *string
	if hasJWK {
		j, err := parseClientJWK(in.JWK)
		if err != nil {
			return RegisteredClientKeys{}, httpx.Validation("invalid jwk", map[string]string{"jwk": err.Error()})
		}
		jwks = []jose.JWK{j}
	} else {
		jwks, err = s.fetchClientJWKS(ctx, in.JWKSURI)
		if err != nil {
			return RegisteredClientKeys{}, err
		}
		u := in.JWKSURI
		uri = &u
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	keys := make([]ClientKey, len(jwks))
	evs := make([]events.Envelope, len(jwks))
	for i, j := range jwks {
		keys[i] = ClientKey{KeyID: j.Kid, AgentID: agentID, Alg: j.Alg, JWK: j, JWKSURI: uri, Status: ClientKeyActive, CreatedAt: now}
		if evs[i], err = clientKeyEvent(events.CredentialGenerated, org, keys[i], now); err != nil {
			return RegisteredClientKeys{}, httpx.Internal(err)
		}
	}
	if err := s.store.CreateClientKeys(ctx, org, agentID, keys, evs); err != nil {
		switch {
		case errors.Is(err, ErrConflict):
			return RegisteredClientKeys{}, httpx.Conflict(CodeClientKeyExists, "the agent already has a key with this kid")
		case errors.Is(err, ErrKeyLimit):
			return RegisteredClientKeys{}, httpx.Conflict(CodeClientKeyLimit, fmt.Sprintf("an agent may have at most %d active keys", MaxClientKeys))
		}
		return RegisteredClientKeys{}, s.mapAgentErr(agentID, err, -1)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	out := RegisteredClientKeys{ClientKey: keys[0]}
	if len(keys) > 1 {
		out.Keys = keys
	}
	return out, nil
}

// ListClientKeys lists an agent's keys (active and revoked).
func (s *Service) ListClientKeys(ctx context.Context, caller authn.Identity, agentID string) ([]ClientKey, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opReadAgent)
	if err != nil {
		return nil, err
	}
	org := target.OrganizationID
	ks, err := s.store.ListClientKeys(ctx, org, agentID)
	if err != nil {
		return nil, s.mapAgentErr(agentID, err, -1)
	}
	if ks == nil {
		ks = []ClientKey{}
	}
	return ks, nil
}

// RevokeClientKey stops a key from authenticating the agent; revoking twice
// succeeds. Client keys only authenticate, so tokens already issued with
// the key stay valid until they expire (revoke the tokens, a credential or
// suspend the agent to end them).
func (s *Service) RevokeClientKey(ctx context.Context, caller authn.Identity, agentID, kid string) error {
	target, err := s.authorizeOn(ctx, caller, agentID, opRevokeKey)
	if err != nil {
		return err
	}
	org := target.OrganizationID
	if !validKID(kid) {
		return notFoundClientKey()
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	ev, err := clientKeyEvent(events.CredentialRevoked, org, ClientKey{KeyID: kid, AgentID: agentID, Status: ClientKeyRevoked}, now)
	if err != nil {
		return httpx.Internal(err)
	}
	changed, err := s.store.RevokeClientKey(ctx, org, agentID, kid, now, []events.Envelope{ev})
	if errors.Is(err, ErrClientKeyNotFound) {
		return notFoundClientKey()
	}
	if err != nil {
		return s.mapAgentErr(agentID, err, -1)
	}
	if changed {
		s.notify()
	}
	s.clients.Invalidate(agentID)
	return nil
}

// ErrClientKeyNotFound distinguishes a missing key from a missing agent in
// RevokeClientKey.
var ErrClientKeyNotFound = fmt.Errorf("client key %w", ErrNotFound)

// loadClient is the client cache's loader: the client record with its
// active public keys, parsed once here so that private_key_jwt
// authentication of a warm client touches no database and parses no key.
func (s *Service) loadClient(ctx context.Context, id string) (ClientRecord, error) {
	rec, err := s.store.LoadClient(ctx, id)
	if err != nil {
		return rec, err
	}
	keys, err := s.store.ActiveClientKeys(ctx, id)
	if err != nil {
		return rec, fmt.Errorf("load client keys %s: %w", id, err)
	}
	for _, k := range keys {
		if k.JWKSURI != nil && !slices.Contains(rec.JWKSURIs, *k.JWKSURI) {
			rec.JWKSURIs = append(rec.JWKSURIs, *k.JWKSURI)
		}
		vk, err := jose.NewVerificationKey(k.JWK)
		if err != nil {
			s.log.WarnContext(ctx, "skipping unusable client key", "client_id", id, "kid", k.KeyID, "err", err)
			continue
		}
		rec.Keys = append(rec.Keys, vk)
	}
	return rec, nil
}

// clientKeySet is a client's registered keys as a jose.KeySet.
type clientKeySet []*jose.VerificationKey

// Key implements jose.KeySet.
func (ks clientKeySet) Key(kid string) (*jose.VerificationKey, bool) {
	for _, k := range ks {
		if k.KID == kid {
			return k, true
		}
	}
	return nil, false
}
