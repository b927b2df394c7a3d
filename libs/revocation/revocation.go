// Package revocation is the one definition of "is this access token
// revoked?", shared by the token service (introspection) and the gateway
// (every request).
//
// Revocation state is a set of entries keyed "<kind>.<key>" whose value is
// a not-before instant in Unix milliseconds:
//
//   - jti.<jti>: that one token is revoked (any value);
//   - agent.<agentId>, credential.<credentialId>, org.<orgId>: a watermark —
//     every token whose sub (or actor), credential_id or organization_id
//     matches and that was issued at or before the watermark is revoked;
//   - chain.<chainId>: a revoked delegation chain (any value) — every token
//     that names the chain among its chain ids (its own and its ancestors',
//     see Token.Chains) is revoked, so revoking a parent chain kills every
//     chain derived from it without a lookup.
//
// Watermarks instead of lists of tokens keep revoking an agent with a
// million live tokens one entry. Issue times are compared in milliseconds
// (the private claim iat_ms, see IssuedAtMs), so a token issued in the same
// second as a revocation but after it — e.g. after a reactivation — works,
// while one issued in the same millisecond or earlier does not.
//
// The token service stores entries durably and mirrors them into the NATS
// KV bucket Bucket; every consumer keeps a Set current from that bucket
// (Apply is a natsbus.WatchKV callback) and checks it in memory.
//
// The bucket also carries heartbeats, "heartbeat.<replica>", written by
// every token service replica every HeartbeatInterval while its mirror is
// healthy (see IsHeartbeat). They carry no revocation state: they let a
// consumer prove that its copy is fresh instead of assuming it from "no
// update arrived" — a watch delivers the bucket in order, so receiving a
// heartbeat means every entry written before it has been applied.
package revocation

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bucket is the NATS KV bucket mirroring the token service's revocations.
// Its TTL (MaxAge) is at least the longest token lifetime plus a margin, so
// an entry disappears only when no token it covers can still be accepted.
const Bucket = "agentidp_revocations"

// Kind is the kind of a revocation entry.
type Kind string

// Kinds of entries.
const (
	KindJTI        Kind = "jti"
	KindAgent      Kind = "agent"
	KindCredential Kind = "credential"
	KindOrg        Kind = "org"
	KindChain      Kind = "chain"
)

// HeartbeatPrefix starts the key of a token service replica's heartbeat.
const HeartbeatPrefix = "heartbeat."

// HeartbeatInterval is how often a token service replica writes its
// heartbeat. A consumer that heard nothing (entry or heartbeat) for longer
// than its staleness bound stops trusting its copy.
const HeartbeatInterval = 500 * time.Millisecond

// IsHeartbeat reports whether a KV key is a heartbeat, not an entry.
func IsHeartbeat(key string) bool { return strings.HasPrefix(key, HeartbeatPrefix) }

// HeartbeatKey is the KV key of replica's heartbeat; characters a key part
// may not hold are replaced, so any host name works.
func HeartbeatKey(replica string) string {
	b := []byte(replica)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		b = []byte("_")
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return HeartbeatPrefix + string(b)
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindJTI, KindAgent, KindCredential, KindOrg, KindChain:
		return true
	}
	return false
}

// Key is the KV key of an entry: "<kind>.<key>".
func Key(kind Kind, key string) string { return string(kind) + "." + key }

// ParseKey splits a KV key into kind and key.
func ParseKey(s string) (Kind, string, bool) {
	k, rest, ok := strings.Cut(s, ".")
	if !ok || rest == "" || !Kind(k).Valid() {
		return "", "", false
	}
	return Kind(k), rest, true
}

// ValidKeyPart reports whether key can be part of a NATS KV key (the ids
// used here are UUIDs; anything else is refused rather than mangled).
func ValidKeyPart(key string) bool {
	if key == "" || len(key) > 256 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

// FormatValue is the KV value of a not-before instant.
func FormatValue(notBeforeMs int64) []byte { return strconv.AppendInt(nil, notBeforeMs, 10) }

// ParseValue parses a KV value.
func ParseValue(b []byte) (int64, bool) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil && v >= 0
}

// Millis is t in Unix milliseconds.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// IssuedAtMs is a token's issue time in milliseconds: iatMs (the private
// claim iat_ms) when it agrees with iat (seconds), otherwise the first
// millisecond of the iat second — so a token without iat_ms issued in the
// same second as a revocation counts as issued at or before it (fail
// closed).
func IssuedAtMs(iat, iatMs int64) int64 {
	if iatMs > 0 && iatMs/1000 == iat {
		return iatMs
	}
	return iat * 1000
}

// Token is what the revocation check needs of a verified access token.
type Token struct {
	JTI          string
	Subject      string
	CredentialID string
	OrgID        string
	// Actors are the delegation chain's agents (RFC 8693 act); revoking
	// any of them revokes the delegated token.
	Actors []string
	// IssuedAtMs is the issue time (see IssuedAtMs).
	IssuedAtMs int64
	// Chains are the delegation chain ids the token was issued under (its
	// own and every ancestor's); revoking any of them revokes the token.
	Chains []string
	// Parents are the tokens a delegated token was derived from (their
	// JTI, Subject, CredentialID and IssuedAtMs; at most MaxParents are
	// checked): revoking a parent token, or a watermark that covers it,
	// revokes the derived token too. Parents of parents are not followed —
	// a derived token carries its whole ancestry flat.
	Parents []Token
}

// MaxParents bounds how many Parents a check looks at.
const MaxParents = 32

// Set is an in-memory revocation set, safe for concurrent use. Lookups take
// a read lock and allocate nothing (one map per kind, keyed by the bare id).
type Set struct {
	mu    sync.RWMutex
	m     [5]map[string]int64 // by kindIndex: key → not before (ms)
	n     int
	ready atomic.Bool
}

var kinds = [5]Kind{KindJTI, KindAgent, KindCredential, KindOrg, KindChain}

func kindIndex(k Kind) int {
	switch k {
	case KindJTI:
		return 0
	case KindAgent:
		return 1
	case KindCredential:
		return 2
	case KindOrg:
		return 3
	case KindChain:
		return 4
	}
	return -1
}

// NewSet returns an empty set (not ready).
func NewSet() *Set {
	s := &Set{}
	for i := range s.m {
		s.m[i] = map[string]int64{}
	}
	return s
}

// Put records an entry. A watermark only moves forward: a later
// reactivation must not bring back tokens an earlier suspension revoked.
// Unknown kinds are ignored.
func (s *Set) Put(kind Kind, key string, notBeforeMs int64) {
	i := kindIndex(kind)
	if i < 0 || key == "" {
		return
	}
	s.mu.Lock()
	if old, ok := s.m[i][key]; !ok || notBeforeMs > old {
		if !ok {
			s.n++
		}
		s.m[i][key] = notBeforeMs
	}
	s.mu.Unlock()
}

// Delete drops an entry.
func (s *Set) Delete(kind Kind, key string) {
	i := kindIndex(kind)
	if i < 0 {
		return
	}
	s.mu.Lock()
	if _, ok := s.m[i][key]; ok {
		delete(s.m[i], key)
		s.n--
	}
	s.mu.Unlock()
}

// Apply is a natsbus.WatchKV callback: it records the entry under KV key
// key, or drops it when value is nil. Heartbeats are ignored (and reported
// true); malformed entries are ignored and reported false.
func (s *Set) Apply(key string, value []byte) bool {
	if IsHeartbeat(key) {
		return true
	}
	kind, k, ok := ParseKey(key)
	if !ok {
		return false
	}
	if value == nil {
		s.Delete(kind, k)
		return true
	}
	v, ok := ParseValue(value)
	if !ok {
		return false
	}
	s.Put(kind, k, v)
	return true
}

// Get returns the entry's not-before instant.
func (s *Set) Get(kind Kind, key string) (int64, bool) {
	i := kindIndex(kind)
	if i < 0 {
		return 0, false
	}
	s.mu.RLock()
	v, ok := s.m[i][key]
	s.mu.RUnlock()
	return v, ok
}

// Revoked reports whether t is revoked: its jti is revoked, it was issued
// at or before the watermark of its subject, an actor, its credential or
// its organisation, it names a revoked delegation chain, or one of its
// parents is revoked.
func (s *Set) Revoked(t Token) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.n == 0 {
		return false
	}
	if s.revokedLocked(t) {
		return true
	}
	for _, c := range t.Chains {
		if _, ok := s.m[4][c]; ok && c != "" {
			return true
		}
	}
	for i, p := range t.Parents {
		if i >= MaxParents {
			break
		}
		if s.revokedLocked(p) {
			return true
		}
	}
	return false
}

func (s *Set) revokedLocked(t Token) bool {
	if t.JTI != "" {
		if _, ok := s.m[0][t.JTI]; ok {
			return true
		}
	}
	if covers(s.m[1], t.Subject, t.IssuedAtMs) || covers(s.m[2], t.CredentialID, t.IssuedAtMs) ||
		covers(s.m[3], t.OrgID, t.IssuedAtMs) {
		return true
	}
	for _, a := range t.Actors {
		if covers(s.m[1], a, t.IssuedAtMs) {
			return true
		}
	}
	return false
}

func covers(m map[string]int64, key string, iatMs int64) bool {
	if key == "" {
		return false
	}
	w, ok := m[key]
	return ok && iatMs <= w
}

// Prune drops entries whose not-before instant is older than beforeMs: no
// token they cover can still be accepted. It returns how many it dropped.
func (s *Set) Prune(beforeMs int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := range s.m {
		for k, v := range s.m[i] {
			if v < beforeMs {
				delete(s.m[i], k)
				n++
			}
		}
	}
	s.n -= n
	return n
}

// Len is the number of entries.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}

// Snapshot returns a copy of the entries (KV key → not before).
func (s *Set) Snapshot() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int64, s.n)
	for i := range s.m {
		for k, v := range s.m[i] {
			out[Key(kinds[i], k)] = v
		}
	}
	return out
}

// MarkReady records that the set holds the complete state (initial load
// done). Until then a consumer must not answer "not revoked".
func (s *Set) MarkReady() { s.ready.Store(true) }

// Ready reports whether MarkReady was called.
func (s *Set) Ready() bool { return s.ready.Load() }
