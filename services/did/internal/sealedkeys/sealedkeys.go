// Package sealedkeys is the pre-secrets-port DID key store: private keys
// sealed with AES-256-GCM under a key-encryption key from the
// configuration, in the table did_sealed_keys of the did service's own
// database.
//
// It is kept only as a migration source: at start-up the service copies
// every row into the secrets port (LegacyRefs, Get, then Migrated). The
// table is not dropped (a later migration may, once every install has
// started this version): a numbered migration dropping it would run before
// the copy.
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

// LegacyRefs returns the references of every key still in the legacy
// table (no key needed: references are not secret).
func LegacyRefs(ctx context.Context, db *sqlstore.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT ref FROM did_sealed_keys ORDER BY ref`)
	if err != nil {
		return nil, fmt.Errorf("sealedkeys: list: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("sealedkeys: list: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sealedkeys: list: %w", err)
	}
	return out, nil
}

// Migrated records that the key at oldRef now lives at newRef in the
// secrets port: in one transaction the public key rows (agent_did_keys)
// pointing at oldRef are repointed and the sealed row is deleted. Call it
// only after the copy was written, so that a crash in between leaves the
// row to be copied again at the next start.
func (s *Store) Migrated(ctx context.Context, oldRef, newRef string) error {
	err := s.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		if oldRef != newRef {
			if _, err := tx.ExecContext(ctx, `UPDATE agent_did_keys SET key_ref = ? WHERE key_ref = ?`, newRef, oldRef); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM did_sealed_keys WHERE ref = ?`, oldRef)
		return err
	})
	if err != nil {
		return fmt.Errorf("sealedkeys: finish migration of %s: %w", oldRef, err)
	}
	return nil
}
