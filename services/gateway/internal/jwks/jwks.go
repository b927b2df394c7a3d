// Package jwks keeps the token service's signing keys in memory for the
// gateway: fetched over HTTP at start, refreshed periodically, and refetched
// on an unknown kid at most once per interval however many callers ask, so a
// flood of tokens with random kids cannot turn into a flood of fetches.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// maxBody caps a JWKS response; real key sets are a few KiB.
const maxBody = 1 << 20

// Options configure a Cache.
type Options struct {
	URL         string        // the jwks_uri
	Client      *http.Client  // default: 5 s timeout
	MinInterval time.Duration // minimum time between kid-triggered fetches (default 10 s)
	Logger      *slog.Logger
	Now         func() time.Time // tests
}

// Cache is a jose.KeySet whose keys come from a remote JWKS. Key lookups
// are a single atomic load; fetching never blocks them.
type Cache struct {
	opts    Options
	keys    atomic.Pointer[jose.StaticKeySet]
	fetches atomic.Int64

	mu          sync.Mutex
	inflight    *flight
	lastAttempt time.Time
}

type flight struct {
	done chan struct{}
	err  error
}

// New returns an empty cache; call Refresh (or Run) to load it.
func New(o Options) *Cache {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{opts: o}
}

// Key implements jose.KeySet.
func (c *Cache) Key(kid string) (*jose.VerificationKey, bool) {
	ks := c.keys.Load()
	if ks == nil {
		return nil, false
	}
	return ks.Key(kid)
}

// Loaded reports whether a key set has been fetched successfully.
func (c *Cache) Loaded() bool { return c.keys.Load() != nil }

// Fetches returns how many HTTP fetches were attempted (tests, metrics).
func (c *Cache) Fetches() int64 { return c.fetches.Load() }

// Refresh fetches the key set now, joining a fetch already in flight.
func (c *Cache) Refresh(ctx context.Context) error {
	return c.do(ctx, false)
}

// RefreshForKid is called when a token names a kid the cache does not hold.
// It refetches unless a fetch happened less than MinInterval ago (then it
// returns at once) and reports whether kid is known afterwards. Concurrent
// callers share one fetch.
func (c *Cache) RefreshForKid(ctx context.Context, kid string) bool {
	if _, ok := c.Key(kid); ok {
		return true
	}
	if err := c.do(ctx, true); err != nil {
		return false
	}
	_, ok := c.Key(kid)
	return ok
}

var errTooSoon = errors.New("jwks: refetched recently")

func (c *Cache) do(ctx context.Context, rateLimited bool) error {
	c.mu.Lock()
	if f := c.inflight; f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := c.opts.Now()
	if rateLimited && !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < c.opts.MinInterval {
		c.mu.Unlock()
		return errTooSoon
	}
	c.lastAttempt = now
	f := &flight{done: make(chan struct{})}
	c.inflight = f
	c.mu.Unlock()

	// The fetch outlives an impatient caller so that the others waiting
	// on it still get a result.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	f.err = c.fetch(fctx)
	cancel()

	c.mu.Lock()
	c.inflight = nil
	c.mu.Unlock()
	close(f.done)
	if f.err != nil {
		c.opts.Logger.Warn("jwks fetch failed", "url", c.opts.URL, "err", f.err)
	}
	return f.err
}

func (c *Cache) fetch(ctx context.Context) error {
	c.fetches.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.URL, nil)
	if err != nil {
		return fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	var set jose.JWKS
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&set); err != nil {
		return fmt.Errorf("decode jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("jwks: no keys")
	}
	ks, err := jose.NewStaticKeySet(set)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	c.keys.Store(ks)
	return nil
}

// Run loads the key set (retrying every retry until it succeeds), then
// refreshes it every interval until ctx ends. A failed refresh keeps the
// keys already held.
func (c *Cache) Run(ctx context.Context, interval, retry time.Duration) {
	for !c.Loaded() {
		if err := c.Refresh(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = c.Refresh(ctx)
		}
	}
}
