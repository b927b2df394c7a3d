package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// MinKeyLen is the shortest audit key accepted (256 bits).
const MinKeyLen = 32

// Key is one audit key: ID is derived from Secret (KeyID) and stored with
// every record and checkpoint written under it.
type Key struct {
	ID     string
	Secret []byte
}

// KeyID returns the id of an audit key: the first 8 bytes of
// SHA-256("agentidp-audit-key-id" || secret) in hex. It is derived rather
// than configured so that a key cannot be given the id of another; it
// reveals nothing usable about a 256-bit key.
func KeyID(secret []byte) string {
	h := sha256.New()
	_, _ = h.Write([]byte("agentidp-audit-key-id"))
	_, _ = h.Write(secret)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Keyring holds the current audit key, which keys new records and signs
// new checkpoints and anchors, and the previous keys, which only verify
// what was written under them (key rotation).
type Keyring struct {
	current Key
	byID    map[string]Key
}

// NewKeyring returns the keyring of current and previous keys; every key
// must be at least MinKeyLen bytes.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	if len(current) < MinKeyLen {
		return nil, errors.New("audit key: must be at least 32 bytes")
	}
	cur := Key{ID: KeyID(current), Secret: current}
	r := &Keyring{current: cur, byID: map[string]Key{cur.ID: cur}}
	for _, p := range previous {
		if len(p) < MinKeyLen {
			return nil, errors.New("previous audit key: must be at least 32 bytes")
		}
		k := Key{ID: KeyID(p), Secret: p}
		if _, dup := r.byID[k.ID]; !dup {
			r.byID[k.ID] = k
		}
	}
	return r, nil
}

// Current returns the key new records are written under.
func (r *Keyring) Current() Key { return r.current }

// Lookup returns the key with id ("" is never a key).
func (r *Keyring) Lookup(id string) (Key, bool) {
	if id == "" {
		return Key{}, false
	}
	k, ok := r.byID[id]
	return k, ok
}

// Secrets returns every key's secret, current first (to check signatures
// of checkpoints written before keys had ids).
func (r *Keyring) Secrets() [][]byte {
	out := [][]byte{r.current.Secret}
	for id, k := range r.byID {
		if id != r.current.ID {
			out = append(out, k.Secret)
		}
	}
	return out
}
