package jose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// RegisteredClaims holds the RFC 7519 registered claims that Verify checks.
// Embed it in a service's claims struct: Verify then decodes the payload only
// once (see Registered).
//
// Times are integer NumericDates (seconds); fractional values are rejected
// as malformed, which AgentIdP issuers never produce.
type RegisteredClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud,omitempty"`
	ExpiresAt int64    `json:"exp"`
	NotBefore int64    `json:"nbf,omitempty"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
}

// Registered returns c itself. Because the method is promoted through
// embedding, any claims struct embedding RegisteredClaims satisfies the
// interface Verify uses to avoid a second JSON decode on the hot path.
func (c *RegisteredClaims) Registered() *RegisteredClaims { return c }

// registeredClaimer is implemented by claims structs embedding
// RegisteredClaims.
type registeredClaimer interface {
	Registered() *RegisteredClaims
}

// Audience is the aud claim. RFC 7519 allows a single string or an array,
// so it decodes both, and encodes a single audience as a plain string for
// compatibility with verifiers that only accept that form.
type Audience []string

// Contains reports whether aud lists want exactly (case-sensitive, as
// RFC 7519 StringOrURI comparison requires).
func (a Audience) Contains(want string) bool {
	return slices.Contains(a, want)
}

// MarshalJSON encodes one audience as a string and several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string, an array of strings, or null.
func (a *Audience) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*a = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		// Fast path for the usual single plain-ASCII audience: encoding/json
		// has already validated the value, so without escapes or non-ASCII
		// bytes the contents are the string. This skips a nested decoder on
		// the gateway's hot path.
		if inner := data[1 : len(data)-1]; plainASCII(inner) {
			*a = Audience{string(inner)}
			return nil
		}
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("aud: %w", err)
		}
		*a = Audience{s}
		return nil
	default:
		var ss []string
		if err := json.Unmarshal(data, &ss); err != nil {
			return fmt.Errorf("aud must be a string or array of strings: %w", err)
		}
		*a = ss
		return nil
	}
}

// plainASCII reports whether b holds only printable ASCII other than the
// JSON escape and quote characters.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return false
		}
	}
	return true
}
