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

// SealedSecrets is a hook.SecretStore that keeps secrets in the service's
// own database, sealed with AES-256-GCM under a key-encryption key from the
// configuration (the path is the additional data, so a sealed value cannot
// be moved to another path). It keeps only the latest version.
//
// TODO(secrets): replace with libs/secrets (Vault KV v2 / local sealed) once
// that library lands; hook.SecretStore is shaped after its Put/Get/Delete.
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
