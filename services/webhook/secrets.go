package webhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
)

// devSecretKey seals secrets in `agentidp dev` when no key is configured.
var devSecretKey = sha256.Sum256([]byte("agentidp dev webhook secret key - not for production"))

// secretKey returns the 32-byte key-encryption key of the local secrets
// store (and of the legacy webhook_secrets table) from cfg.SecretKey:
// WEBHOOK_SECRET_KEY may be longer than 32 bytes, and AES-256 needs exactly
// 32, so any other length is reduced with SHA-256 (as the legacy table
// always did, so that its rows still open). It returns nil when no key is
// configured and Vault is: the key then only opens legacy rows.
func secretKey(cfg Config, embedded bool, logger *slog.Logger) ([]byte, error) {
	kek := cfg.SecretKey
	switch {
	case len(kek) == 0 && cfg.Vault != nil:
		return nil, nil
	case len(kek) == 0 && embedded:
		logger.Warn("WEBHOOK_SECRET_KEY not set: sealing webhook secrets with the fixed development key")
		return devSecretKey[:], nil
	case len(kek) == 0:
		return nil, errors.New("a secret key (WEBHOOK_SECRET_KEY) is required unless VAULT_ADDR is set")
	case len(kek) != secrets.KEKSize:
		k := sha256.Sum256(kek)
		return k[:], nil
	}
	return kek, nil
}

// openSecrets returns the secrets port for signing secrets: Vault KV v2
// when cfg.Vault is set, else the local store sealed with kek in the
// service's database (its table created).
func openSecrets(ctx context.Context, cfg Config, d *svcrun.Deps, kek []byte) (secrets.Store, error) {
	if cfg.Vault != nil {
		return secrets.NewVault(*cfg.Vault)
	}
	l, err := secrets.NewLocal(d.DB, kek)
	if err != nil {
		return nil, err
	}
	if err := l.Migrate(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// migrateLegacySecrets moves every secret of the pre-secrets-port table
// webhook_secrets into store: read, Put at the new path
// (hook.SecretPathPrefix + id), repoint the subscription and delete the
// row. It is idempotent and safe to repeat after a crash; with replicas
// starting together a secret may be copied twice, which only adds a
// version with the same data.
func migrateLegacySecrets(ctx context.Context, d *svcrun.Deps, kek []byte, store hook.SecretStore, logger *slog.Logger) error {
	paths, err := whstore.LegacySecretPaths(ctx, d.DB)
	if err != nil || len(paths) == 0 {
		return err
	}
	if kek == nil {
		return fmt.Errorf("%d webhook secrets are still in the legacy table: set WEBHOOK_SECRET_KEY (the key that sealed them) so they can be moved to Vault", len(paths))
	}
	legacy, err := whstore.NewSealedSecrets(d.DB, kek)
	if err != nil {
		return err
	}
	for _, old := range paths {
		data, err := legacy.Get(ctx, old)
		if errors.Is(err, hook.ErrSecretNotFound) {
			continue // moved by a replica starting at the same time
		}
		if err != nil {
			return fmt.Errorf("migrate legacy webhook secret %s: %w", old, err)
		}
		path := old
		if rest, ok := strings.CutPrefix(old, hook.LegacySecretPathPrefix); ok {
			path = hook.SecretPathPrefix + rest
		}
		if _, err := store.Put(ctx, path, data); err != nil {
			return fmt.Errorf("migrate legacy webhook secret %s: %w", old, err)
		}
		if err := legacy.Migrated(ctx, old, path); err != nil {
			return err
		}
	}
	logger.Info("moved webhook signing secrets from the legacy table to the secrets store", "count", len(paths))
	return nil
}
