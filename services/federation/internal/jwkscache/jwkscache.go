// Package jwkscache fetches and caches partner JWK sets. Fetches go through
// the SSRF-safe client (libs/safehttp), are size- and time-bounded, and are
// rate-limited per partner: the set is refreshed when older than Refresh
// and on an unknown kid, but at most once per MinInterval, so a flood of
// tokens with random kids costs at most one fetch per interval. The last
// good set is kept when the partner is down or answers with an empty or
// unusable set.
package jwkscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoUsableKeys is returned when a JWK set holds no key we can verify with.
var ErrNoUsableKeys = errors.New("JWK set has no usable signing key")

// Options configure a Cache.
type Options struct {
	// Client must be a safehttp client (no redirects, address policy).
	Client *http.Client
	// Refresh is the age after which a set is refetched (default 10m).
	Refresh time.Duration
	// MinInterval is the least time between two fetches of one partner's
	// set (default 30s).
	MinInterval time.Duration
	// MaxBytes caps a JWKS response (default 256 KiB).
	MaxBytes int64
	// Algs are the accepted algorithms (default RS256, ES256, EdDSA).
	Algs []jose.Alg
	// Shared, when set, holds fetched sets for Refresh so replicas share
	// them (a cold replica starts from it instead of fetching).
	Shared cache.Cache
	Logger *slog.Logger
	Now    func() time.Time
	// Registerer, when set, receives agentidp_federation_jwks_fetches_total
	// and agentidp_federation_jwks_age_seconds.
	Registerer prometheus.Registerer
}

// Fetch outcomes (label outcome of agentidp_federation_jwks_fetches_total).
const (
	OutcomeOK     = "ok"     // fetched and installed
	OutcomeError  = "error"  // unreachable, refused address, bad status, no usable key: last good set kept
	OutcomeShared = "shared" // installed from the set another replica fetched
)

// Cache holds one entry per partner.
type Cache struct {
	o       Options
	mu      sync.Mutex
	entries map[string]*entry
	fetches *prometheus.CounterVec
}

type entry struct {
	uri string

	mu        sync.RWMutex
	keys      map[string]*jose.VerificationKey
	fetchedAt time.Time

	fetchMu     sync.Mutex // one fetch at a time per partner
	lastAttempt time.Time  // guarded by fetchMu
}

// New returns an empty cache.
func New(o Options) *Cache {
	if o.Client == nil {
		o.Client = safehttp.NewClient(safehttp.Options{Timeout: 5 * time.Second})
	}
	if o.Refresh <= 0 {
		o.Refresh = 10 * time.Minute
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 30 * time.Second
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 10
	}
	if len(o.Algs) == 0 {
		o.Algs = []jose.Alg{jose.RS256, jose.ES256, jose.EdDSA}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cache{o: o, entries: make(map[string]*entry)}
	c.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentidp_federation_jwks_fetches_total",
		Help: "Partner JWK set fetches by partner and outcome (ok, error: the last good set is kept, shared: taken from another replica's fetch).",
	}, []string{"partner", "outcome"})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentidp_federation_jwks_age_seconds",
		Help: "Age of the oldest partner JWK set held (0 with none): a partner whose refreshes keep failing makes it grow past the refresh interval.",
	}, c.oldestAge)
	if o.Registerer != nil {
		c.fetches = httpx.Register(o.Registerer, c.fetches)
		httpx.Register(o.Registerer, age)
	}
	return c
}

// oldestAge is the age in seconds of the oldest set held.
func (c *Cache) oldestAge() float64 {
	c.mu.Lock()
	entries := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	now := c.o.Now()
	var oldest time.Duration
	for _, e := range entries {
		e.mu.RLock()
		if len(e.keys) > 0 {
			oldest = max(oldest, now.Sub(e.fetchedAt))
		}
		e.mu.RUnlock()
	}
	return oldest.Seconds()
}

// entry returns the partner's entry, replacing it when the URI changed.
func (c *Cache) entry(id, uri string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.uri != uri {
		e = &entry{uri: uri}
		c.entries[id] = e
	}
	return e
}

// Load fetches uri now and, when it holds at least one usable key, makes it
// the partner's set (registration and JWKS URI changes use it to validate).
func (c *Cache) Load(ctx context.Context, id, uri string) error {
	keys, raw, err := c.fetch(ctx, uri)
	if err != nil {
		c.fetches.WithLabelValues(id, OutcomeError).Inc()
		return err
	}
	c.fetches.WithLabelValues(id, OutcomeOK).Inc()
	e := c.entry(id, uri)
	e.fetchMu.Lock()
	e.lastAttempt = c.o.Now()
	e.fetchMu.Unlock()
	c.install(ctx, id, e, keys, raw)
	return nil
}

// Forget drops the partner's cached set (deletion, URI change).
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
	c.fetches.DeletePartialMatch(prometheus.Labels{"partner": id})
	if c.o.Shared != nil {
		_ = c.o.Shared.Delete(context.Background(), sharedKey(id))
	}
}

// KeySet returns the partner's key set for one verification; lookups fetch
// as described in the package comment, bounded by ctx.
func (c *Cache) KeySet(ctx context.Context, id, uri string) jose.KeySet {
	return &keySet{c: c, ctx: ctx, id: id, e: c.entry(id, uri)}
}

type keySet struct {
	c   *Cache
	ctx context.Context
	id  string
	e   *entry
}

// Key implements jose.KeySet.
func (ks *keySet) Key(kid string) (*jose.VerificationKey, bool) {
	k, ok, stale := ks.e.lookup(kid, ks.c.o.Now(), ks.c.o.Refresh)
	switch {
	case ok && !stale:
		return k, true
	case ok:
		// Known key, old set: refresh in the background and answer now.
		go ks.c.refresh(context.WithoutCancel(ks.ctx), ks.id, ks.e)
		return k, true
	}
	ks.c.refresh(ks.ctx, ks.id, ks.e)
	k, ok, _ = ks.e.lookup(kid, ks.c.o.Now(), ks.c.o.Refresh)
	return k, ok
}

func (e *entry) lookup(kid string, now time.Time, refresh time.Duration) (*jose.VerificationKey, bool, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	k, ok := e.keys[kid]
	return k, ok, now.Sub(e.fetchedAt) >= refresh
}

// refresh fetches the partner's set unless another fetch happened within
// MinInterval. Callers arriving during a fetch wait for it and then find
// the interval used up, so concurrent misses share one fetch.
func (c *Cache) refresh(ctx context.Context, id string, e *entry) {
	e.fetchMu.Lock()
	defer e.fetchMu.Unlock()
	e.mu.RLock()
	empty := len(e.keys) == 0
	e.mu.RUnlock()
	if empty && c.loadShared(ctx, id, e) {
		return
	}
	now := c.o.Now()
	if !e.lastAttempt.IsZero() && now.Sub(e.lastAttempt) < c.o.MinInterval {
		return
	}
	e.lastAttempt = now
	keys, raw, err := c.fetch(ctx, e.uri)
	if err != nil {
		c.fetches.WithLabelValues(id, OutcomeError).Inc()
		c.o.Logger.Warn("partner JWKS refresh failed; keeping the last good set", "partner", id, "err", err)
		return
	}
	c.fetches.WithLabelValues(id, OutcomeOK).Inc()
	c.install(ctx, id, e, keys, raw)
}

func (c *Cache) install(ctx context.Context, id string, e *entry, keys map[string]*jose.VerificationKey, raw []byte) {
	e.mu.Lock()
	e.keys, e.fetchedAt = keys, c.o.Now()
	e.mu.Unlock()
	if c.o.Shared != nil {
		b, err := json.Marshal(sharedSet{URI: e.uri, JWKS: raw})
		if err == nil {
			_ = c.o.Shared.Set(ctx, sharedKey(id), b, c.o.Refresh)
		}
	}
}

type sharedSet struct {
	URI  string          `json:"uri"`
	JWKS json.RawMessage `json:"jwks"`
}

func sharedKey(id string) string { return "federation:jwks:" + id }

// loadShared installs the set another replica fetched, if any.
func (c *Cache) loadShared(ctx context.Context, id string, e *entry) bool {
	if c.o.Shared == nil {
		return false
	}
	b, ok, err := c.o.Shared.Get(ctx, sharedKey(id))
	if err != nil || !ok {
		return false
	}
	var s sharedSet
	if json.Unmarshal(b, &s) != nil || s.URI != e.uri {
		return false
	}
	keys, err := c.parse(s.JWKS)
	if err != nil {
		return false
	}
	e.mu.Lock()
	e.keys, e.fetchedAt = keys, c.o.Now()
	e.mu.Unlock()
	c.fetches.WithLabelValues(id, OutcomeShared).Inc()
	return true
}

// fetch GETs uri and parses the set.
func (c *Cache) fetch(ctx context.Context, uri string) (map[string]*jose.VerificationKey, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetch JWKS: HTTP %d", resp.StatusCode)
	}
	body, err := safehttp.ReadBody(resp.Body, c.o.MaxBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read JWKS: %w", err)
	}
	keys, err := c.parse(body)
	if err != nil {
		return nil, nil, err
	}
	return keys, body, nil
}

// parse keeps every key that can verify one of the accepted algorithms and
// skips the rest (encryption keys, unknown types) rather than rejecting the
// set: partners publish mixed sets. A key without alg gets the one algorithm
// its type allows (EC P-256 → ES256, Ed25519 → EdDSA, RSA → RS256), so the
// algorithm stays pinned by the key.
func (c *Cache) parse(body []byte) (map[string]*jose.VerificationKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON key set: %w", err)
	}
	keys := make(map[string]*jose.VerificationKey)
	for _, raw := range set.Keys {
		var j jose.JWK
		if json.Unmarshal(raw, &j) != nil || j.Kid == "" || (j.Use != "" && j.Use != "sig") {
			continue
		}
		if j.Alg == "" {
			switch {
			case j.Kty == "EC" && j.Crv == "P-256":
				j.Alg = string(jose.ES256)
			case j.Kty == "OKP" && j.Crv == "Ed25519":
				j.Alg = string(jose.EdDSA)
			case j.Kty == "RSA":
				j.Alg = string(jose.RS256)
			}
		}
		if !slices.Contains(c.o.Algs, jose.Alg(j.Alg)) {
			continue
		}
		vk, err := jose.NewVerificationKey(j)
		if err != nil {
			continue
		}
		if _, dup := keys[vk.KID]; dup {
			continue
		}
		keys[vk.KID] = vk
	}
	if len(keys) == 0 {
		return nil, ErrNoUsableKeys
	}
	return keys, nil
}
