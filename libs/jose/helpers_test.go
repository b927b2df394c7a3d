package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed validation time used by tests.
var testNow = time.Unix(1_800_000_000, 0)

const (
	testIssuer   = "https://idp.agentidp.test"
	testAudience = "https://api.agentidp.test"
)

// accessClaims mirrors an RFC 9068 access token as the token service issues it.
type accessClaims struct {
	RegisteredClaims
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope,omitempty"`
	AgentID  string   `json:"agent_id,omitempty"`
	Roles    []string `json:"roles,omitempty"`
}

func newAccessClaims() accessClaims {
	return accessClaims{
		RegisteredClaims: RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   "agent:7c1f0b3e-2d9a-4f6e-9d59-2f0c3a8e1b44",
			Audience:  Audience{testAudience},
			ExpiresAt: testNow.Add(5 * time.Minute).Unix(),
			IssuedAt:  testNow.Unix(),
			ID:        "01JDQ6Z8V6M4W2XK9R3T5Y7B1C",
		},
		ClientID: "agent-runner-prod",
		Scope:    "tools:read tools:invoke memory:write",
		AgentID:  "7c1f0b3e-2d9a-4f6e-9d59-2f0c3a8e1b44",
		Roles:    []string{"agent", "billing:standard"},
	}
}

var testAlgs = []Alg{ES256, EdDSA, RS256}

// keyFixtures generates one key per alg once; RSA generation is slow.
var keyFixtures = sync.OnceValues(func() (map[Alg]*PrivateKey, error) {
	m := make(map[Alg]*PrivateKey)
	for _, alg := range testAlgs {
		k, err := GenerateKey(alg)
		if err != nil {
			return nil, err
		}
		m[alg] = k
	}
	return m, nil
})

func testKey(tb testing.TB, alg Alg) *PrivateKey {
	tb.Helper()
	m, err := keyFixtures()
	if err != nil {
		tb.Fatalf("GenerateKey fixtures: %v", err)
	}
	return m[alg]
}

// testKeySet holds the public halves of all fixture keys.
func testKeySet(tb testing.TB) *StaticKeySet {
	tb.Helper()
	var jwks JWKS
	for _, alg := range testAlgs {
		j, err := testKey(tb, alg).PublicJWK()
		if err != nil {
			tb.Fatalf("PublicJWK(%s): %v", alg, err)
		}
		jwks.Keys = append(jwks.Keys, j)
	}
	ks, err := NewStaticKeySet(jwks)
	if err != nil {
		tb.Fatalf("NewStaticKeySet: %v", err)
	}
	return ks
}

func testOpts() VerifyOptions {
	return VerifyOptions{Issuer: testIssuer, Audience: testAudience, Typ: "at+jwt", Now: testNow}
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal(%v): %v", v, err)
	}
	return string(b)
}

// claimsJSON returns the default access-token claims as JSON with mods
// applied; a nil mod value deletes the claim.
func claimsJSON(tb testing.TB, mods map[string]any) string {
	tb.Helper()
	m := map[string]any{
		"iss":       testIssuer,
		"sub":       "agent:1",
		"aud":       testAudience,
		"exp":       testNow.Add(time.Minute).Unix(),
		"iat":       testNow.Unix(),
		"jti":       "id-1",
		"client_id": "c1",
	}
	for k, v := range mods {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return mustJSON(tb, m)
}

// headerJSON returns a header for k (alg, kid, typ at+jwt) with mods applied.
func headerJSON(tb testing.TB, k *PrivateKey, mods map[string]any) string {
	tb.Helper()
	m := map[string]any{"alg": string(k.Alg), "kid": k.KID, "typ": "at+jwt"}
	for key, v := range mods {
		if v == nil {
			delete(m, key)
			continue
		}
		m[key] = v
	}
	return mustJSON(tb, m)
}

// rawSignature signs input with k independently of Signer, so crafted tokens
// do not depend on the code under test.
func rawSignature(tb testing.TB, k *PrivateKey, input []byte) []byte {
	tb.Helper()
	digest := sha256.Sum256(input)
	switch priv := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
		if err != nil {
			tb.Fatalf("ecdsa.Sign: %v", err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, input)
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:])
		if err != nil {
			tb.Fatalf("rsa.SignPKCS1v15: %v", err)
		}
		return sig
	}
	tb.Fatalf("rawSignature: unsupported key %T", k.Signer)
	return nil
}

// craft builds a token from raw header and payload JSON signed by k.
func craft(tb testing.TB, k *PrivateKey, header, payload string) string {
	tb.Helper()
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	return input + "." + enc(rawSignature(tb, k, []byte(input)))
}
