package did

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/agentidp/agentidp/services/did/internal/sealedkeys"
	"github.com/agentidp/agentidp/services/did/internal/secretkeys"
)

// openKeys returns the key store: cfg.Keys when set, else the secrets port
// adapted to KeyStore, Vault KV v2 when cfg.Vault is set and otherwise the
// local store sealed with cfg.KeyEncryptionKey in the service's database
// (its table created). ping is the secrets backend's health (nil for
// cfg.Keys).
func openKeys(ctx context.Context, cfg Config, d *svcrun.Deps) (keys KeyStore, ping func(context.Context) error, err error) {
	if cfg.Keys != nil {
		return cfg.Keys, nil, nil
	}
	var port secrets.Store
	if cfg.Vault != nil {
		if port, err = secrets.NewVault(*cfg.Vault); err != nil {
			return nil, nil, err
		}
	} else {
		l, err := secrets.NewLocal(d.DB, cfg.KeyEncryptionKey)
		if err != nil {
			return nil, nil, err
		}
		if err := l.Migrate(ctx); err != nil {
			return nil, nil, err
		}
		port = l
	}
	s := secretkeys.New(port)
	return s, s.Ping, nil
}

// migrateLegacyKeys moves every private key of the pre-secrets-port table
// did_sealed_keys into keys: read, Put at the new reference
// (domain.KeyRef: did/keys/<subject>/<kid>), repoint the public key row and
// delete the sealed row. It is idempotent and safe to repeat after a crash;
// with replicas starting together a key may be copied twice, which only
// adds a version with the same data.
func migrateLegacyKeys(ctx context.Context, cfg Config, d *svcrun.Deps, keys KeyStore, logger *slog.Logger) error {
	refs, err := sealedkeys.LegacyRefs(ctx, d.DB)
	if err != nil || len(refs) == 0 {
		return err
	}
	if len(cfg.KeyEncryptionKey) != 32 {
		return fmt.Errorf("%d DID keys are still in the legacy table: set DID_KEY_ENCRYPTION_KEY (the key that sealed them) so they can be moved to the secrets store", len(refs))
	}
	legacy, err := sealedkeys.New(d.DB, cfg.KeyEncryptionKey)
	if err != nil {
		return err
	}
	for _, old := range refs {
		der, err := legacy.Get(ctx, old)
		if errors.Is(err, domain.ErrNotFound) {
			continue // moved by a replica starting at the same time
		}
		if err != nil {
			return fmt.Errorf("migrate legacy DID key: %w", err)
		}
		ref := domain.MigratedKeyRef(old)
		if err := keys.Put(ctx, ref, der); err != nil {
			return fmt.Errorf("migrate legacy DID key %s: %w", old, err)
		}
		if err := legacy.Migrated(ctx, old, ref); err != nil {
			return err
		}
	}
	logger.Info("moved DID private keys from the legacy table to the secrets store", "count", len(refs))
	return nil
}
