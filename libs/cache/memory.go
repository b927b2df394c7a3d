package cache

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"
)

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// Now is the clock (default time.Now); tests may inject a fake one.
	Now func() time.Time
	// SweepInterval is how often expired keys are purged in the background
	// (default 30s; expired keys are also invisible on read). Negative
	// disables the sweeper.
	SweepInterval time.Duration
}

const memShards = 64

// Memory is the in-process Cache: a sharded, mutex-protected map with lazy
// expiry on read plus a periodic sweep goroutine stopped by Close.
type Memory struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [memShards]memShard
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

type memShard struct {
	mu sync.Mutex
	m  map[string]*memEntry
}

type memEntry struct {
	b     []byte // value when !isNum
	n     int64  // value when isNum
	isNum bool
	exp   time.Time // zero = never
	// once holds the ids IncrByOnce applied to this counter; they live
	// and expire with it.
	once map[string]struct{}
}

var _ Cache = (*Memory)(nil)

// NewMemory returns an empty in-process cache.
func NewMemory(opts MemoryOptions) *Memory {
	m := &Memory{now: opts.Now, seed: maphash.MakeSeed(), stop: make(chan struct{})}
	if m.now == nil {
		m.now = time.Now
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memEntry)
	}
	iv := opts.SweepInterval
	if iv == 0 {
		iv = 30 * time.Second
	}
	if iv > 0 {
		m.wg.Add(1)
		go m.sweeper(iv)
	}
	return m
}

func (m *Memory) sweeper(iv time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep removes every expired key now.
func (m *Memory) Sweep() {
	now := m.now()
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.expired(now) {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// Len returns the number of stored keys, expired ones not yet swept included.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (e *memEntry) expired(now time.Time) bool {
	return !e.exp.IsZero() && !now.Before(e.exp)
}

func (m *Memory) shard(key string) *memShard {
	return &m.shards[maphash.String(m.seed, key)%memShards]
}

// live returns the unexpired entry at key (deleting an expired one). s.mu held.
func (s *memShard) live(key string, now time.Time) *memEntry {
	e := s.m[key]
	if e != nil && e.expired(now) {
		delete(s.m, key)
		return nil
	}
	return e
}

func (e *memEntry) int() (int64, error) {
	if e.isNum {
		return e.n, nil
	}
	n, err := strconv.ParseInt(string(e.b), 10, 64)
	if err != nil {
		return 0, ErrNotInteger
	}
	return n, nil
}

func (m *Memory) Get(ctx context.Context, key string) ([]byte, bool, error) {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(key, m.now())
	if e == nil {
		return nil, false, nil
	}
	if e.isNum {
		return strconv.AppendInt(nil, e.n, 10), true, nil
	}
	return append([]byte{}, e.b...), true, nil
}

func (m *Memory) expiry(ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return m.now().Add(ttl)
}

func (m *Memory) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return ErrNegativeTTL
	}
	e := &memEntry{b: append([]byte{}, value...), exp: m.expiry(ttl)}
	s := m.shard(key)
	s.mu.Lock()
	s.m[key] = e
	s.mu.Unlock()
	return nil
}

func (m *Memory) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, ErrNegativeTTL
	}
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live(key, m.now()) != nil {
		return false, nil
	}
	s.m[key] = &memEntry{b: append([]byte{}, value...), exp: m.expiry(ttl)}
	return true, nil
}

func (m *Memory) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		s := m.shard(k)
		s.mu.Lock()
		delete(s.m, k)
		s.mu.Unlock()
	}
	return nil
}

// counterOp runs fn on the counter at key under the shard lock; fn returns
// the new value and whether to store it.
func (m *Memory) counterOp(key string, expireAt time.Time, fn func(cur int64) (int64, bool)) (int64, bool, error) {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := m.now()
	e := s.live(key, now)
	var cur int64
	if e != nil {
		n, err := e.int()
		if err != nil {
			return 0, false, fmt.Errorf("cache: key %q: %w", key, err)
		}
		cur = n
	}
	v, store := fn(cur)
	if !store {
		return v, false, nil
	}
	if e == nil {
		e = &memEntry{exp: expireAt}
		if !expireAt.IsZero() && !now.Before(expireAt) {
			return v, true, nil // expires immediately: never visible
		}
		s.m[key] = e
	}
	e.isNum, e.n, e.b = true, v, nil
	return v, true, nil
}

func (m *Memory) IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	v, _, err := m.counterOp(key, expireAt, func(cur int64) (int64, bool) { return cur + n, true })
	return v, err
}

func (m *Memory) IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error) {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := m.now()
	e := s.live(key, now)
	var cur int64
	if e != nil {
		v, err := e.int()
		if err != nil {
			return false, 0, fmt.Errorf("cache: key %q: %w", key, err)
		}
		if _, done := e.once[id]; done {
			return false, v, nil
		}
		cur = v
	}
	if e == nil {
		if !expireAt.IsZero() && !now.Before(expireAt) {
			return true, cur + n, nil // expires immediately: never visible
		}
		e = &memEntry{exp: expireAt}
		s.m[key] = e
	}
	if e.once == nil {
		e.once = map[string]struct{}{}
	}
	e.once[id] = struct{}{}
	e.isNum, e.n, e.b = true, cur+n, nil
	return true, cur + n, nil
}

func (m *Memory) IncrUpTo(ctx context.Context, key string, limit int64, expireAt time.Time) (int64, bool, error) {
	granted, v, err := m.ReserveUpTo(ctx, key, 1, limit, expireAt)
	return v, granted == 1, err
}

func (m *Memory) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	if n < 1 {
		return 0, 0, fmt.Errorf("cache: reserveupto: n = %d, want >= 1", n)
	}
	var granted int64
	v, _, err := m.counterOp(key, expireAt, func(cur int64) (int64, bool) {
		granted = min(n, limit-cur)
		if granted <= 0 {
			granted = 0
			return cur, false
		}
		return cur + granted, true
	})
	if err != nil {
		return 0, 0, err
	}
	return granted, v, nil
}

func (m *Memory) Counters(ctx context.Context, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	now := m.now()
	for i, k := range keys {
		s := m.shard(k)
		s.mu.Lock()
		e := s.live(k, now)
		if e != nil {
			n, err := e.int()
			if err != nil {
				s.mu.Unlock()
				return nil, fmt.Errorf("cache: counters: key %q: %w", k, err)
			}
			out[i] = n
		}
		s.mu.Unlock()
	}
	return out, nil
}

func (m *Memory) Ping(ctx context.Context) error { return nil }

// Close stops the sweeper. The data stays usable; Close is idempotent.
func (m *Memory) Close() error {
	m.once.Do(func() { close(m.stop) })
	m.wg.Wait()
	return nil
}
