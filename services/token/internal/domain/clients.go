package domain

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ClientCache keeps client records in memory so that token issuance does
// not touch the database. Entries live for TTL and are dropped at once when
// a local mutation or an agent.*/credential.* event names the client.
// Unknown clients are cached too (negative entries), so a flood of bogus
// client ids cannot turn into a flood of queries.
type ClientCache struct {
	load func(ctx context.Context, id string) (ClientRecord, error)
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu       sync.Mutex
	entries  map[string]cacheEntry
	inflight map[string]*loadCall
	gen      map[string]uint64 // set by Invalidate to a fresh seq; guards against stale loads
	seq      uint64
	running  int // loads in progress (gen may only be trimmed when zero)
}

type cacheEntry struct {
	rec     ClientRecord
	missing bool
	expires time.Time
}

type loadCall struct {
	done    chan struct{}
	rec     ClientRecord
	missing bool
	err     error
}

// NewClientCache returns a cache of at most max entries.
func NewClientCache(load func(ctx context.Context, id string) (ClientRecord, error), ttl time.Duration, max int) *ClientCache {
	if max <= 0 {
		max = 100_000
	}
	return &ClientCache{load: load, ttl: ttl, max: max, now: time.Now,
		entries: map[string]cacheEntry{}, inflight: map[string]*loadCall{}, gen: map[string]uint64{}}
}

// Get returns the client's record; found is false for an unknown client.
// Concurrent misses for one id share a single load.
func (c *ClientCache) Get(ctx context.Context, id string) (rec ClientRecord, found bool, err error) {
	rec, found, _, err = c.lookup(ctx, id)
	return rec, found, err
}

// GetOrReload is Get for authentication: when a cached record does not
// accept the caller (ok reports false: an unknown client, or no credential
// or key matching), the record is read from the store once more before the
// caller is refused. A credential or agent created a moment ago through
// another replica is then usable at once (read-your-writes), while the
// success path stays a cache hit. Failed authentication is throttled, and
// concurrent reloads of one id share a single load.
func (c *ClientCache) GetOrReload(ctx context.Context, id string, ok func(ClientRecord, bool) bool) (rec ClientRecord, found bool, err error) {
	rec, found, cached, err := c.lookup(ctx, id)
	if err != nil || !cached || ok(rec, found) {
		return rec, found, err
	}
	c.Invalidate(id)
	return c.Get(ctx, id)
}

// lookup is Get, also reporting whether the record came from the cache
// rather than from a load this call waited for.
func (c *ClientCache) lookup(ctx context.Context, id string) (rec ClientRecord, found, cached bool, err error) {
	c.mu.Lock()
	if e, ok := c.entries[id]; ok && c.now().Before(e.expires) {
		c.mu.Unlock()
		return e.rec, !e.missing, true, nil
	}
	call, ok := c.inflight[id]
	if !ok {
		call = &loadCall{done: make(chan struct{})}
		c.inflight[id] = call
		gen := c.gen[id]
		c.running++
		c.mu.Unlock()
		c.runLoad(id, gen, call)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return ClientRecord{}, false, false, ctx.Err()
	}
	return call.rec, !call.missing && call.err == nil, false, call.err
}

func (c *ClientCache) runLoad(id string, gen uint64, call *loadCall) {
	// The load runs detached from any one caller's context so that a
	// cancelled request does not fail the others waiting on it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rec, err := c.load(ctx, id)
	cancel()
	if errors.Is(err, ErrNotFound) {
		call.missing, err = true, nil
	}
	call.rec, call.err = rec, err
	c.mu.Lock()
	c.running--
	if c.inflight[id] == call {
		delete(c.inflight, id)
	}
	// Only cache what no invalidation raced with.
	if err == nil && c.gen[id] == gen {
		if len(c.entries) >= c.max {
			c.evictLocked()
		}
		c.entries[id] = cacheEntry{rec: rec, missing: call.missing, expires: c.now().Add(c.ttl)}
	}
	c.mu.Unlock()
	close(call.done)
}

// evictLocked drops expired entries, then arbitrary ones, until there is room
// for one more (map iteration order is random enough for a bounded cache).
func (c *ClientCache) evictLocked() {
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, k)
	}
	if len(c.gen) > c.max && c.running == 0 {
		c.gen = map[string]uint64{}
	}
}

// Invalidate drops the client's entry and detaches any load in flight, so
// the next Get reads the store again.
func (c *ClientCache) Invalidate(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	delete(c.inflight, id)
	c.seq++
	c.gen[id] = c.seq
	c.mu.Unlock()
}

// Len is the number of cached entries.
func (c *ClientCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
