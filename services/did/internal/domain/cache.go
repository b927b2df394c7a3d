package domain

import (
	"sync"
	"time"
)

// docCache is a bounded in-memory cache of rendered views. Entries expire
// after ttl so that replicas which missed an invalidation converge; when
// full, an arbitrary entry is evicted (map iteration order), which keeps
// the bound without bookkeeping.
type docCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	now     func() time.Time
	entries map[string]cacheEntry
}

type cacheEntry struct {
	v       View
	expires time.Time
}

func newDocCache(max int, ttl time.Duration, now func() time.Time) *docCache {
	return &docCache{max: max, ttl: ttl, now: now, entries: make(map[string]cacheEntry)}
}

func (c *docCache) get(key string) (View, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		return View{}, false
	}
	return e.v, true
}

func (c *docCache) put(key string, v View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = cacheEntry{v: v, expires: c.now().Add(c.ttl)}
}

func (c *docCache) invalidate(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

func (c *docCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
