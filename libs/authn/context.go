// Package authn carries the caller's identity from the gateway to the
// services: the gateway verifies the access token, then signs an internal
// context (subject, organisation, scopes, actor chain, jti, expiry, and the
// method and path of the one request it forwards) with a key shared only
// inside the cluster. Services trust that context and nothing else a client
// sends, so a request that bypasses the gateway gets 401, and a captured
// context is good only for the route it was signed for.
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
	"strconv"
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
	// Method and Path are the request the context was signed for: the
	// method and the upstream path as forwarded (no query string). Verify
	// refuses the context on any other route, so a header captured from
	// one call cannot be replayed on another route or service.
	Method string `json:"m"`
	Path   string `json:"p"`
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
	// ErrWrongRoute: the context was signed for another method or path.
	ErrWrongRoute = errors.New("internal context issued for another route")
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
// id.Method and id.Path must name the request the context travels on (the
// path as the receiving service sees it, without the query string);
// Verify refuses it anywhere else.
func (c *Codec) Sign(id Identity) (string, error) {
	if id.Method == "" || id.Path == "" {
		return "", errors.New("sign internal context: method and path required")
	}
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

// Verify checks the signature and freshness of a header value, and that it
// was signed for this request's method and path (r.URL.Path, as received).
func (c *Codec) Verify(value, method, path string) (Identity, error) {
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
	if id.Method != method || id.Path != path {
		return Identity{}, fmt.Errorf("%w: signed for %.16s %.256q", ErrWrongRoute, id.Method, id.Path)
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

// ClientAddrHeader carries, on the public routes the gateway forwards, the
// client's IP address as the gateway saw it (the TCP peer), signed so that
// a service can tell it from a value a client made up: services never trust
// X-Forwarded-For, which anyone reaching them directly can set.
const ClientAddrHeader = "X-Agentidp-Client-Addr"

// SignClientAddr returns the ClientAddrHeader value for addr:
// "<addr> <unix seconds> <base64url mac>".
func (c *Codec) SignClientAddr(addr string) string {
	buf := make([]byte, 0, len(addr)+64)
	buf = append(buf, addr...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, c.now().Unix(), 10)
	mac := c.addrMAC(buf)
	buf = append(buf, ' ')
	buf = base64.RawURLEncoding.AppendEncode(buf, mac)
	return string(buf)
}

// VerifyClientAddr returns the address in a ClientAddrHeader value that
// this codec's key signed within MaxAge.
func (c *Codec) VerifyClientAddr(value string) (string, error) {
	if value == "" {
		return "", ErrMissing
	}
	if len(value) > 256 {
		return "", fmt.Errorf("%w: too long", ErrInvalid)
	}
	i := strings.LastIndexByte(value, ' ')
	if i < 0 {
		return "", fmt.Errorf("%w: malformed", ErrInvalid)
	}
	signed, macB64 := value[:i], value[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(macB64)
	if err != nil || !hmac.Equal(got, c.addrMAC([]byte(signed))) {
		return "", fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	addr, ts, ok := strings.Cut(signed, " ")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || addr == "" {
		return "", fmt.Errorf("%w: malformed", ErrInvalid)
	}
	now := c.now()
	if at := time.Unix(sec, 0); now.Sub(at) > MaxAge || at.Sub(now) > 5*time.Second {
		return "", fmt.Errorf("%w: signed at %s", ErrExpired, at.UTC().Format(time.RFC3339))
	}
	return addr, nil
}

// addrMAC is domain-separated from the context's MAC, so neither value can
// pass for the other.
func (c *Codec) addrMAC(signed []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte("client-addr\x00"))
	h.Write(signed)
	return h.Sum(nil)
}
