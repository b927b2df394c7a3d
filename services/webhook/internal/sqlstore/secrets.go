package sqlstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
)

// SealedSecrets is the pre-secrets-port hook.SecretStore: secrets in the
// service's own table webhook_secrets, sealed with AES-256-GCM under a
// key-encryption key from the configuration (the path is the additional
// data, so a sealed value cannot be moved to another path), latest version
// only.
//
// It is kept only as a migration source: at start-up the service copies
// every row into the secrets port (LegacySecretPaths, Get, then Migrated) so installs
// upgraded from it keep their endpoints' secrets. The table is not dropped
// (a later migration may, once every install has started this version):
// dropping it in a numbered migration would run before the copy.
type SealedSecrets struct {
	db   *sqlstore.DB
	aead cipher.AEAD
}

var _ hook.SecretStore = (*SealedSecrets)(nil)

// NewSealedSecrets returns the store; kek must be 32 bytes.
func NewSealedSecrets(db *sqlstore.DB, kek []byte) (*SealedSecrets, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &SealedSecrets{db: db, aead: aead}, nil
}

// Put implements hook.SecretStore.
func (s *SealedSecrets) Put(ctx context.Context, path string, data map[string]string) (int, error) {
	plain, err := json.Marshal(data)
	if err != nil {
		return 0, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return 0, fmt.Errorf("nonce: %w", err)
	}
	sealed := s.aead.Seal(nil, nonce, plain, []byte(path))
	var version int
	err = s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT version FROM webhook_secrets WHERE path = ?`, path).Scan(&version)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		version++
		_, err = tx.ExecContext(ctx, `INSERT INTO webhook_secrets (path, version, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (path) DO UPDATE SET version = excluded.version, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
created_at = excluded.created_at`, path, version, nonce, sealed, time.Now().UTC())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("put secret: %w", err)
	}
	return version, nil
}

// Get implements hook.SecretStore.
func (s *SealedSecrets) Get(ctx context.Context, path string) (map[string]string, error) {
	var nonce, sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT nonce, ciphertext FROM webhook_secrets WHERE path = ?`, path).Scan(&nonce, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, hook.ErrSecretNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get secret: %w", err)
	}
	plain, err := s.aead.Open(nil, nonce, sealed, []byte(path))
	if err != nil {
		return nil, fmt.Errorf("get secret %s: cannot unseal (wrong key?)", path)
	}
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fmt.Errorf("get secret %s: %w", path, err)
	}
	return data, nil
}

// Delete implements hook.SecretStore.
func (s *SealedSecrets) Delete(ctx context.Context, path string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM webhook_secrets WHERE path = ?`, path); err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	return nil
}

// LegacySecretPaths returns the paths of every secret still in the legacy
// table webhook_secrets (no key needed: paths are not secret).
func LegacySecretPaths(ctx context.Context, db *sqlstore.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT path FROM webhook_secrets ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("list legacy secrets: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list legacy secrets: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list legacy secrets: %w", err)
	}
	return out, nil
}

// Migrated records that the legacy secret at oldPath now lives at newPath
// in the secrets port: in one transaction the subscriptions pointing at
// oldPath are repointed and the legacy row is deleted. Call it only after
// the copy was written, so that a crash in between leaves the row to be
// copied again at the next start (the copy is then a newer version of the
// same data).
func (s *SealedSecrets) Migrated(ctx context.Context, oldPath, newPath string) error {
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		if oldPath != newPath {
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_subscriptions SET secret_path = ? WHERE secret_path = ?`, newPath, oldPath); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM webhook_secrets WHERE path = ?`, oldPath)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish migration of legacy secret %s: %w", oldPath, err)
	}
	return nil
}
