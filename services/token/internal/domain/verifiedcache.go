package domain

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// verifiedCache remembers tokens this service has verified, so a token
// presented again (an actor token reused for several exchanges, a token
// introspected repeatedly) costs a map lookup instead of an ES256
// verification. An entry is used only while the token is unexpired and its
// key is still published; revocation is always checked afresh by the
// caller, after the cache. Bounded: a full shard is emptied.
type verifiedCache struct {
	seed   maphash.Seed
	shards [16]verifiedShard
	max    int // entries per shard
}

type verifiedShard struct {
	mu sync.Mutex
	m  map[string]verifiedEntry
}

type verifiedEntry struct {
	claims AccessClaims
	kid    string
}

func newVerifiedCache(size int) *verifiedCache {
	c := &verifiedCache{seed: maphash.MakeSeed(), max: max(size/16, 1)}
	for i := range c.shards {
		c.shards[i].m = map[string]verifiedEntry{}
	}
	return c
}

func (c *verifiedCache) shard(token string) *verifiedShard {
	return &c.shards[maphash.String(c.seed, token)%uint64(len(c.shards))]
}

// get returns the cached claims when the token is unexpired and its key is
// still in keys.
func (c *verifiedCache) get(token string, keys jose.KeySet, now time.Time) (AccessClaims, bool) {
	s := c.shard(token)
	s.mu.Lock()
	e, ok := s.m[token]
	s.mu.Unlock()
	if !ok || e.claims.ExpiresAt <= now.Unix() {
		return AccessClaims{}, false
	}
	if _, ok := keys.Key(e.kid); !ok {
		return AccessClaims{}, false
	}
	return e.claims, true
}

func (c *verifiedCache) put(token, kid string, claims AccessClaims) {
	s := c.shard(token)
	s.mu.Lock()
	if len(s.m) >= c.max {
		s.m = make(map[string]verifiedEntry, c.max)
	}
	s.m[token] = verifiedEntry{claims: claims, kid: kid}
	s.mu.Unlock()
}
