package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
)

// Signer produces compact JWS tokens with one key. The protected header is
// encoded once at construction because it is identical for every token, which
// keeps Sign (the token service's hottest path) to a single JSON encode of
// the claims. A Signer is immutable and safe for concurrent use.
type Signer struct {
	alg     Alg
	signer  crypto.Signer
	ec      *ecdsa.PrivateKey // non-nil when the fast ES256 path applies
	header  []byte            // base64url(header) + "."
	sigSize int               // exact raw signature length for alg
}

// jwsHeader is the protected header we emit; field order is fixed so the
// encoded header is deterministic.
type jwsHeader struct {
	Alg Alg    `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ,omitempty"`
}

// NewSigner validates k and pre-encodes the header {"alg","kid","typ"}.
// typ is the media type of the token (e.g. "at+jwt" for RFC 9068 access
// tokens); empty omits it. A KID is required because verifiers require one.
func NewSigner(k *PrivateKey, typ string) (*Signer, error) {
	if k == nil || k.Signer == nil {
		return nil, errors.New("jose: NewSigner: nil private key")
	}
	if k.KID == "" {
		return nil, errors.New("jose: NewSigner: key has no KID")
	}
	pub := k.Signer.Public()
	if err := checkKeyAlg(pub, k.Alg); err != nil {
		return nil, fmt.Errorf("jose: NewSigner %q: %w", k.KID, err)
	}
	hdr, err := json.Marshal(jwsHeader{Alg: k.Alg, Kid: k.KID, Typ: typ})
	if err != nil {
		return nil, fmt.Errorf("jose: NewSigner: encode header: %w", err)
	}
	s := &Signer{alg: k.Alg, signer: k.Signer}
	s.header = make([]byte, b64.EncodedLen(len(hdr))+1)
	b64.Encode(s.header, hdr)
	s.header[len(s.header)-1] = '.'
	switch k.Alg {
	case ES256:
		s.sigSize = 64
		s.ec, _ = k.Signer.(*ecdsa.PrivateKey)
	case EdDSA:
		s.sigSize = 64
	case RS256:
		s.sigSize = pub.(*rsa.PublicKey).Size() // type checked by checkKeyAlg
	}
	return s, nil
}

// Alg returns the algorithm the signer uses.
func (s *Signer) Alg() Alg { return s.alg }

// bufPool recycles the scratch buffer in which tokens are assembled, so a
// Sign or Verify allocates only what must outlive the call.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBuf stops one huge token from pinning a huge buffer in the pool.
const maxPooledBuf = 64 << 10

func getBuf(n int) *[]byte {
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBuf {
		bufPool.Put(bp)
	}
}

// Sign JSON-encodes claims and returns the compact JWS
// base64url(header).base64url(claims).base64url(signature).
func (s *Signer) Sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jose: sign: encode claims: %w", err)
	}
	inputLen := len(s.header) + b64.EncodedLen(len(payload))
	total := inputLen + 1 + b64.EncodedLen(s.sigSize)
	bp := getBuf(total)
	defer putBuf(bp)
	buf := *bp
	copy(buf, s.header)
	b64.Encode(buf[len(s.header):inputLen], payload)
	input := buf[:inputLen]

	var (
		ecSig [64]byte
		sig   []byte
	)
	switch s.alg {
	case ES256:
		digest := sha256.Sum256(input)
		if err := s.signES256(digest[:], &ecSig); err != nil {
			return "", err
		}
		sig = ecSig[:]
	case EdDSA:
		// Ed25519 signs the message itself; crypto.Hash(0) selects pure EdDSA.
		sig, err = s.signer.Sign(rand.Reader, input, crypto.Hash(0))
	case RS256:
		digest := sha256.Sum256(input)
		sig, err = s.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("jose: sign %s: %w", s.alg, err)
	}
	if len(sig) != s.sigSize {
		return "", fmt.Errorf("jose: sign %s: signer returned %d-byte signature, want %d", s.alg, len(sig), s.sigSize)
	}
	buf[inputLen] = '.'
	b64.Encode(buf[inputLen+1:], sig)
	return string(buf), nil
}

// signES256 writes the RFC 7518 R||S signature (each 32 bytes big-endian)
// into out. JOSE does not use the ASN.1 form crypto.Signer returns, so
// in-process keys use ecdsa.Sign directly and external signers (KMS) are
// converted.
func (s *Signer) signES256(digest []byte, out *[64]byte) error {
	var r, ss *big.Int
	if s.ec != nil {
		var err error
		if r, ss, err = ecdsa.Sign(rand.Reader, s.ec, digest); err != nil {
			return fmt.Errorf("jose: sign ES256: %w", err)
		}
	} else {
		der, err := s.signer.Sign(rand.Reader, digest, crypto.SHA256)
		if err != nil {
			return fmt.Errorf("jose: sign ES256: %w", err)
		}
		var parsed struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(der, &parsed)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("jose: sign ES256: signer returned malformed ASN.1 signature")
		}
		r, ss = parsed.R, parsed.S
	}
	// FillBytes panics on overflow; a broken external signer must produce an
	// error, not crash the token service.
	if r.Sign() <= 0 || ss.Sign() <= 0 || r.BitLen() > 256 || ss.BitLen() > 256 {
		return errors.New("jose: sign ES256: signature scalar out of range")
	}
	r.FillBytes(out[:32])
	ss.FillBytes(out[32:])
	return nil
}
