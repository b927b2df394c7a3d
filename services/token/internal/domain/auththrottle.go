package domain

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Failed client authentication is throttled per client id and per source
// address. Failures are counted in fixed windows in the shared cache (Redis
// in production), so every replica adds to one count; the success path only
// looks at an in-memory set of blocked keys, which each replica fills when
// a count it increments reaches the limit and when another replica
// announces a block (AuthBlock, over core NATS). See docs/security.md,
// "Failed authentication".

// Defaults of the failed-authentication throttle.
const (
	DefaultAuthFailClientLimit = 10
	DefaultAuthFailAddrLimit   = 100
	DefaultAuthFailWindow      = time.Minute
)

// AuthThrottleSettings configure the failed-authentication throttle. A
// zero limit disables that dimension.
type AuthThrottleSettings struct {
	// ClientLimit is how many failed authentications of one client id a
	// window admits; the attempts after it are refused with 429 until the
	// window ends, the right secret included.
	ClientLimit int64
	// AddrLimit is the same per source address, across client ids.
	AddrLimit int64
	// Window is the length of the fixed counting windows.
	Window time.Duration
}

// FailureCounter is the part of the shared cache the throttle needs.
type FailureCounter interface {
	// IncrBy adds n to key (created with expiry expireAt) and returns the
	// new value.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
}

// Block kinds of an AuthBlock.
const (
	BlockClient = "client"
	BlockAddr   = "addr"
)

// AuthBlock is one blocked key: a client id or a source address refused
// until Until. Replicas tell each other about the blocks they set.
type AuthBlock struct {
	Kind  string    `json:"kind"` // BlockClient or BlockAddr
	Key   string    `json:"key"`
	Until time.Time `json:"until"`
}

type blockKey struct {
	addr bool
	key  string
}

// authThrottle counts failures and keeps the blocked set.
type authThrottle struct {
	cfg      AuthThrottleSettings
	shared   FailureCounter // nil: local only
	local    FailureCounter // when the shared counter fails (or is absent)
	announce func(AuthBlock)
	log      *slog.Logger

	active   atomic.Int64 // len(blocked): the success path skips the lock when 0
	prunedAt atomic.Int64 // unix second of the last prune
	mu       sync.RWMutex
	blocked  map[blockKey]time.Time
}

// maxBlocked bounds the blocked set; past it expired entries are dropped
// first, then the set stops growing (the shared count still refuses at
// the next failure).
const maxBlocked = 1 << 20

func newAuthThrottle(cfg AuthThrottleSettings, shared, local FailureCounter, announce func(AuthBlock), log *slog.Logger) *authThrottle {
	if cfg.Window <= 0 {
		cfg.Window = DefaultAuthFailWindow
	}
	if announce == nil {
		announce = func(AuthBlock) {}
	}
	return &authThrottle{cfg: cfg, shared: shared, local: local, announce: announce, log: log, blocked: map[blockKey]time.Time{}}
}

// blockedFor reports how long the client id or the address source returns
// (nil: none) is still refused (0: not blocked). It is on the success
// path: no I/O, and nothing at all, addr not even called, while no key is
// blocked.
func (t *authThrottle) blockedFor(clientID string, source func() string, now time.Time) time.Duration {
	if t == nil || t.active.Load() == 0 {
		return 0
	}
	addr := ""
	if source != nil {
		addr = source()
	}
	var until time.Time
	t.mu.RLock()
	if clientID != "" {
		if u, ok := t.blocked[blockKey{key: clientID}]; ok {
			until = u
		}
	}
	if addr != "" {
		if u, ok := t.blocked[blockKey{addr: true, key: addr}]; ok && u.After(until) {
			until = u
		}
	}
	t.mu.RUnlock()
	if !until.After(now) {
		return 0
	}
	return until.Sub(now)
}

// block refuses key until until on this replica.
func (t *authThrottle) block(b AuthBlock, now time.Time) {
	if !b.Until.After(now) {
		return
	}
	k := blockKey{addr: b.Kind == BlockAddr, key: b.Key}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.blocked) >= maxBlocked {
		for k, u := range t.blocked {
			if !u.After(now) {
				delete(t.blocked, k)
			}
		}
		if len(t.blocked) >= maxBlocked {
			return
		}
	}
	if u, ok := t.blocked[k]; !ok || b.Until.After(u) {
		t.blocked[k] = b.Until
	}
	t.active.Store(int64(len(t.blocked)))
}

// prune drops expired blocks, at most once a second (from the failure path).
func (t *authThrottle) prune(now time.Time) {
	if t.active.Load() == 0 || t.prunedAt.Swap(now.Unix()) == now.Unix() {
		return
	}
	t.mu.Lock()
	for k, u := range t.blocked {
		if !u.After(now) {
			delete(t.blocked, k)
		}
	}
	t.active.Store(int64(len(t.blocked)))
	t.mu.Unlock()
}

// failed counts one failed authentication of clientID (when it is a
// well-formed id) from addr (when known) and returns how long this
// attempt's keys are now refused: 0 while both counts are within their
// limits. The count that reaches a limit blocks the key here and
// announces the block to the other replicas.
func (t *authThrottle) failed(ctx context.Context, clientID, addr string, now time.Time) time.Duration {
	if t == nil {
		return 0
	}
	t.prune(now)
	start := now.Truncate(t.cfg.Window)
	end := start.Add(t.cfg.Window)
	suffix := ":" + strconv.FormatInt(start.Unix(), 10)
	var wait time.Duration
	count := func(kind, key string, limit int64) {
		if limit <= 0 || key == "" {
			return
		}
		n := t.incr(ctx, "authfail:"+kind+":"+key+suffix, end)
		if n < limit {
			return
		}
		b := AuthBlock{Kind: kind, Key: key, Until: end}
		t.block(b, now)
		if n == limit {
			// Only the replica whose increment reached the limit tells
			// the others; the rest block themselves on their next failure.
			t.announce(b)
		}
		// The attempt that reaches the limit still gets 401; the ones
		// past it (on a replica that had not heard yet) get 429.
		if n > limit {
			wait = max(wait, end.Sub(now))
		}
	}
	if validAgentID(clientID) {
		count(BlockClient, clientID, t.cfg.ClientLimit)
	}
	count(BlockAddr, addr, t.cfg.AddrLimit)
	return wait
}

// incr counts in the shared cache, falling back to this replica's own
// counter when the cache fails: a cache outage weakens the limit to per
// replica, never turns it off.
func (t *authThrottle) incr(ctx context.Context, key string, end time.Time) int64 {
	if t.shared != nil {
		n, err := t.shared.IncrBy(ctx, key, 1, end)
		if err == nil {
			return n
		}
		t.log.WarnContext(ctx, "count failed authentication in the shared cache; counting locally", "err", err)
	}
	n, err := t.local.IncrBy(ctx, key, 1, end)
	if err != nil {
		t.log.WarnContext(ctx, "count failed authentication locally", "err", err)
		return 0
	}
	return n
}

// throttled is the 429 of a blocked client id or address: an RFC 6749
// style body with the RFC 8628 §3.5 code slow_down, and Retry-After.
func throttled(wait time.Duration) *OAuthError {
	return &OAuthError{Status: http.StatusTooManyRequests, Code: "slow_down",
		Description: "too many failed client authentications; retry later", RetryAfter: wait}
}

// ApplyAuthBlock records a block announced by another replica. The block
// ends at most one window from now whatever the announcement says.
func (s *Service) ApplyAuthBlock(b AuthBlock) {
	if s.throttle == nil || (b.Kind != BlockClient && b.Kind != BlockAddr) || b.Key == "" || len(b.Key) > 128 {
		return
	}
	now := s.now()
	if limit := now.Add(s.throttle.cfg.Window); b.Until.After(limit) {
		b.Until = limit
	}
	s.throttle.block(b, now)
}

// AuthBlockedFor reports how long the client id or source address is
// refused on this replica (tests and diagnostics).
func (s *Service) AuthBlockedFor(clientID, addr string) time.Duration {
	return s.throttle.blockedFor(clientID, func() string { return addr }, s.now())
}

// localCounter is an in-process FailureCounter: the fallback when the
// shared cache fails, and the only counter of a service without one.
type localCounter struct {
	mu       sync.Mutex
	m        map[string]localCount
	prunedAt time.Time
	now      func() time.Time
}

type localCount struct {
	n   int64
	exp time.Time
}

func newLocalCounter(now func() time.Time) *localCounter {
	return &localCounter{m: map[string]localCount{}, now: now}
}

// IncrBy implements FailureCounter.
func (c *localCounter) IncrBy(_ context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.prunedAt) > time.Second {
		c.prunedAt = now
		for k, v := range c.m {
			if !v.exp.After(now) {
				delete(c.m, k)
			}
		}
	}
	v := c.m[key]
	if !v.exp.After(now) {
		v = localCount{exp: expireAt}
	}
	v.n += n
	c.m[key] = v
	return v.n, nil
}
