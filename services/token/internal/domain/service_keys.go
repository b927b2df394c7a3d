package domain

import (
	"context"
	"fmt"

	"github.com/agentidp/agentidp/libs/jose"
)

// tokenSigner signs access tokens: the Keyring (rotating keys) or a single
// jose.Signer (the static KeyStore).
type tokenSigner interface {
	Sign(claims any) (string, error)
}

// initKeys sets up signing: the key ring when the deps carry one, else the
// static KeyStore's active key.
func (s *Service) initKeys(ctx context.Context, d Deps) error {
	if d.Ring != nil {
		s.ring, s.signer = d.Ring, d.Ring
		return nil
	}
	if d.Keys == nil {
		return fmt.Errorf("signing key: no key store")
	}
	key, err := d.Keys.Active(ctx, s.cfg.Alg)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	signer, err := jose.NewSigner(key, "at+jwt")
	if err != nil {
		return err
	}
	s.signer = signer
	return s.ReloadJWKS(ctx)
}

// Keyring returns the managed signing keys, or nil with a static KeyStore.
func (s *Service) Keyring() *Keyring { return s.ring }

// SigningAlgs returns the algorithms of the published keys.
func (s *Service) SigningAlgs() []string {
	if s.ring != nil {
		return s.ring.Algs()
	}
	return []string{string(s.cfg.Alg)}
}

// DiscoveryDocument is Discovery with the signing algorithms of every
// published key (during an algorithm change both are listed).
func (s *Service) DiscoveryDocument() map[string]any {
	d := s.Discovery()
	d["id_token_signing_alg_values_supported"] = s.SigningAlgs()
	// Not a registered metadata name for the token endpoint itself, but
	// what verifiers of our access tokens need to know.
	d["access_token_signing_alg_values_supported"] = s.SigningAlgs()
	return d
}
