package jose

import (
	"errors"
	"testing"
)

func TestPrivateKeyPKCS8RoundTrip(t *testing.T) {
	t.Parallel()
	ks := testKeySet(t)
	for _, alg := range testAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			orig := testKey(t, alg)
			der, err := MarshalPrivateKey(orig)
			if err != nil {
				t.Fatalf("MarshalPrivateKey(%s) = %v", alg, err)
			}
			// Empty kid must reproduce the thumbprint KID GenerateKey chose.
			k, err := ParsePrivateKey(alg, "", der)
			if err != nil {
				t.Fatalf("ParsePrivateKey(%s) = %v", alg, err)
			}
			if k.KID != orig.KID || k.Alg != alg {
				t.Errorf("ParsePrivateKey(%s) = kid %q alg %q; want %q %q", alg, k.KID, k.Alg, orig.KID, alg)
			}
			if !k.Signer.Public().(publicEqualer).Equal(orig.Signer.Public()) {
				t.Errorf("ParsePrivateKey(%s) public key differs from original", alg)
			}
			s, err := NewSigner(k, "at+jwt")
			if err != nil {
				t.Fatalf("NewSigner = %v", err)
			}
			tok, err := s.Sign(newAccessClaims())
			if err != nil {
				t.Fatalf("Sign = %v", err)
			}
			if err := Verify(tok, ks, testOpts(), nil); err != nil {
				t.Errorf("Verify(token from parsed %s key) = %v; want nil", alg, err)
			}
			named, err := ParsePrivateKey(alg, "custom-kid", der)
			if err != nil || named.KID != "custom-kid" {
				t.Errorf("ParsePrivateKey(%s, custom-kid) = %+v, %v; want KID custom-kid", alg, named, err)
			}
		})
	}
}

func TestParsePrivateKeyRejects(t *testing.T) {
	t.Parallel()
	esDER, err := MarshalPrivateKey(testKey(t, ES256))
	if err != nil {
		t.Fatalf("MarshalPrivateKey: %v", err)
	}
	rsDER, err := MarshalPrivateKey(testKey(t, RS256))
	if err != nil {
		t.Fatalf("MarshalPrivateKey: %v", err)
	}
	tests := []struct {
		name string
		alg  Alg
		der  []byte
		want error
	}{
		{"EC key as RS256", RS256, esDER, ErrAlgorithm},
		{"RSA key as ES256", ES256, rsDER, ErrAlgorithm},
		{"RSA key as EdDSA", EdDSA, rsDER, ErrAlgorithm},
		{"alg none", "none", esDER, ErrAlgorithm},
		{"garbage DER", ES256, []byte{0x30, 0x01}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParsePrivateKey(tc.alg, "k", tc.der)
			if err == nil || k != nil {
				t.Fatalf("ParsePrivateKey(%q) = %v, %v; want nil, error", tc.name, k, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ParsePrivateKey(%q) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
}

func TestGenerateKeyRejects(t *testing.T) {
	t.Parallel()
	for _, alg := range []Alg{"none", "HS256", "RS384", ""} {
		if k, err := GenerateKey(alg); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("GenerateKey(%q) = %v, %v; want %v", alg, k, err, ErrAlgorithm)
		}
	}
}
