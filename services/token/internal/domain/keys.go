package domain

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// KeyStore keeps signing keys. The local implementation seals them with
// AES-256-GCM in the service's database; a Vault implementation can replace
// it without touching issuance.
type KeyStore interface {
	// Active returns the active key for alg, creating and storing one if
	// there is none (replicas racing to create converge on one key).
	Active(ctx context.Context, alg jose.Alg) (*jose.PrivateKey, error)
	// Published returns the public keys to serve in the JWKS (active and
	// retired keys whose tokens may still be live).
	Published(ctx context.Context) ([]jose.JWK, error)
}

// SealedKeyStore is the KeyStore on the service's own database.
type SealedKeyStore struct {
	rows Store
	aead cipher.AEAD
}

// NewSealedKeyStore seals keys under kek, which must be 32 bytes.
func NewSealedKeyStore(rows Store, kek []byte) (*SealedKeyStore, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("key encryption key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key encryption key: %w", err)
	}
	return &SealedKeyStore{rows: rows, aead: aead}, nil
}

// aad binds a sealed key to its kid and alg, so rows cannot be swapped.
func aad(kid, alg string) []byte { return []byte("agentidp-signing-key|" + kid + "|" + alg) }

func (s *SealedKeyStore) seal(k *jose.PrivateKey) ([]byte, error) {
	der, err := jose.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, der, aad(k.KID, string(k.Alg))), nil
}

func (s *SealedKeyStore) open(row SealedKey) (*jose.PrivateKey, error) {
	ns := s.aead.NonceSize()
	if len(row.Sealed) < ns {
		return nil, fmt.Errorf("signing key %s: sealed value too short", row.KID)
	}
	der, err := s.aead.Open(nil, row.Sealed[:ns], row.Sealed[ns:], aad(row.KID, row.Alg))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: cannot unseal (wrong TOKEN_KEY_ENCRYPTION_KEY?): %w", row.KID, err)
	}
	return jose.ParsePrivateKey(jose.Alg(row.Alg), row.KID, der)
}

// Active implements KeyStore.
func (s *SealedKeyStore) Active(ctx context.Context, alg jose.Alg) (*jose.PrivateKey, error) {
	for attempt := 0; attempt < 3; attempt++ {
		row, err := s.rows.ActiveSigningKey(ctx, string(alg))
		if err == nil {
			return s.open(row)
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("load signing key: %w", err)
		}
		k, err := jose.GenerateKey(alg)
		if err != nil {
			return nil, err
		}
		sealed, err := s.seal(k)
		if err != nil {
			return nil, err
		}
		err = s.rows.InsertSigningKey(ctx, SealedKey{KID: k.KID, Alg: string(alg), Sealed: sealed, Status: "active", CreatedAt: time.Now().UTC()})
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("store signing key: %w", err)
		}
		// Another replica won the race: load its key.
	}
	return nil, errors.New("signing key: could not converge on an active key")
}

// Published implements KeyStore.
func (s *SealedKeyStore) Published(ctx context.Context) ([]jose.JWK, error) {
	rows, err := s.rows.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	out := make([]jose.JWK, 0, len(rows))
	for _, r := range rows {
		k, err := s.open(r)
		if err != nil {
			return nil, err
		}
		j, err := k.PublicJWK()
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}
