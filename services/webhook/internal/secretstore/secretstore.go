// Package secretstore adapts the secrets port (libs/secrets.Store: Vault KV
// v2 when VAULT_ADDR is set, else the local AES-256-GCM store in the
// service's database) to hook.SecretStore.
//
// A webhook's signing secret lives at hook.SecretPathPrefix + <webhook id>
// ("webhook/secrets/wh_..."; in Vault <mount>/data/<prefix>/webhook/secrets/
// wh_...) with the data {"current": "whsec_...", "previous": "whsec_...",
// "previous_until": RFC 3339 time}; previous and previous_until are present
// only during a rotation overlap.
//
// No Vault server can be installed in CI (only the Go module proxy and
// Debian packages are reachable), so the Vault path is tested against the
// in-process stand-in libs/secrets/vaulttest.
package secretstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
)

// Store is a hook.SecretStore over a secrets.Store. Safe for concurrent use
// when the underlying store is.
type Store struct {
	s secrets.Store
}

var _ hook.SecretStore = (*Store)(nil)

// New returns the adapter over s.
func New(s secrets.Store) *Store { return &Store{s: s} }

// Put implements hook.SecretStore.
func (a *Store) Put(ctx context.Context, path string, data map[string]string) (int, error) {
	v, err := a.s.Put(ctx, path, data)
	if err != nil {
		return 0, fmt.Errorf("put webhook secret: %w", err)
	}
	return v, nil
}

// Get implements hook.SecretStore: secrets.ErrNotFound becomes
// hook.ErrSecretNotFound.
func (a *Store) Get(ctx context.Context, path string) (map[string]string, error) {
	sec, err := a.s.Get(ctx, path)
	if errors.Is(err, secrets.ErrNotFound) {
		return nil, fmt.Errorf("get webhook secret: %w", hook.ErrSecretNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get webhook secret: %w", err)
	}
	return sec.Data, nil
}

// Delete implements hook.SecretStore (every version; missing is no error).
func (a *Store) Delete(ctx context.Context, path string) error {
	if err := a.s.Delete(ctx, path); err != nil {
		return fmt.Errorf("delete webhook secret: %w", err)
	}
	return nil
}

// Ping reports whether the secrets backend answers (readiness check).
func (a *Store) Ping(ctx context.Context) error { return a.s.Ping(ctx) }
