package secrets

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/sqlstore"
)

// VaultConfigFromEnv reads VAULT_ADDR, VAULT_TOKEN, VAULT_ROLE_ID,
// VAULT_SECRET_ID, VAULT_MOUNT, VAULT_PATH_PREFIX and VAULT_TIMEOUT. It
// returns nil when VAULT_ADDR is unset (use Local). Problems (no credentials,
// half an AppRole, bad timeout) are recorded in env, never with a value.
func VaultConfigFromEnv(env *config.Env) *VaultConfig {
	addr := env.String("VAULT_ADDR", "")
	if addr == "" {
		return nil
	}
	cfg := &VaultConfig{
		Address:    addr,
		Token:      env.String("VAULT_TOKEN", ""),
		RoleID:     env.String("VAULT_ROLE_ID", ""),
		SecretID:   env.String("VAULT_SECRET_ID", ""),
		Mount:      env.String("VAULT_MOUNT", defaultVaultMount),
		PathPrefix: env.String("VAULT_PATH_PREFIX", defaultVaultPrefix),
		Timeout:    env.Duration("VAULT_TIMEOUT", defaultVaultTimeout),
	}
	if cfg.Token == "" && (cfg.RoleID == "" || cfg.SecretID == "") {
		env.Fail("VAULT_ADDR is set: VAULT_TOKEN, or both VAULT_ROLE_ID and VAULT_SECRET_ID, are required")
	}
	return cfg
}

// FromEnv returns the Store a service uses: Vault when VAULT_ADDR is set
// (db and kek are then unused), else Local over db sealed with kek, with its
// table created (Migrate). Any problem recorded in env, including ones
// recorded earlier by the caller, is returned first.
func FromEnv(ctx context.Context, env *config.Env, db *sqlstore.DB, kek []byte) (Store, error) {
	vcfg := VaultConfigFromEnv(env)
	if err := env.Err(); err != nil {
		return nil, fmt.Errorf("secrets: configuration: %w", err)
	}
	if vcfg != nil {
		return NewVault(*vcfg)
	}
	if db == nil {
		return nil, errors.New("secrets: VAULT_ADDR is unset and no database was given for the local store")
	}
	l, err := NewLocal(db, kek)
	if err != nil {
		return nil, err
	}
	if err := l.Migrate(ctx); err != nil {
		return nil, err
	}
	return l, nil
}
