package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
)

// KEKSize is the required length of Local's key-encryption key (AES-256).
const KEKSize = 32

// maxPutAttempts bounds the retries of a Put that lost a version race
// (unique primary key violation). PostgreSQL serialises Puts per path with an
// advisory lock and SQLite has a single writer, so the retry is a safety net.
const maxPutAttempts = 50

// Local is the Store kept in the service's own database, sealed with
// AES-256-GCM under a KEK. Safe for concurrent use.
type Local struct {
	db   *sqlstore.DB
	aead cipher.AEAD
	now  func() time.Time
}

var _ Store = (*Local)(nil)

// NewLocal returns a Local over db sealing with kek (exactly KEKSize bytes).
// Call Migrate once at start-up to create its table.
func NewLocal(db *sqlstore.DB, kek []byte) (*Local, error) {
	if db == nil {
		return nil, errors.New("secrets: local store needs a database")
	}
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("secrets: local store KEK must be exactly %d bytes, got %d", KEKSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("secrets: local store cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block) // 96-bit nonces, 128-bit tags
	if err != nil {
		return nil, fmt.Errorf("secrets: local store GCM: %w", err)
	}
	return &Local{db: db, aead: aead, now: time.Now}, nil
}

const (
	createPostgres = `CREATE TABLE IF NOT EXISTS secret_versions (
	path       TEXT        NOT NULL,
	version    INTEGER     NOT NULL,
	sealed     BYTEA       NOT NULL,
	nonce      BYTEA       NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (path, version)
)`
	createSQLite = `CREATE TABLE IF NOT EXISTS secret_versions (
	path       TEXT      NOT NULL,
	version    INTEGER   NOT NULL,
	sealed     BLOB      NOT NULL,
	nonce      BLOB      NOT NULL,
	created_at TIMESTAMP NOT NULL,
	PRIMARY KEY (path, version)
)`
)

// Migrate creates the secret_versions table when it does not exist. It is
// idempotent and safe when replicas start together (on PostgreSQL it runs
// under a transaction-scoped advisory lock). It is not a sqlstore migration
// file on purpose: the service's own schema_migrations numbering stays its
// own.
func (l *Local) Migrate(ctx context.Context) error {
	err := l.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		ddl := createSQLite
		if tx.Driver() == sqlstore.Postgres {
			ddl = createPostgres
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", lockKey("migrate")); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, ddl)
		return err
	})
	if err != nil {
		return fmt.Errorf("secrets: create table secret_versions: %w", err)
	}
	return nil
}

// lockKey maps a name to a PostgreSQL advisory lock key in this package's
// own key space.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentidp/libs/secrets\x00" + name))
	return int64(h.Sum64())
}

// aad binds a sealed value to its row: moved to another path or version it
// no longer opens.
func aad(path string, version int) []byte {
	return []byte("agentidp-secrets-v1\x00" + path + "\x00" + strconv.Itoa(version))
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, path string, data map[string]string) (int, error) {
	if err := ValidatePath(path); err != nil {
		return 0, err
	}
	if data == nil {
		data = map[string]string{}
	}
	plain, err := json.Marshal(data)
	if err != nil { // cannot happen for map[string]string; the value is not quoted
		return 0, fmt.Errorf("secrets: put %q: encode data", path)
	}
	for attempt := 0; ; attempt++ {
		version, err := l.insertNext(ctx, path, plain)
		if err == nil {
			return version, nil
		}
		if !sqlstore.IsUniqueViolation(err) || attempt+1 >= maxPutAttempts {
			return 0, fmt.Errorf("secrets: put %q: %w", path, err)
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("secrets: put %q: %w", path, err)
		}
	}
}

// insertNext writes plain as version max+1 of path in one transaction.
func (l *Local) insertNext(ctx context.Context, path string, plain []byte) (int, error) {
	var version int
	err := l.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		if tx.Driver() == sqlstore.Postgres {
			// Serialise Puts to one path so that they do not all race for
			// the same version number (READ COMMITTED: the next statement
			// sees the previous holder's committed row).
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", lockKey(path)); err != nil {
				return err
			}
		}
		var last int
		if err := tx.QueryRowContext(ctx,
			"SELECT COALESCE(MAX(version), 0) FROM secret_versions WHERE path = ?", path).Scan(&last); err != nil {
			return err
		}
		version = last + 1
		nonce := make([]byte, l.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("nonce: %w", err)
		}
		sealed := l.aead.Seal(nil, nonce, plain, aad(path, version))
		_, err := tx.ExecContext(ctx,
			"INSERT INTO secret_versions (path, version, sealed, nonce, created_at) VALUES (?, ?, ?, ?, ?)",
			path, version, sealed, nonce, l.now().UTC().Truncate(time.Microsecond))
		return err
	})
	return version, err
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, path string) (Secret, error) {
	if err := ValidatePath(path); err != nil {
		return Secret{}, err
	}
	row := l.db.QueryRowContext(ctx,
		"SELECT version, sealed, nonce, created_at FROM secret_versions WHERE path = ? ORDER BY version DESC LIMIT 1", path)
	return l.open(path, row)
}

// GetVersion implements Store.
func (l *Local) GetVersion(ctx context.Context, path string, version int) (Secret, error) {
	if err := ValidatePath(path); err != nil {
		return Secret{}, err
	}
	if version < 1 {
		return Secret{}, fmt.Errorf("secrets: get %q version %d: %w", path, version, ErrNotFound)
	}
	row := l.db.QueryRowContext(ctx,
		"SELECT version, sealed, nonce, created_at FROM secret_versions WHERE path = ? AND version = ?", path, version)
	return l.open(path, row)
}

func (l *Local) open(path string, row *sql.Row) (Secret, error) {
	var (
		s             Secret
		sealed, nonce []byte
	)
	if err := row.Scan(&s.Version, &sealed, &nonce, &s.CreatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Secret{}, fmt.Errorf("secrets: get %q: %w", path, ErrNotFound)
		}
		return Secret{}, fmt.Errorf("secrets: get %q: %w", path, err)
	}
	if len(nonce) != l.aead.NonceSize() {
		return Secret{}, fmt.Errorf("secrets: open %q version %d: malformed nonce", path, s.Version)
	}
	plain, err := l.aead.Open(nil, nonce, sealed, aad(path, s.Version))
	if err != nil {
		// Wrong KEK, tampered ciphertext, or a row moved from another path.
		return Secret{}, fmt.Errorf("secrets: open %q version %d: authentication failed (wrong KEK or tampered row)", path, s.Version)
	}
	if err := json.Unmarshal(plain, &s.Data); err != nil {
		return Secret{}, fmt.Errorf("secrets: open %q version %d: malformed sealed payload", path, s.Version)
	}
	if s.Data == nil {
		s.Data = map[string]string{}
	}
	s.CreatedAt = s.CreatedAt.UTC()
	return s, nil
}

// List implements Store.
func (l *Local) List(ctx context.Context, prefix string) ([]string, error) {
	base, err := listBase(prefix)
	if err != nil {
		return nil, err
	}
	q := "SELECT DISTINCT path FROM secret_versions"
	var args []any
	if base != "" {
		// substr instead of LIKE (no escaping of '_') or a range (collation
		// dependent on PostgreSQL); paths are ASCII, so characters = bytes.
		q += " WHERE substr(path, 1, ?) = ?"
		args = append(args, len(base)+1, base+"/")
	}
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("secrets: list %q: %w", prefix, err)
	}
	defer rows.Close()
	var paths []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("secrets: list %q: %w", prefix, err)
		}
		paths = append(paths, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("secrets: list %q: %w", prefix, err)
	}
	return childNames(base, paths), nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, path string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	if _, err := l.db.ExecContext(ctx, "DELETE FROM secret_versions WHERE path = ?", path); err != nil {
		return fmt.Errorf("secrets: delete %q: %w", path, err)
	}
	return nil
}

// Ping implements Store: the database answers.
func (l *Local) Ping(ctx context.Context) error {
	if err := l.db.Ping(ctx); err != nil {
		return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	return nil
}
