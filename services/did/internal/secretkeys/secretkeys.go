// Package secretkeys adapts the secrets port (libs/secrets.Store: Vault KV
// v2 when VAULT_ADDR is set, else the local AES-256-GCM store in the
// service's database) to domain.KeyStore.
//
// A DID private key lives at its reference, domain.KeyRef(subject, kid) =
// "did/keys/<agent id or instance>/<kid>" (in Vault
// <mount>/data/<prefix>/did/keys/...), as {"privateKey": base64 of the
// PKCS#8 DER} (standard encoding, padded).
//
// No Vault server can be installed in CI (only the Go module proxy and
// Debian packages are reachable), so the Vault path is tested against the
// in-process stand-in libs/secrets/vaulttest.
package secretkeys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/services/did/internal/domain"
)

// DataKey is the map key holding the base64 DER.
const DataKey = "privateKey"

// Store is a domain.KeyStore over a secrets.Store.
type Store struct {
	s secrets.Store
}

var _ domain.KeyStore = (*Store)(nil)

// New returns the adapter over s.
func New(s secrets.Store) *Store { return &Store{s: s} }

// Put implements domain.KeyStore. Storing a ref again writes a new version
// (the key of a ref never changes: the kid is the key's thumbprint).
func (a *Store) Put(ctx context.Context, ref string, privateKey []byte) error {
	if len(privateKey) == 0 {
		return fmt.Errorf("store DID key %s: empty key", ref)
	}
	if _, err := a.s.Put(ctx, ref, map[string]string{DataKey: base64.StdEncoding.EncodeToString(privateKey)}); err != nil {
		return fmt.Errorf("store DID key: %w", err)
	}
	return nil
}

// Get implements domain.KeyStore: secrets.ErrNotFound becomes
// domain.ErrNotFound.
func (a *Store) Get(ctx context.Context, ref string) ([]byte, error) {
	sec, err := a.s.Get(ctx, ref)
	if errors.Is(err, secrets.ErrNotFound) {
		return nil, fmt.Errorf("DID key %s: %w", ref, domain.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get DID key: %w", err)
	}
	der, err := base64.StdEncoding.DecodeString(sec.Data[DataKey])
	if err != nil || len(der) == 0 {
		return nil, fmt.Errorf("DID key %s: malformed secret (no base64 %q)", ref, DataKey)
	}
	return der, nil
}

// Ping reports whether the secrets backend answers (readiness check).
func (a *Store) Ping(ctx context.Context) error { return a.s.Ping(ctx) }
