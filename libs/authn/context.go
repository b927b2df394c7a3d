// Package authn carries the caller's identity from the gateway to the
// services: the gateway verifies the access token, then signs an internal
// context (subject, organisation, scopes, actor chain, jti, expiry) with a
// key shared only inside the cluster. Services trust that context and nothing
// else a client sends, so a request that bypasses the gateway gets 401.
package authn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Header is the HTTP header that carries the signed context.
const Header = "X-Agentidp-Context"

// MinKeyLen is the shortest accepted shared key, in bytes.
const MinKeyLen = 32

// MaxAge bounds how long a signed context is accepted after the gateway
// signed it, so that a captured header is useless soon after.
const MaxAge = 60 * time.Second

// Identity is who is calling, as the gateway established it.
type Identity struct {
	Subject  string   `json:"sub"`
	OrgID    string   `json:"org"`
	ClientID string   `json:"cid,omitempty"`
	Scopes   []string `json:"scp"`
	Actors   []string `json:"act,omitempty"` // delegation chain, outermost actor first
	JTI      string   `json:"jti,omitempty"`
	// CredentialID and IssuedAtMs identify the credential and the moment
	// the access token was issued, so a service that derives a token from
	// this one (delegation) can bind it to the same revocation keys.
	CredentialID string `json:"cred,omitempty"`
	IssuedAtMs   int64  `json:"iat_ms,omitempty"`
	ExpiresAt    int64  `json:"exp"`           // the access token's expiry
	SignedAt     int64  `json:"iat"`           // when the gateway signed the context
	RequestID    string `json:"rid,omitempty"` // for log correlation
}

// HasScope reports whether the identity holds scope.
func (id Identity) HasScope(scope string) bool {
	return slices.Contains(id.Scopes, scope)
}

// Errors returned by Verify.
var (
	ErrMissing  = errors.New("no internal context")
	ErrInvalid  = errors.New("invalid internal context")
	ErrExpired  = errors.New("internal context expired")
	ErrShortKey = fmt.Errorf("internal context key must be at least %d bytes", MinKeyLen)
)

// Codec signs and verifies internal contexts with a shared HMAC-SHA256 key.
type Codec struct {
	key []byte
	now func() time.Time
}

// NewCodec returns a codec for key, which must be at least MinKeyLen bytes.
func NewCodec(key []byte) (*Codec, error) {
	if len(key) < MinKeyLen {
		return nil, ErrShortKey
	}
	return &Codec{key: slices.Clone(key), now: time.Now}, nil
}

// WithClock returns a copy of the codec that reads time from now (tests).
func (c *Codec) WithClock(now func() time.Time) *Codec {
	cp := *c
	cp.now = now
	return &cp
}

// Sign encodes id as "<base64url payload>.<base64url mac>", stamping SignedAt.
func (c *Codec) Sign(id Identity) (string, error) {
	id.SignedAt = c.now().Unix()
	payload, err := json.Marshal(id)
	if err != nil {
		return "", fmt.Errorf("encode internal context: %w", err)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, enc.EncodedLen(len(payload)), enc.EncodedLen(len(payload))+1+enc.EncodedLen(sha256.Size))
	enc.Encode(buf, payload)
	mac := c.mac(buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, mac)
	return string(buf), nil
}

// Verify checks the signature and freshness of a header value.
func (c *Codec) Verify(value string) (Identity, error) {
	if value == "" {
		return Identity{}, ErrMissing
	}
	if len(value) > 8192 {
		return Identity{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	payloadB64, macB64, ok := strings.Cut(value, ".")
	if !ok {
		return Identity{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	got, err := base64.RawURLEncoding.DecodeString(macB64)
	if err != nil || !hmac.Equal(got, c.mac([]byte(payloadB64))) {
		return Identity{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(payloadB64)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	var id Identity
	if err := json.Unmarshal(payload, &id); err != nil {
		return Identity{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	now := c.now()
	if id.Subject == "" || id.OrgID == "" {
		return Identity{}, fmt.Errorf("%w: subject and organisation required", ErrInvalid)
	}
	if id.ExpiresAt <= now.Unix() {
		return Identity{}, fmt.Errorf("%w: token expired", ErrExpired)
	}
	if signed := time.Unix(id.SignedAt, 0); now.Sub(signed) > MaxAge || signed.Sub(now) > 5*time.Second {
		return Identity{}, fmt.Errorf("%w: signed at %s", ErrExpired, signed.UTC().Format(time.RFC3339))
	}
	return id, nil
}

func (c *Codec) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write(payload)
	return h.Sum(nil)
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity stored by NewContext.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
