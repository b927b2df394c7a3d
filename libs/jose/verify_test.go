package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	for _, alg := range testAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			s, err := NewSigner(testKey(t, alg), "at+jwt")
			if err != nil {
				t.Fatalf("NewSigner(%s) = %v; want nil", alg, err)
			}
			want := newAccessClaims()
			tok, err := s.Sign(want)
			if err != nil {
				t.Fatalf("Sign(%s) = %v; want nil", alg, err)
			}

			hdr, err := ParseUnverifiedHeader(tok)
			wantHdr := Header{Alg: alg, Kid: testKey(t, alg).KID, Typ: "at+jwt"}
			if err != nil || hdr != wantHdr {
				t.Errorf("ParseUnverifiedHeader(%s) = %+v, %v; want %+v, nil", alg, hdr, err, wantHdr)
			}

			// Embedded RegisteredClaims: single-decode path.
			var got accessClaims
			if err := Verify(tok, ks, testOpts(), &got); err != nil {
				t.Fatalf("Verify(%s) = %v; want nil", alg, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Verify(%s) claims = %+v; want %+v", alg, got, want)
			}

			// Claims without RegisteredClaims: double-decode path.
			var m map[string]any
			if err := Verify(tok, ks, testOpts(), &m); err != nil {
				t.Fatalf("Verify(%s, map) = %v; want nil", alg, err)
			}
			if m["client_id"] != want.ClientID || m["aud"] != testAudience {
				t.Errorf("Verify(%s, map) claims = %v; want client_id %q and aud %q", alg, m, want.ClientID, testAudience)
			}

			// nil claims still validates the registered claims.
			opts := testOpts()
			opts.Now = testNow.Add(time.Hour)
			if err := Verify(tok, ks, opts, nil); !errors.Is(err, ErrExpired) {
				t.Errorf("Verify(%s, nil claims, 1h later) = %v; want %v", alg, err, ErrExpired)
			}
		})
	}
}

// TestVerifyWrongKeySameKID proves the signature is actually checked: a
// token signed by a different key of the same alg but claiming a known kid
// must fail.
func TestVerifyWrongKeySameKID(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	for _, alg := range testAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			other, err := GenerateKey(alg)
			if err != nil {
				t.Fatalf("GenerateKey(%s) = %v", alg, err)
			}
			other.KID = testKey(t, alg).KID
			s, err := NewSigner(other, "at+jwt")
			if err != nil {
				t.Fatalf("NewSigner = %v", err)
			}
			tok, err := s.Sign(newAccessClaims())
			if err != nil {
				t.Fatalf("Sign = %v", err)
			}
			if err := Verify(tok, ks, testOpts(), nil); !errors.Is(err, ErrSignature) {
				t.Errorf("Verify(%s token from foreign key) = %v; want %v", alg, err, ErrSignature)
			}
		})
	}
}

// hs256 builds an HS256 token with the given HMAC secret, as in the classic
// key-confusion attack where the secret is the verifier's public key.
func hs256(t *testing.T, kid string, secret []byte) string {
	t.Helper()
	input := enc([]byte(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`)) + "." + enc([]byte(claimsJSON(t, nil)))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + enc(mac.Sum(nil))
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	es, ed, rs := testKey(t, ES256), testKey(t, EdDSA), testKey(t, RS256)
	valid := craft(t, es, headerJSON(t, es, nil), claimsJSON(t, nil))
	parts := strings.Split(valid, ".")

	rsaPub := rs.Signer.Public()
	pkix, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	rsJWK, err := rs.PublicJWK()
	if err != nil {
		t.Fatalf("PublicJWK: %v", err)
	}
	jwkJSON := []byte(mustJSON(t, rsJWK))

	// ASN.1 DER signature by the right key over the right input.
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, es.Signer.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		t.Fatalf("SignASN1: %v", err)
	}

	// Same bytes, but the last base64 character carries non-zero padding
	// bits (86 chars encode 64 bytes with 4 spare bits).
	sigSeg := parts[2]
	last := strings.IndexByte(b64alphabet, sigSeg[len(sigSeg)-1])
	nonCanonical := parts[0] + "." + parts[1] + "." + sigSeg[:len(sigSeg)-1] + string(b64alphabet[last|1])

	bigClaims := claimsJSON(t, map[string]any{"pad": strings.Repeat("x", DefaultMaxTokenSize)})

	tests := []struct {
		name  string
		token string
		opts  func(*VerifyOptions)
		want  error
	}{
		{"tampered payload", parts[0] + "." + enc([]byte(claimsJSON(t, map[string]any{"sub": "admin"}))) + "." + parts[2], nil, ErrSignature},
		{"signature over other input", parts[0] + "." + parts[1] + "." + enc(rawSignature(t, es, []byte("other"))), nil, ErrSignature},
		{"flipped signature bit", parts[0] + "." + parts[1] + "." + enc(flipBit(t, parts[2])), nil, ErrSignature},
		{"alg none empty sig", enc([]byte(`{"alg":"none","kid":"`+es.KID+`"}`)) + "." + parts[1] + ".", nil, ErrAlgorithm},
		{"alg none no kid", enc([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", nil, ErrAlgorithm},
		{"alg NONE", enc([]byte(`{"alg":"NONE","kid":"`+es.KID+`"}`)) + "." + parts[1] + ".", nil, ErrAlgorithm},
		{"HS256 keyed with RSA public DER", hs256(t, rs.KID, pkix), nil, ErrAlgorithm},
		{"HS256 keyed with RSA public PEM", hs256(t, rs.KID, pemBytes), nil, ErrAlgorithm},
		{"HS256 keyed with RSA JWK JSON", hs256(t, rs.KID, jwkJSON), nil, ErrAlgorithm},
		{"ES256 header on RSA key", craft(t, es, headerJSON(t, es, map[string]any{"kid": rs.KID}), claimsJSON(t, nil)), nil, ErrAlgorithm},
		{"RS256 header on EC key", craft(t, rs, headerJSON(t, rs, map[string]any{"kid": es.KID}), claimsJSON(t, nil)), nil, ErrAlgorithm},
		{"EdDSA header on EC key", craft(t, ed, headerJSON(t, ed, map[string]any{"kid": es.KID}), claimsJSON(t, nil)), nil, ErrAlgorithm},
		{"ES256 ASN.1 signature", parts[0] + "." + parts[1] + "." + enc(asn1Sig), nil, ErrSignature},
		{"ES256 signature with zero-padded S", parts[0] + "." + parts[1] + "." + enc(zeroPadS(t, parts[2])), nil, ErrSignature},
		{"ES256 signature too long", parts[0] + "." + parts[1] + "." + enc(append(rawSignature(t, es, []byte(parts[0]+"."+parts[1])), 0)), nil, ErrSignature},
		{"wrong issuer", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"iss": "https://evil.test"})), nil, ErrIssuer},
		{"wrong audience", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"aud": "https://other.test"})), nil, ErrAudience},
		{"audience array without expected", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"aud": []string{"a", "b"}})), nil, ErrAudience},
		{"missing aud", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"aud": nil})), nil, ErrAudience},
		{"missing exp", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": nil})), nil, ErrMissingExp},
		{"expired", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": testNow.Add(-time.Second).Unix()})), nil, ErrExpired},
		{"exp equals now", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": testNow.Unix()})), nil, ErrExpired},
		{"expired beyond leeway", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": testNow.Add(-time.Minute).Unix()})), func(o *VerifyOptions) { o.Leeway = 30 * time.Second }, ErrExpired},
		{"nbf in future", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"nbf": testNow.Add(time.Second).Unix()})), nil, ErrNotYetValid},
		{"iat in future", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"iat": testNow.Add(time.Minute).Unix()})), nil, ErrNotYetValid},
		{"exp not a number", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": "soon"})), nil, ErrMalformed},
		{"payload not JSON", craft(t, es, headerJSON(t, es, nil), "not json"), nil, ErrMalformed},
		{"unknown kid", craft(t, es, headerJSON(t, es, map[string]any{"kid": "nope"}), claimsJSON(t, nil)), nil, ErrUnknownKey},
		{"missing kid", craft(t, es, headerJSON(t, es, map[string]any{"kid": nil}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"wrong typ", craft(t, es, headerJSON(t, es, map[string]any{"typ": "JWT"}), claimsJSON(t, nil)), nil, ErrTyp},
		{"missing typ", craft(t, es, headerJSON(t, es, map[string]any{"typ": nil}), claimsJSON(t, nil)), nil, ErrTyp},
		{"crit header", craft(t, es, headerJSON(t, es, map[string]any{"crit": []string{"exp"}, "exp": 1}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"embedded jwk header", craft(t, es, headerJSON(t, es, map[string]any{"jwk": rsJWK}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"jwk header null", craft(t, es, headerJSON(t, es, map[string]any{"jwk": json.RawMessage("null")}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"jku header", craft(t, es, headerJSON(t, es, map[string]any{"jku": "https://evil.test/jwks"}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"x5u header", craft(t, es, headerJSON(t, es, map[string]any{"x5u": "https://evil.test/cert"}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"x5c header", craft(t, es, headerJSON(t, es, map[string]any{"x5c": []string{"MIIB"}}), claimsJSON(t, nil)), nil, ErrMalformed},
		{"header not JSON object", craft(t, es, `["ES256"]`, claimsJSON(t, nil)), nil, ErrMalformed},
		{"four parts", valid + "." + parts[2], nil, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], nil, ErrMalformed},
		{"empty", "", nil, ErrMalformed},
		{"empty payload", parts[0] + ".." + parts[2], nil, ErrMalformed},
		{"padded signature", valid + "==", nil, ErrMalformed},
		{"padded header", enc([]byte(headerJSON(t, es, nil))) + "=." + parts[1] + "." + parts[2], nil, ErrMalformed},
		{"std base64 alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+/", nil, ErrMalformed},
		{"newline in signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], nil, ErrMalformed},
		{"non-canonical base64 bits", nonCanonical, nil, ErrMalformed},
		{"oversized", craft(t, es, headerJSON(t, es, nil), bigClaims), nil, ErrMalformed},
		{"custom size cap", valid, func(o *VerifyOptions) { o.MaxTokenSize = len(valid) - 1 }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := testOpts()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			var got accessClaims
			if err := Verify(tc.token, ks, opts, &got); !errors.Is(err, tc.want) {
				t.Errorf("Verify(%q) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}

	// Guard against the table passing vacuously: the untouched token and
	// the oversized token under a larger cap must verify.
	if err := Verify(valid, ks, testOpts(), nil); err != nil {
		t.Errorf("Verify(valid) = %v; want nil", err)
	}
	opts := testOpts()
	opts.MaxTokenSize = 4 * DefaultMaxTokenSize
	if err := Verify(craft(t, es, headerJSON(t, es, nil), bigClaims), ks, opts, nil); err != nil {
		t.Errorf("Verify(oversized, raised cap) = %v; want nil", err)
	}
}

const b64alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	es, ed := testKey(t, ES256), testKey(t, EdDSA)
	tests := []struct {
		name    string
		token   string
		opts    func(*VerifyOptions)
		wantAud Audience
	}{
		{"aud string", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, nil)), nil, Audience{testAudience}},
		{"aud array containing expected", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"aud": []string{"https://x.test", testAudience}})), nil, Audience{"https://x.test", testAudience}},
		{"expired within leeway", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()})), func(o *VerifyOptions) { o.Leeway = 30 * time.Second }, Audience{testAudience}},
		{"nbf within leeway", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"nbf": testNow.Add(10 * time.Second).Unix()})), func(o *VerifyOptions) { o.Leeway = 30 * time.Second }, Audience{testAudience}},
		{"nbf now", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"nbf": testNow.Unix()})), nil, Audience{testAudience}},
		{"typ with application prefix and case", craft(t, ed, headerJSON(t, ed, map[string]any{"typ": "application/AT+JWT"}), claimsJSON(t, nil)), nil, Audience{testAudience}},
		{"no issuer or audience configured", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, map[string]any{"iss": "x", "aud": "y"})), func(o *VerifyOptions) { o.Issuer, o.Audience = "", "" }, Audience{"y"}},
		{"unknown non-critical header", craft(t, es, headerJSON(t, es, map[string]any{"cty": "json", "x-trace": 1}), claimsJSON(t, nil)), nil, Audience{testAudience}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := testOpts()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			var got accessClaims
			if err := Verify(tc.token, ks, opts, &got); err != nil {
				t.Fatalf("Verify(%q) = %v; want nil", tc.name, err)
			}
			if !reflect.DeepEqual(got.Audience, tc.wantAud) {
				t.Errorf("Verify(%q) aud = %q; want %q", tc.name, got.Audience, tc.wantAud)
			}
		})
	}
}

// kmsSigner hides the concrete key type, forcing Signer onto the generic
// crypto.Signer path (ASN.1 → R||S conversion for ES256).
type kmsSigner struct{ inner crypto.Signer }

func (k kmsSigner) Public() crypto.PublicKey { return k.inner.Public() }
func (k kmsSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return k.inner.Sign(r, d, o)
}

func TestSignExternalSigner(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	for _, alg := range testAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			k := *testKey(t, alg)
			k.Signer = kmsSigner{k.Signer}
			s, err := NewSigner(&k, "at+jwt")
			if err != nil {
				t.Fatalf("NewSigner(%s) = %v", alg, err)
			}
			// ECDSA DER lengths vary with leading zeros; sign enough times to
			// exercise short R/S encodings.
			for i := range 50 {
				tok, err := s.Sign(newAccessClaims())
				if err != nil {
					t.Fatalf("Sign(%s) #%d = %v; want nil", alg, i, err)
				}
				if err := Verify(tok, ks, testOpts(), nil); err != nil {
					t.Fatalf("Verify(%s) #%d = %v; want nil", alg, i, err)
				}
			}
		})
	}
}

func TestNewSignerRejects(t *testing.T) {
	t.Parallel()
	es, rs := testKey(t, ES256), testKey(t, RS256)
	tests := []struct {
		name string
		key  *PrivateKey
		want error
	}{
		{"nil key", nil, nil},
		{"no kid", &PrivateKey{Alg: ES256, Signer: es.Signer}, nil},
		{"alg mismatch", &PrivateKey{KID: "k", Alg: RS256, Signer: es.Signer}, ErrAlgorithm},
		{"EdDSA alg on RSA key", &PrivateKey{KID: "k", Alg: EdDSA, Signer: rs.Signer}, ErrAlgorithm},
		{"alg none", &PrivateKey{KID: "k", Alg: "none", Signer: es.Signer}, ErrAlgorithm},
		{"alg HS256", &PrivateKey{KID: "k", Alg: "HS256", Signer: es.Signer}, ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewSigner(tc.key, "at+jwt")
			if err == nil || s != nil {
				t.Fatalf("NewSigner(%q) = %v, %v; want nil, error", tc.name, s, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("NewSigner(%q) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
}

func TestParseUnverifiedHeader(t *testing.T) {
	t.Parallel()
	es := testKey(t, ES256)
	tests := []struct {
		name    string
		token   string
		want    Header
		wantErr error
	}{
		{"valid", craft(t, es, headerJSON(t, es, nil), claimsJSON(t, nil)), Header{Alg: ES256, Kid: es.KID, Typ: "at+jwt"}, nil},
		{"unsupported alg still parsed", enc([]byte(`{"alg":"HS256","kid":"k"}`)) + ".e30.", Header{Alg: "HS256", Kid: "k"}, nil},
		{"embedded jwk", enc([]byte(`{"alg":"ES256","kid":"k","jwk":{}}`)) + ".e30.", Header{}, ErrMalformed},
		{"two parts", "e30.e30", Header{}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseUnverifiedHeader(tc.token)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("ParseUnverifiedHeader(%q) = %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// flipBit decodes a base64url segment and flips one bit in the middle.
func flipBit(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := b64.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode %q: %v", seg, err)
	}
	b[len(b)/2] ^= 0x01
	return b
}

// zeroPadS turns a valid R||S signature into R||0^32||S: numerically the
// same scalars, so only the exact-length rule rejects it.
func zeroPadS(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := b64.DecodeString(seg)
	if err != nil || len(b) != 64 {
		t.Fatalf("decode %q: %d bytes, %v", seg, len(b), err)
	}
	out := append(append(append([]byte{}, b[:32]...), make([]byte, 32)...), b[32:]...)
	return out
}

// keySetFunc adapts a function to KeySet for misbehaving-implementation tests.
type keySetFunc func(kid string) (*VerificationKey, bool)

func (f keySetFunc) Key(kid string) (*VerificationKey, bool) { return f(kid) }

func TestVerifyMisbehavingKeySet(t *testing.T) {
	t.Parallel()
	es, rs := testKey(t, ES256), testKey(t, RS256)
	tok := craft(t, es, headerJSON(t, es, nil), claimsJSON(t, nil))
	tests := []struct {
		name string
		keys KeySet
		want error
	}{
		{"nil key reported found", keySetFunc(func(string) (*VerificationKey, bool) { return nil, true }), ErrUnknownKey},
		{"ES256 key holding RSA public key", keySetFunc(func(kid string) (*VerificationKey, bool) {
			return &VerificationKey{KID: kid, Alg: ES256, Public: rs.Signer.Public()}, true
		}), ErrAlgorithm},
		{"ES256 key with nil public key", keySetFunc(func(kid string) (*VerificationKey, bool) {
			return &VerificationKey{KID: kid, Alg: ES256}, true
		}), ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := Verify(tok, tc.keys, testOpts(), nil); !errors.Is(err, tc.want) {
				t.Errorf("Verify(%q) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
	if err := Verify(tok, nil, testOpts(), nil); err == nil {
		t.Errorf("Verify(nil key set) = nil; want error")
	}
}

// TestConcurrentSignVerify shares one Signer and key set across goroutines
// so -race checks the pooled buffers and the immutable Signer.
func TestConcurrentSignVerify(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	s, err := NewSigner(testKey(t, EdDSA), "at+jwt")
	if err != nil {
		t.Fatalf("NewSigner = %v", err)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				c := newAccessClaims()
				c.ID = string(rune('a'+g)) + string(rune('a'+i%26))
				tok, err := s.Sign(&c)
				if err != nil {
					errs <- err
					return
				}
				var got accessClaims
				if err := Verify(tok, ks, testOpts(), &got); err != nil {
					errs <- err
					return
				}
				if got.ID != c.ID {
					errs <- errors.New("claims mixed up between goroutines: got jti " + got.ID + ", want " + c.ID)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Sign/Verify = %v; want nil", err)
		}
	}
}
