package cache_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// redisViaProxy returns a Redis cache reaching the test server through a
// TCP proxy the test can cut.
func redisViaProxy(t *testing.T, opts cache.RedisOptions) (*cache.Redis, *testkit.TCPProxy) {
	t.Helper()
	u, err := url.Parse(testkit.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.StartTCPProxy(t, u.Host)
	u.Host = p.Addr()
	opts.URL = u.String()
	opts.Prefix = testkit.RedisPrefix(t)
	r, err := cache.NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, p
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An outage must cost a few timeouts, not one per request: once the
// breaker is open, calls fail at once with ErrCircuitOpen without dialling
// Redis, and the breaker closes again when Redis is back.
func TestAttackRedisOutageCostsOneTimeoutNotOnePerCall(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	r, proxy := redisViaProxy(t, cache.RedisOptions{
		Timeout:    200 * time.Millisecond,
		Breaker:    cache.BreakerOptions{Failures: 3, CoolDown: 100 * time.Millisecond},
		Registerer: reg,
	})
	state := func() float64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("Gather() = %d families, %v; want 1", len(mfs), err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if _, err := r.IncrBy(ctx, "n", 1, time.Time{}); err != nil {
		t.Fatalf("IncrBy before the cut: %v", err)
	}
	if got := testutil.CollectAndCount(reg, "agentidp_cache_breaker_state"); got != 1 {
		t.Fatalf("breaker gauge count = %d; want 1", got)
	}
	if got := state(); got != cache.BreakerClosed {
		t.Fatalf("breaker state before the cut = %v; want %d", got, cache.BreakerClosed)
	}

	proxy.Cut()
	failed := 0
	for {
		_, err := r.IncrBy(ctx, "n", 1, time.Time{})
		if err == nil {
			t.Fatal("IncrBy through a cut proxy succeeded")
		}
		if errors.Is(err, cache.ErrCircuitOpen) {
			break
		}
		failed++
		if failed > 3 {
			t.Fatalf("breaker still closed after %d failed calls; want open after 3", failed)
		}
	}
	if failed != 3 {
		t.Fatalf("calls that reached the network before the breaker opened = %d; want 3", failed)
	}
	if got := state(); got != cache.BreakerOpen {
		t.Fatalf("breaker state during the outage = %v; want %d", got, cache.BreakerOpen)
	}
	dials := proxy.Accepted()
	for i := range 50 {
		if _, _, err := r.ReserveUpTo(ctx, "n", 5, 100, time.Time{}); !errors.Is(err, cache.ErrCircuitOpen) {
			// Past the cool-down a single probe may go out; it fails.
			if r.BreakerState() == cache.BreakerOpen {
				continue
			}
			t.Fatalf("call %d with the breaker open: err = %v; want ErrCircuitOpen", i, err)
		}
	}
	// At most one half-open probe per cool-down reaches the proxy, each
	// with go-redis's single retry: far fewer dials than calls.
	if got := proxy.Accepted() - dials; got > 4 {
		t.Fatalf("dials during 50 calls with the breaker open = %d; want <= 4", got)
	}

	proxy.Restore()
	waitFor(t, "the breaker to close after redis returned", func() bool {
		_, err := r.IncrBy(ctx, "n", 1, time.Time{})
		return err == nil
	})
	if got := state(); got != cache.BreakerClosed {
		t.Fatalf("breaker state after recovery = %v; want %d", got, cache.BreakerClosed)
	}
	if got, err := r.Counters(ctx, "n"); err != nil || got[0] != 2 {
		t.Fatalf("Counters(n) = %v, %v; want [2] (calls refused by the breaker had no effect)", got, err)
	}
}

// A reply from Redis, even an error reply, proves it is up: it must not
// open the breaker.
func TestRedisErrorRepliesDoNotOpenBreaker(t *testing.T) {
	ctx := context.Background()
	r, _ := redisViaProxy(t, cache.RedisOptions{Breaker: cache.BreakerOptions{Failures: 2}})
	if err := r.Set(ctx, "s", []byte("text"), 0); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.IncrBy(ctx, "s", 1, time.Time{}); !errors.Is(err, cache.ErrNotInteger) {
			t.Fatalf("IncrBy(non-integer) err = %v; want ErrNotInteger", err)
		}
		if _, _, err := r.Get(ctx, "missing"); err != nil {
			t.Fatalf("Get(missing) err = %v", err)
		}
	}
	if got := r.BreakerState(); got != cache.BreakerClosed {
		t.Fatalf("BreakerState() = %d; want %d", got, cache.BreakerClosed)
	}
}
