package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL is a redis:// or rediss:// URL (redis.ParseURL syntax).
	URL string
	// Prefix is prepended to every key (e.g. "gateway:").
	Prefix string
	// PoolSize overrides the connection pool size (default 64).
	PoolSize int
	// Timeout overrides the read/write timeout (default 500ms; dial gets
	// twice this), so a dead Redis fails fast.
	Timeout time.Duration
	// Breaker tunes the circuit breaker in front of every call.
	Breaker BreakerOptions
	// Logger receives one line when the breaker opens and one when it
	// closes again (nil: discarded).
	Logger *slog.Logger
	// Registerer gets the agentidp_cache_breaker_state gauge (nil: none).
	Registerer prometheus.Registerer
}

// BreakerOptions configures the Redis circuit breaker. Without it every
// call during an outage waits for its own timeout (0.5–1.1 s with the
// defaults); with it only the first few do, and the rest fail at once with
// ErrCircuitOpen until a probe after CoolDown finds Redis back.
type BreakerOptions struct {
	// Failures is the number of consecutive failed calls that open the
	// breaker (default 3).
	Failures uint32
	// CoolDown is how long the breaker stays open before one probe call
	// is let through (default 1s).
	CoolDown time.Duration
}

// ErrCircuitOpen is returned (wrapped) by every Redis call while the
// breaker is open: the call was not sent, so it had no effect.
var ErrCircuitOpen = errors.New("cache: redis unavailable, circuit open")

// Breaker states as exported by agentidp_cache_breaker_state.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// Redis is the Cache backed by Redis (go-redis v9). Counter operations run as
// Lua scripts (EVALSHA), so they are atomic. Every call goes through a
// circuit breaker (BreakerOptions).
type Redis struct {
	client  *redis.Client
	prefix  string
	breaker *gobreaker.CircuitBreaker[struct{}]
}

var _ Cache = (*Redis)(nil)

// NewRedis builds the client; it does not connect (use Ping).
func NewRedis(opts RedisOptions) (*Redis, error) {
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("cache: parse redis url: %w", err)
	}
	ro.PoolSize = 64
	if opts.PoolSize > 0 {
		ro.PoolSize = opts.PoolSize
	}
	timeout := 500 * time.Millisecond
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	ro.DialTimeout = 2 * timeout
	ro.ReadTimeout = timeout
	ro.WriteTimeout = timeout
	ro.PoolTimeout = 2 * timeout
	ro.MaxRetries = 1
	// go-redis dials up to 5 times, 100 ms apart, before failing a call:
	// with a dead Redis that alone cost every call half a second. One
	// attempt; the circuit breaker decides when to try again.
	ro.DialerRetries = 1
	r := &Redis{client: redis.NewClient(ro), prefix: opts.Prefix}
	r.breaker = newBreaker(opts)
	if opts.Registerer != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentidp_cache_breaker_state",
			Help: "State of the Redis circuit breaker: 0 closed, 1 half-open (probing), 2 open (calls fail fast).",
		}, func() float64 { return float64(r.BreakerState()) })
		if err := opts.Registerer.Register(g); err != nil {
			return nil, fmt.Errorf("cache: register breaker metric: %w", err)
		}
	}
	return r, nil
}

func newBreaker(opts RedisOptions) *gobreaker.CircuitBreaker[struct{}] {
	failures := opts.Breaker.Failures
	if failures == 0 {
		failures = 3
	}
	coolDown := opts.Breaker.CoolDown
	if coolDown <= 0 {
		coolDown = time.Second
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     coolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// Only an unreachable or timing-out Redis counts: an answer,
		// even an error reply or a missing key, proves it is there.
		IsSuccessful: func(err error) bool {
			var reply redis.Error
			return err == nil || errors.Is(err, redis.Nil) || errors.As(err, &reply)
		},
		// A caller that went away says nothing about Redis.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		// One line when the outage starts and one when it ends; the
		// half-open probes in between fail silently.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch {
			case to == gobreaker.StateOpen && from == gobreaker.StateClosed:
				logger.Warn("redis circuit breaker open: cache calls fail fast until a probe succeeds",
					"consecutive_failures", failures, "cool_down", coolDown.String())
			case to == gobreaker.StateClosed:
				logger.Info("redis circuit breaker closed: redis reachable again")
			}
		},
	})
}

// BreakerState is the breaker's state: BreakerClosed, BreakerHalfOpen or
// BreakerOpen.
func (r *Redis) BreakerState() int {
	switch r.breaker.State() {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	default:
		return BreakerClosed
	}
}

// do runs one call through the breaker; an open breaker becomes
// ErrCircuitOpen, any other error is returned as the call returned it.
func (r *Redis) do(call func() error) error {
	_, err := r.breaker.Execute(func() (struct{}, error) { return struct{}{}, call() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrCircuitOpen
	}
	return err
}

// Client returns the underlying go-redis client (keys are NOT prefixed).
func (r *Redis) Client() *redis.Client { return r.client }

// Prefix returns the key prefix.
func (r *Redis) Prefix() string { return r.prefix }

func (r *Redis) k(key string) string { return r.prefix + key }

func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := r.do(func() (err error) { b, err = r.client.Get(ctx, r.k(key)).Bytes(); return err })
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache: get: %w", err)
	}
	return b, true, nil
}

func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return ErrNegativeTTL
	}
	if err := r.do(func() error { return r.client.Set(ctx, r.k(key), value, ttl).Err() }); err != nil {
		return fmt.Errorf("cache: set: %w", err)
	}
	return nil
}

func (r *Redis) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, ErrNegativeTTL
	}
	var ok bool
	err := r.do(func() (err error) { ok, err = r.client.SetNX(ctx, r.k(key), value, ttl).Result(); return err })
	if err != nil {
		return false, fmt.Errorf("cache: setnx: %w", err)
	}
	return ok, nil
}

func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	pk := make([]string, len(keys))
	for i, k := range keys {
		pk[i] = r.k(k)
	}
	if err := r.do(func() error { return r.client.Del(ctx, pk...).Err() }); err != nil {
		return fmt.Errorf("cache: delete: %w", err)
	}
	return nil
}

// ARGV[2] is the expiry in unix milliseconds, 0 = none.
var incrByScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return v
`)

// KEYS[2] marks the id as applied; it expires with the counter.
// ARGV[1] = n, ARGV[2] = expiry in unix milliseconds (0 = none).
// Returns {1 if applied else 0, value}.
var incrByOnceScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  local cur = redis.call('GET', KEYS[1])
  if cur and string.find(cur, '^%-?%d+$') == nil then
    return redis.error_reply('ERR value is not an integer or out of range')
  end
  return {0, tonumber(cur) or 0}
end
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
redis.call('SET', KEYS[2], '1')
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {1, v}
`)

// ARGV[1] = limit, ARGV[2] = expiry in unix milliseconds (0 = none).
// Returns {value, 1 if incremented else 0}.
var reserveUpToScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local n = 0
if cur then
  n = tonumber(cur)
  if n == nil or string.find(cur, '^%-?%d+$') == nil then
    return redis.error_reply('ERR value is not an integer or out of range')
  end
end
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - n)
if grant <= 0 then
  return {0, n}
end
local v = redis.call('INCRBY', KEYS[1], grant)
if not cur and tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return {grant, v}
`)

func expireMillis(at time.Time) int64 {
	if at.IsZero() {
		return 0
	}
	ms := at.UnixMilli()
	if ms <= 0 {
		ms = 1 // in the past: expire immediately, not "never"
	}
	return ms
}

func counterErr(op string, err error) error {
	if strings.Contains(err.Error(), "not an integer") {
		return fmt.Errorf("cache: %s: %w: %v", op, ErrNotInteger, err)
	}
	return fmt.Errorf("cache: %s: %w", op, err)
}

func (r *Redis) IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	var v int64
	err := r.do(func() (err error) {
		v, err = incrByScript.Run(ctx, r.client, []string{r.k(key)}, n, expireMillis(expireAt)).Int64()
		return err
	})
	if err != nil {
		return 0, counterErr("incrby", err)
	}
	return v, nil
}

func (r *Redis) IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error) {
	var res []int64
	err := r.do(func() (err error) {
		res, err = incrByOnceScript.Run(ctx, r.client, []string{r.k(key), r.k(key) + ":once:" + id}, n, expireMillis(expireAt)).Int64Slice()
		return err
	})
	if err != nil {
		return false, 0, counterErr("incrbyonce", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("cache: incrbyonce: unexpected reply %v", res)
	}
	return res[0] == 1, res[1], nil
}

func (r *Redis) IncrUpTo(ctx context.Context, key string, limit int64, expireAt time.Time) (int64, bool, error) {
	granted, v, err := r.ReserveUpTo(ctx, key, 1, limit, expireAt)
	return v, granted == 1, err
}

func (r *Redis) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	if n < 1 {
		return 0, 0, fmt.Errorf("cache: reserveupto: n = %d, want >= 1", n)
	}
	var res []int64
	err := r.do(func() (err error) {
		res, err = reserveUpToScript.Run(ctx, r.client, []string{r.k(key)}, n, limit, expireMillis(expireAt)).Int64Slice()
		return err
	})
	if err != nil {
		return 0, 0, counterErr("reserveupto", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("cache: reserveupto: unexpected reply %v", res)
	}
	return res[0], res[1], nil
}

func (r *Redis) Counters(ctx context.Context, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	pk := make([]string, len(keys))
	for i, k := range keys {
		pk[i] = r.k(k)
	}
	var vals []any
	err := r.do(func() (err error) { vals, err = r.client.MGet(ctx, pk...).Result(); return err })
	if err != nil {
		return nil, fmt.Errorf("cache: counters: %w", err)
	}
	for i, v := range vals {
		if v == nil {
			continue
		}
		s, _ := v.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cache: counters: key %q: %w", keys[i], ErrNotInteger)
		}
		out[i] = n
	}
	return out, nil
}

func (r *Redis) Ping(ctx context.Context) error {
	if err := r.do(func() error { return r.client.Ping(ctx).Err() }); err != nil {
		return fmt.Errorf("cache: ping redis: %w", err)
	}
	return nil
}

func (r *Redis) Close() error {
	err := r.client.Close()
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}
