// Package cache is the port for counters, caches and replay sets, with a Redis
// implementation (production) and an in-process one (dev mode, tests).
//
// Both implementations pass the same conformance suite (package cachetest)
// and share these semantics:
//   - Values are opaque bytes; a counter is stored as its decimal text, so
//     Get on a counter returns e.g. "42", and IncrBy/IncrUpTo/Counters on a
//     key holding a non-integer value return an error.
//   - Expiry is absolute per key: a key expires at its deadline and is then
//     indistinguishable from a missing key. Set/SetNX with ttl 0 and
//     counters created with a zero expireAt never expire. A negative ttl is
//     an error. Set replaces the value and the expiry; counter updates keep
//     the expiry set when the counter was created. An expireAt not in the
//     future makes the counter vanish right after the call.
//   - Keys are plain strings; the Redis implementation prepends its Prefix.
package cache

import (
	"context"
	"errors"
	"time"
)

// Cache is the port services use. Implementations are safe for concurrent use.
type Cache interface {
	// Get returns the value at key and whether it exists (missing or expired
	// = nil, false, nil).
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value at key, replacing any value and expiry; ttl 0 = no
	// expiry, ttl < 0 is an error.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key does not exist and reports whether it
	// did (replay sets: exactly one of any number of concurrent callers gets
	// true). ttl as for Set.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Delete removes the keys; missing keys are ignored.
	Delete(ctx context.Context, keys ...string) error
	// IncrBy adds n (may be negative) to the counter at key and returns the
	// new value; when the key is created it expires at expireAt (zero =
	// never). An existing counter keeps its expiry.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
	// IncrByOnce is IncrBy made idempotent by id: it adds n to the counter
	// at key unless an IncrByOnce with the same key and id was applied
	// before, and reports whether this call applied it and the value after
	// it. A caller that retries an adjustment whose outcome it does not know
	// (a timeout) with the same id therefore never adds it twice. The id is
	// remembered as long as the counter lives.
	IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (applied bool, value int64, err error)
	// IncrUpTo atomically increments the counter by 1 only if the result
	// stays <= limit; it returns the value after the call and whether the
	// increment happened. Exactly `limit` calls succeed under any
	// concurrency (for a fresh key). Sets expiry on creation like IncrBy; a
	// refused call does not create the key.
	IncrUpTo(ctx context.Context, key string, limit int64, expireAt time.Time) (int64, bool, error)
	// ReserveUpTo atomically adds as much of n (n >= 1) as fits under
	// limit and returns how much it added (0 when the counter is already at
	// or above limit) and the value after the call: a block reservation,
	// so that a caller can admit that many units without another round
	// trip, and give back what it did not use with IncrBy(-unused). Under
	// any concurrency the grants never sum to more than limit (for a fresh
	// key). Sets expiry on creation like IncrBy; a call that adds nothing
	// does not create the key.
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (granted, value int64, err error)
	// Counters reads several counters at once, in order (missing = 0).
	Counters(ctx context.Context, keys ...string) ([]int64, error)
	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases resources; calling it more than once is harmless.
	Close() error
}

// ErrNegativeTTL is returned by Set and SetNX for a ttl < 0.
var ErrNegativeTTL = errors.New("cache: negative ttl")

// ErrNotInteger is returned (wrapped) when a counter operation meets a value
// that is not a decimal int64.
var ErrNotInteger = errors.New("cache: value is not an integer")
