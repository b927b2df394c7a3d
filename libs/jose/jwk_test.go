package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
)

// publicEqualer is implemented by all standard library public key types.
type publicEqualer interface {
	Equal(x crypto.PublicKey) bool
}

func TestJWKRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range testAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			k := testKey(t, alg)
			j, err := k.PublicJWK()
			if err != nil {
				t.Fatalf("PublicJWK(%s) = %v", alg, err)
			}
			raw, err := json.Marshal(JWKS{Keys: []JWK{j}})
			if err != nil {
				t.Fatalf("json.Marshal = %v", err)
			}
			var set JWKS
			if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("json.Unmarshal(%s) = %v, %d keys; want nil, 1", raw, err, len(set.Keys))
			}
			if set.Keys[0] != j {
				t.Errorf("JWK round trip = %+v; want %+v", set.Keys[0], j)
			}
			pub, err := set.Keys[0].PublicKey()
			if err != nil {
				t.Fatalf("PublicKey(%s) = %v", alg, err)
			}
			if !pub.(publicEqualer).Equal(k.Signer.Public()) {
				t.Errorf("PublicKey(%s) = %v; want %v", alg, pub, k.Signer.Public())
			}
			tp, err := Thumbprint(j)
			if err != nil || tp != k.KID {
				t.Errorf("Thumbprint(%s) = %q, %v; want KID %q", alg, tp, err, k.KID)
			}
		})
	}
}

func TestThumbprintRFCVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		jwk  JWK
		want string
	}{
		{
			name: "RFC 7638 section 3.1 RSA",
			jwk: JWK{
				Kty: "RSA",
				N:   "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
				E:   "AQAB",
				Alg: "RS256",
				Kid: "2011-04-29",
			},
			want: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
		},
		{
			name: "RFC 8037 appendix A.3 Ed25519",
			jwk:  JWK{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
			want: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Thumbprint(tc.jwk)
			if err != nil || got != tc.want {
				t.Errorf("Thumbprint(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
			}
		})
	}
}

func TestJWKPublicKeyRejects(t *testing.T) {
	t.Parallel()
	ec, err := testKey(t, ES256).PublicJWK()
	if err != nil {
		t.Fatalf("PublicJWK: %v", err)
	}
	ed, err := testKey(t, EdDSA).PublicJWK()
	if err != nil {
		t.Fatalf("PublicJWK: %v", err)
	}
	rs, err := testKey(t, RS256).PublicJWK()
	if err != nil {
		t.Fatalf("PublicJWK: %v", err)
	}
	// Flipping one bit of y moves the point off the curve (for a given x at
	// most two y values are valid, and they differ in many bits).
	yBytes, _ := b64.DecodeString(ec.Y)
	yBytes[31] ^= 1
	offCurve := ec
	offCurve.Y = b64.EncodeToString(yBytes)

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("rsa.GenerateKey: %v", err)
	}
	smallJWK := JWK{Kty: "RSA", N: b64.EncodeToString(small.N.Bytes()), E: "AQAB"}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("ecdsa.GenerateKey: %v", err)
	}
	p384Bytes, _ := p384.PublicKey.Bytes()
	p384JWK := JWK{Kty: "EC", Crv: "P-384", X: b64.EncodeToString(p384Bytes[1:49]), Y: b64.EncodeToString(p384Bytes[49:])}

	with := func(j JWK, f func(*JWK)) JWK { f(&j); return j }
	tests := []struct {
		name string
		jwk  JWK
		want error
	}{
		{"EC point not on curve", offCurve, ErrMalformed},
		{"EC zero point", with(ec, func(j *JWK) { j.X, j.Y = b64.EncodeToString(make([]byte, 32)), b64.EncodeToString(make([]byte, 32)) }), ErrMalformed},
		{"EC short x", with(ec, func(j *JWK) { j.X = j.X[:40] }), ErrMalformed},
		{"EC missing y", with(ec, func(j *JWK) { j.Y = "" }), ErrMalformed},
		{"EC P-384", p384JWK, ErrAlgorithm},
		{"EC padded base64", with(ec, func(j *JWK) { j.X += "=" }), ErrMalformed},
		{"Ed25519 31 bytes", with(ed, func(j *JWK) { j.X = b64.EncodeToString(make([]byte, 31)) }), ErrMalformed},
		{"OKP X25519", with(ed, func(j *JWK) { j.Crv = "X25519" }), ErrAlgorithm},
		{"RSA 1024-bit", smallJWK, ErrMalformed},
		{"RSA exponent 1", with(rs, func(j *JWK) { j.E = "AQ" }), ErrMalformed},
		{"RSA even exponent", with(rs, func(j *JWK) { j.E = "AQAA" }), ErrMalformed},
		{"RSA missing e", with(rs, func(j *JWK) { j.E = "" }), ErrMalformed},
		{"kty oct", JWK{Kty: "oct"}, ErrAlgorithm},
		{"no kty", JWK{}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if pub, err := tc.jwk.PublicKey(); !errors.Is(err, tc.want) {
				t.Errorf("PublicKey(%q) = %v, %v; want %v", tc.name, pub, err, tc.want)
			}
			if _, err := Thumbprint(tc.jwk); !errors.Is(err, tc.want) {
				t.Errorf("Thumbprint(%q) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
	// The unmodified keys must parse, or the table proves nothing.
	for _, j := range []JWK{ec, ed, rs} {
		if _, err := j.PublicKey(); err != nil {
			t.Errorf("PublicKey(%s) = %v; want nil", j.Kty, err)
		}
	}
}

func TestNewStaticKeySetRejects(t *testing.T) {
	t.Parallel()
	ec, _ := testKey(t, ES256).PublicJWK()
	rs, _ := testKey(t, RS256).PublicJWK()
	with := func(j JWK, f func(*JWK)) JWK { f(&j); return j }
	tests := []struct {
		name string
		keys []JWK
		want error
	}{
		{"missing alg", []JWK{with(ec, func(j *JWK) { j.Alg = "" })}, ErrAlgorithm},
		{"alg none", []JWK{with(ec, func(j *JWK) { j.Alg = "none" })}, ErrAlgorithm},
		{"alg HS256", []JWK{with(rs, func(j *JWK) { j.Alg = "HS256" })}, ErrAlgorithm},
		{"alg RS384", []JWK{with(rs, func(j *JWK) { j.Alg = "RS384" })}, ErrAlgorithm},
		{"ES256 alg on RSA key", []JWK{with(rs, func(j *JWK) { j.Alg = "ES256" })}, ErrAlgorithm},
		{"RS256 alg on EC key", []JWK{with(ec, func(j *JWK) { j.Alg = "RS256" })}, ErrAlgorithm},
		{"EdDSA alg on EC key", []JWK{with(ec, func(j *JWK) { j.Alg = "EdDSA" })}, ErrAlgorithm},
		{"use enc", []JWK{with(ec, func(j *JWK) { j.Use = "enc" })}, ErrAlgorithm},
		{"missing kid", []JWK{with(ec, func(j *JWK) { j.Kid = "" })}, ErrMalformed},
		{"duplicate kid", []JWK{ec, with(rs, func(j *JWK) { j.Kid = ec.Kid })}, ErrMalformed},
		{"bad key material", []JWK{with(ec, func(j *JWK) { j.X = "AAAA" })}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if ks, err := NewStaticKeySet(JWKS{Keys: tc.keys}); !errors.Is(err, tc.want) {
				t.Errorf("NewStaticKeySet(%q) = %v, %v; want %v", tc.name, ks, err, tc.want)
			}
		})
	}
	ks, err := NewStaticKeySet(JWKS{Keys: []JWK{ec, rs}})
	if err != nil {
		t.Fatalf("NewStaticKeySet(valid) = %v; want nil", err)
	}
	if k, ok := ks.Key(ec.Kid); !ok || k.Alg != ES256 {
		t.Errorf("Key(%q) = %+v, %v; want ES256 key", ec.Kid, k, ok)
	}
	if k, ok := ks.Key("missing"); ok {
		t.Errorf("Key(%q) = %+v, %v; want nil, false", "missing", k, ok)
	}
}
