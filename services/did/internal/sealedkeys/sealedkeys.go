// Package sealedkeys is the local DID key store: private keys sealed with
// AES-256-GCM under a key-encryption key from the configuration, in a table
// of the did service's own database. It stands in for the secrets port
// (Vault KV v2) in development and single-node deployments.
package sealedkeys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/did/internal/domain"
)

// Store implements domain.KeyStore.
type Store struct {
	db   *sqlstore.DB
	aead cipher.AEAD
}

var _ domain.KeyStore = (*Store)(nil)

// New returns a store sealing with kek (exactly 32 bytes: AES-256).
func New(db *sqlstore.DB, kek []byte) (*Store, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("sealedkeys: key-encryption key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("sealedkeys: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealedkeys: %w", err)
	}
	return &Store{db: db, aead: aead}, nil
}

// Put implements domain.KeyStore. The reference is the additional data, so
// a ciphertext moved to another row does not open.
func (s *Store) Put(ctx context.Context, ref string, privateKey []byte) error {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("sealedkeys: nonce: %w", err)
	}
	ct := s.aead.Seal(nil, nonce, privateKey, []byte(ref))
	_, err := s.db.ExecContext(ctx, `INSERT INTO did_sealed_keys (ref, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?)`,
		ref, nonce, ct, time.Now().UTC())
	if sqlstore.IsUniqueViolation(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sealedkeys: put %s: %w", ref, err)
	}
	return nil
}

// Get implements domain.KeyStore.
func (s *Store) Get(ctx context.Context, ref string) ([]byte, error) {
	var nonce, ct []byte
	err := s.db.QueryRowContext(ctx, `SELECT nonce, ciphertext FROM did_sealed_keys WHERE ref = ?`, ref).Scan(&nonce, &ct)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sealedkeys: %s: %w", ref, domain.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sealedkeys: get %s: %w", ref, err)
	}
	pt, err := s.aead.Open(nil, nonce, ct, []byte(ref))
	if err != nil {
		return nil, fmt.Errorf("sealedkeys: open %s: wrong key or tampered row", ref)
	}
	return pt, nil
}
