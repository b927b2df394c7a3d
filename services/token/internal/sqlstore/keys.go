package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// KeyRing implements domain.KeyRepo on the signing_key_ring table.
type KeyRing struct {
	db *lib.DB
}

var _ domain.KeyRepo = (*KeyRing)(nil)

// NewKeyRing returns the key-ring repository on db (migrations applied).
func NewKeyRing(db *lib.DB) *KeyRing { return &KeyRing{db: db} }

const keyCols = `kid, alg, state, public_jwk, created_at, activate_at, retire_at, expires_at, withdrawn_at, updated_at`

// keyRingLock is the PostgreSQL advisory lock that serialises key-ring
// transactions across replicas (SQLite has a single writer anyway).
var keyRingLock = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("agentidp/token/signing-key-ring"))
	return int64(h.Sum64())
}()

func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func scanKey(r scanner) (domain.KeyMeta, error) {
	var k domain.KeyMeta
	var alg, state, jwk string
	var withdrawn sql.NullTime
	if err := r.Scan(&k.KID, &alg, &state, &jwk, &k.CreatedAt, &k.ActivateAt, &k.RetireAt, &k.ExpiresAt, &withdrawn, &k.UpdatedAt); err != nil {
		return k, err
	}
	k.Alg, k.State = jose.Alg(alg), domain.KeyState(state)
	if err := json.Unmarshal([]byte(jwk), &k.PublicJWK); err != nil {
		return k, fmt.Errorf("decode public key %s: %w", k.KID, err)
	}
	k.CreatedAt, k.ActivateAt, k.RetireAt = k.CreatedAt.UTC(), k.ActivateAt.UTC(), k.RetireAt.UTC()
	k.ExpiresAt, k.UpdatedAt = k.ExpiresAt.UTC(), k.UpdatedAt.UTC()
	if withdrawn.Valid {
		t := withdrawn.Time.UTC()
		k.WithdrawnAt = &t
	}
	return k, nil
}

func listKeys(ctx context.Context, q lib.Querier) ([]domain.KeyMeta, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+keyCols+" FROM signing_key_ring ORDER BY created_at, kid")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []domain.KeyMeta
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// ListKeys implements domain.KeyRepo.
func (r *KeyRing) ListKeys(ctx context.Context) ([]domain.KeyMeta, error) {
	return listKeys(ctx, r.db)
}

// KeysVersion implements domain.KeyRepo: every insert adds a row and every
// update bumps its revision, so (count, sum of revisions) changes with any
// write. One index-free aggregate over a table of a few dozen rows.
func (r *KeyRing) KeysVersion(ctx context.Context) (string, error) {
	var n, sum int64
	if err := r.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(revision), 0) FROM signing_key_ring").Scan(&n, &sum); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d/%d", n, sum), nil
}

// ChangeKeys implements domain.KeyRepo.
func (r *KeyRing) ChangeKeys(ctx context.Context, fn func(keys []domain.KeyMeta) (domain.KeyChanges, error)) error {
	err := r.db.InTx(ctx, func(tx *lib.Tx) error {
		if tx.Driver() == lib.Postgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", keyRingLock); err != nil {
				return err
			}
		}
		keys, err := listKeys(ctx, tx)
		if err != nil {
			return err
		}
		ch, err := fn(keys)
		if err != nil {
			return err
		}
		for _, k := range ch.Update {
			var withdrawn any
			if k.WithdrawnAt != nil {
				withdrawn = ts(*k.WithdrawnAt)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE signing_key_ring SET state = ?, activate_at = ?, retire_at = ?, expires_at = ?,
				withdrawn_at = ?, updated_at = ?, revision = revision + 1 WHERE kid = ?`,
				string(k.State), ts(k.ActivateAt), ts(k.RetireAt), ts(k.ExpiresAt), withdrawn, ts(k.UpdatedAt), k.KID); err != nil {
				return err
			}
		}
		for _, k := range ch.Insert {
			jwk, err := json.Marshal(k.PublicJWK)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO signing_key_ring ("+keyCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
				k.KID, string(k.Alg), string(k.State), string(jwk), ts(k.CreatedAt), ts(k.ActivateAt), ts(k.RetireAt),
				ts(k.ExpiresAt), ts(k.UpdatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
	if lib.IsUniqueViolation(err) {
		return fmt.Errorf("signing keys: %w", domain.ErrConflict)
	}
	return err
}

// LegacyKeys implements domain.KeyRepo.
func (r *KeyRing) LegacyKeys(ctx context.Context) ([]domain.SealedKey, error) {
	rows, err := r.db.QueryContext(ctx, "SELECT kid, alg, sealed, status, created_at FROM signing_keys WHERE status IN ('active', 'retired') ORDER BY created_at, kid")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []domain.SealedKey
	for rows.Next() {
		var k domain.SealedKey
		if err := rows.Scan(&k.KID, &k.Alg, &k.Sealed, &k.Status, &k.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteLegacyKey implements domain.KeyRepo.
func (r *KeyRing) DeleteLegacyKey(ctx context.Context, kid string) error {
	_, err := r.db.ExecContext(ctx, "DELETE FROM signing_keys WHERE kid = ?", kid)
	return err
}
