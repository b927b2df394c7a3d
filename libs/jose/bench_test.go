package jose

import "testing"

func benchmarkSign(b *testing.B, alg Alg) {
	s, err := NewSigner(testKey(b, alg), "at+jwt")
	if err != nil {
		b.Fatalf("NewSigner(%s) = %v", alg, err)
	}
	claims := newAccessClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(&claims); err != nil {
			b.Fatalf("Sign(%s) = %v", alg, err)
		}
	}
}

func benchmarkVerify(b *testing.B, alg Alg) {
	ks := testKeySet(b)
	s, err := NewSigner(testKey(b, alg), "at+jwt")
	if err != nil {
		b.Fatalf("NewSigner(%s) = %v", alg, err)
	}
	claims := newAccessClaims()
	tok, err := s.Sign(&claims)
	if err != nil {
		b.Fatalf("Sign(%s) = %v", alg, err)
	}
	opts := testOpts()
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		var got accessClaims
		if err := Verify(tok, ks, opts, &got); err != nil {
			b.Fatalf("Verify(%s) = %v", alg, err)
		}
	}
}

func BenchmarkSignES256(b *testing.B)   { benchmarkSign(b, ES256) }
func BenchmarkSignEdDSA(b *testing.B)   { benchmarkSign(b, EdDSA) }
func BenchmarkSignRS256(b *testing.B)   { benchmarkSign(b, RS256) }
func BenchmarkVerifyES256(b *testing.B) { benchmarkVerify(b, ES256) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchmarkVerify(b, EdDSA) }
func BenchmarkVerifyRS256(b *testing.B) { benchmarkVerify(b, RS256) }
