package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Alg is a JWS signature algorithm name (RFC 7518 / RFC 8037).
type Alg string

// The only algorithms this package accepts. "none" and the HMAC algorithms
// are deliberately absent: a verifier holding only public keys must never be
// able to accept them.
const (
	// ES256 is ECDSA on P-256 with SHA-256, 64-byte R||S signatures.
	ES256 Alg = "ES256"
	// EdDSA is Ed25519 (RFC 8037).
	EdDSA Alg = "EdDSA"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256.
	RS256 Alg = "RS256"
)

const (
	// minRSABits is the smallest RSA modulus accepted anywhere (RFC 7518 §3.3).
	minRSABits = 2048
	// maxRSABits bounds verification cost; larger moduli are a DoS vector
	// against the gateway and no real issuer uses them.
	maxRSABits = 8192
	// rsaGenBits is the modulus size GenerateKey uses for RS256.
	rsaGenBits = 2048
)

// supported reports whether a is one of the accepted algorithms.
func (a Alg) supported() bool {
	return a == ES256 || a == EdDSA || a == RS256
}

// PrivateKey is a signing key together with the identifiers published for it.
type PrivateKey struct {
	// KID is the key ID placed in token headers and the JWKS.
	KID string
	// Alg is the single algorithm this key signs with.
	Alg Alg
	// Signer holds the private key. It is usually *ecdsa.PrivateKey,
	// ed25519.PrivateKey or *rsa.PrivateKey, but any crypto.Signer with a
	// matching public key (e.g. a KMS client) works.
	Signer crypto.Signer
	// NotBefore and NotAfter are optional rotation metadata; this package
	// does not enforce them.
	NotBefore, NotAfter time.Time
}

// GenerateKey creates a fresh key for alg (P-256, Ed25519 or RSA-2048) whose
// KID is the RFC 7638 thumbprint of its public key, so the KID is stable and
// derivable by anyone holding the public JWK.
func GenerateKey(alg Alg) (*PrivateKey, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		signer, err = rsa.GenerateKey(rand.Reader, rsaGenBits)
	default:
		return nil, fmt.Errorf("%w: cannot generate key for alg %q", ErrAlgorithm, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("jose: generate %s key: %w", alg, err)
	}
	return newPrivateKey(alg, "", signer)
}

// newPrivateKey validates that signer suits alg and fills in a thumbprint
// KID when kid is empty.
func newPrivateKey(alg Alg, kid string, signer crypto.Signer) (*PrivateKey, error) {
	if err := checkKeyAlg(signer.Public(), alg); err != nil {
		return nil, err
	}
	if kid == "" {
		jwk, err := PublicJWK(signer.Public(), alg, "")
		if err != nil {
			return nil, err
		}
		if kid, err = Thumbprint(jwk); err != nil {
			return nil, err
		}
	}
	return &PrivateKey{KID: kid, Alg: alg, Signer: signer}, nil
}

// PublicJWK returns the public half of k as a JWK with kid, alg and use=sig
// set, ready to publish in a JWKS.
func (k *PrivateKey) PublicJWK() (JWK, error) {
	if k == nil || k.Signer == nil {
		return JWK{}, errors.New("jose: nil private key")
	}
	j, err := PublicJWK(k.Signer.Public(), k.Alg, k.KID)
	if err != nil {
		return JWK{}, err
	}
	j.Use = "sig"
	return j, nil
}

// MarshalPrivateKey encodes the private key as PKCS#8 DER. Only the key
// material is encoded; KID and Alg must be stored alongside by the caller.
func MarshalPrivateKey(k *PrivateKey) ([]byte, error) {
	if k == nil || k.Signer == nil {
		return nil, errors.New("jose: nil private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("jose: marshal private key %q: %w", k.KID, err)
	}
	return der, nil
}

// ParsePrivateKey decodes a PKCS#8 DER private key and checks it suits alg.
// If kid is empty the RFC 7638 thumbprint is used, matching GenerateKey.
func ParsePrivateKey(alg Alg, kid string, der []byte) (*PrivateKey, error) {
	if !alg.supported() {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	raw, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("jose: parse PKCS#8 private key: %w", err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: PKCS#8 key of type %T cannot sign", ErrAlgorithm, raw)
	}
	return newPrivateKey(alg, kid, signer)
}

// checkKeyAlg reports whether pub is a key type (and size/curve) that alg may
// use. It is the single place that binds algorithms to key types, used by
// signing, key parsing and key sets alike.
func checkKeyAlg(pub crypto.PublicKey, alg Alg) error {
	switch alg {
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: ES256 requires an ECDSA key, got %T", ErrAlgorithm, pub)
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ES256 requires curve P-256", ErrAlgorithm)
		}
	case EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: EdDSA requires an Ed25519 key, got %T", ErrAlgorithm, pub)
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key is %d bytes", ErrMalformed, len(k))
		}
	case RS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RS256 requires an RSA key, got %T", ErrAlgorithm, pub)
		}
		if k.N == nil {
			return fmt.Errorf("%w: RSA key without modulus", ErrMalformed)
		}
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return fmt.Errorf("%w: RSA modulus of %d bits outside [%d, %d]", ErrAlgorithm, bits, minRSABits, maxRSABits)
		}
	default:
		return fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	return nil
}
