package jose

import (
	"crypto"
	"fmt"
)

// KeySet resolves a token's kid to the key that must verify it. Verify
// depends only on this interface so services can plug in refreshing remote
// JWKS caches; build their entries with NewVerificationKey to get the same
// validation as StaticKeySet.
type KeySet interface {
	// Key returns the key for kid, or false if it is unknown.
	Key(kid string) (*VerificationKey, bool)
}

// VerificationKey is a public key pinned to exactly one algorithm. Verify
// accepts a token only if its header alg equals Alg, which is what makes
// algorithm-confusion attacks impossible.
type VerificationKey struct {
	KID    string
	Alg    Alg
	Public crypto.PublicKey
}

// NewVerificationKey validates a JWK for verification: it must have a kid, a
// supported alg matching its key type, use "sig" or no use, and valid key
// material (see JWK.PublicKey).
func NewVerificationKey(j JWK) (*VerificationKey, error) {
	if j.Kid == "" {
		return nil, fmt.Errorf("%w: JWK without kid", ErrMalformed)
	}
	alg := Alg(j.Alg)
	if !alg.supported() {
		// A missing alg is rejected too: inferring it from the key type is
		// exactly the ambiguity alg pinning exists to remove.
		return nil, fmt.Errorf("%w: JWK %q has missing or unsupported alg %q", ErrAlgorithm, j.Kid, j.Alg)
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("%w: JWK %q has use %q, want sig", ErrAlgorithm, j.Kid, j.Use)
	}
	pub, err := j.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("JWK %q: %w", j.Kid, err)
	}
	if err := checkKeyAlg(pub, alg); err != nil {
		return nil, fmt.Errorf("JWK %q: %w", j.Kid, err)
	}
	return &VerificationKey{KID: j.Kid, Alg: alg, Public: pub}, nil
}

// StaticKeySet is an immutable KeySet built from a JWKS; safe for concurrent
// use.
type StaticKeySet struct {
	keys map[string]*VerificationKey
}

// NewStaticKeySet validates every key in jwks (see NewVerificationKey) and
// rejects the whole set on the first invalid key or duplicate kid, since a
// silently dropped key would surface later as confusing ErrUnknownKey
// failures.
func NewStaticKeySet(jwks JWKS) (*StaticKeySet, error) {
	ks := &StaticKeySet{keys: make(map[string]*VerificationKey, len(jwks.Keys))}
	for i, j := range jwks.Keys {
		vk, err := NewVerificationKey(j)
		if err != nil {
			return nil, fmt.Errorf("jose: key set entry %d: %w", i, err)
		}
		if _, dup := ks.keys[vk.KID]; dup {
			return nil, fmt.Errorf("jose: key set entry %d: %w: duplicate kid %q", i, ErrMalformed, vk.KID)
		}
		ks.keys[vk.KID] = vk
	}
	return ks, nil
}

// Key implements KeySet.
func (s *StaticKeySet) Key(kid string) (*VerificationKey, bool) {
	k, ok := s.keys[kid]
	return k, ok
}
