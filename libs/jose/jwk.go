package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
)

// b64 is the only base64 variant JOSE allows: URL alphabet, no padding.
// Strict rejects non-zero trailing bits so every value has one encoding.
var b64 = base64.RawURLEncoding.Strict()

// JWK is a public JSON Web Key (RFC 7517). Private members are deliberately
// absent so a JWK value can never leak private key material into a JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

// JWKS is a JSON Web Key Set as served from a jwks_uri.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK encodes a public key (*ecdsa.PublicKey on P-256,
// ed25519.PublicKey or *rsa.PublicKey) as a JWK. alg may be empty; when set
// it must suit the key, so a published JWK never advertises an alg its key
// cannot be used with.
func PublicJWK(k crypto.PublicKey, alg Alg, kid string) (JWK, error) {
	if alg != "" {
		if err := checkKeyAlg(k, alg); err != nil {
			return JWK{}, err
		}
	}
	j := JWK{Kid: kid, Alg: string(alg)}
	switch pub := k.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return JWK{}, fmt.Errorf("%w: only P-256 EC keys are supported", ErrAlgorithm)
		}
		pt, err := pub.Bytes() // 0x04 || X || Y, fixed-width coordinates
		if err != nil {
			return JWK{}, fmt.Errorf("%w: EC public key: %v", ErrMalformed, err)
		}
		j.Kty, j.Crv = "EC", "P-256"
		j.X = b64.EncodeToString(pt[1:33])
		j.Y = b64.EncodeToString(pt[33:65])
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return JWK{}, fmt.Errorf("%w: Ed25519 public key is %d bytes", ErrMalformed, len(pub))
		}
		j.Kty, j.Crv = "OKP", "Ed25519"
		j.X = b64.EncodeToString(pub)
	case *rsa.PublicKey:
		if pub.N == nil || pub.E < 2 {
			return JWK{}, fmt.Errorf("%w: invalid RSA public key", ErrMalformed)
		}
		j.Kty = "RSA"
		j.N = b64.EncodeToString(pub.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	default:
		return JWK{}, fmt.Errorf("%w: unsupported public key type %T", ErrAlgorithm, k)
	}
	return j, nil
}

// PublicKey decodes and validates the key material: EC keys must be P-256
// points on the curve, Ed25519 keys 32 bytes, RSA moduli 2048..8192 bits
// with a sane odd exponent. It does not check Alg or Use; key sets do that.
func (j JWK) PublicKey() (crypto.PublicKey, error) {
	switch j.Kty {
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("%w: unsupported EC curve %q", ErrAlgorithm, j.Crv)
		}
		x, err := decodeFixed("x", j.X, 32)
		if err != nil {
			return nil, err
		}
		y, err := decodeFixed("y", j.Y, 32)
		if err != nil {
			return nil, err
		}
		pt := make([]byte, 0, 65)
		pt = append(append(append(pt, 4), x...), y...)
		// ParseUncompressedPublicKey rejects points not on the curve and the
		// point at infinity, defeating invalid-curve attacks.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, fmt.Errorf("%w: EC point: %v", ErrMalformed, err)
		}
		return pub, nil
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: unsupported OKP curve %q", ErrAlgorithm, j.Crv)
		}
		x, err := decodeFixed("x", j.X, ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(x), nil
	case "RSA":
		n, err := b64.DecodeString(j.N)
		if err != nil {
			return nil, fmt.Errorf("%w: RSA n: %v", ErrMalformed, err)
		}
		e, err := b64.DecodeString(j.E)
		if err != nil {
			return nil, fmt.Errorf("%w: RSA e: %v", ErrMalformed, err)
		}
		// Exponents beyond 4 bytes are not used in practice and would
		// overflow rsa.PublicKey.E on some platforms.
		if len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: RSA e of %d bytes", ErrMalformed, len(e))
		}
		var ev int64
		for _, b := range e {
			ev = ev<<8 | int64(b)
		}
		if ev < 3 || ev%2 == 0 || ev > 1<<31-1 {
			return nil, fmt.Errorf("%w: RSA exponent %d", ErrMalformed, ev)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("%w: RSA modulus of %d bits outside [%d, %d]", ErrMalformed, bits, minRSABits, maxRSABits)
		}
		return pub, nil
	case "":
		return nil, fmt.Errorf("%w: JWK without kty", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: unsupported kty %q", ErrAlgorithm, j.Kty)
	}
}

// decodeFixed decodes a base64url member that must be exactly size bytes.
func decodeFixed(name, s string, size int) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: JWK %s: %v", ErrMalformed, name, err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: JWK %s is %d bytes, want %d", ErrMalformed, name, len(b), size)
	}
	return b, nil
}

// Thumbprint computes the RFC 7638 JWK thumbprint (base64url SHA-256 of the
// required members in lexicographic order). The key is validated and
// re-encoded first, so equivalent keys (e.g. with a leading zero byte in n)
// get the same thumbprint and invalid keys get none.
func Thumbprint(j JWK) (string, error) {
	pub, err := j.PublicKey()
	if err != nil {
		return "", err
	}
	c, err := PublicJWK(pub, "", "")
	if err != nil {
		return "", err
	}
	// Members are base64url strings or fixed names, so no JSON escaping is
	// needed and building the canonical form by hand is exact.
	var canon string
	switch c.Kty {
	case "EC":
		canon = `{"crv":"` + c.Crv + `","kty":"EC","x":"` + c.X + `","y":"` + c.Y + `"}`
	case "OKP":
		canon = `{"crv":"` + c.Crv + `","kty":"OKP","x":"` + c.X + `"}`
	case "RSA":
		canon = `{"e":"` + c.E + `","kty":"RSA","n":"` + c.N + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:]), nil
}
