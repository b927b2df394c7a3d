package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/cache/quota"
	"github.com/prometheus/client_golang/prometheus"
)

// countingCounter counts the reservations made on a shared counter.
type countingCounter struct {
	*cache.Memory
	reserves atomic.Int64
}

func (c *countingCounter) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	c.reserves.Add(1)
	return c.Memory.ReserveUpTo(ctx, key, n, limit, expireAt)
}

func newTestLimiter(shared Counter) *usageLimiter {
	return newUsageLimiter(shared, nil,
		prometheus.NewCounter(prometheus.CounterOpts{Name: "fallback_total"}), slog.New(slog.DiscardHandler))
}

func counterValue(t *testing.T, c *cache.Memory, key string) int64 {
	t.Helper()
	v, err := c.Counters(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func TestLimitedCallsAreAdmittedFromReservations(t *testing.T) {
	t.Parallel()
	shared := &countingCounter{Memory: cache.NewMemory(cache.MemoryOptions{})}
	l := newTestLimiter(shared)
	ctx := context.Background()
	now := time.Now()
	key := "usage:calls:org-1:" + now.UTC().Format("20060102")
	const limit, calls = 10_000, 450
	for i := range calls {
		u := l.take(ctx, "org-1", limit, now)
		if !u.allowed {
			t.Fatalf("call %d refused", i)
		}
		if want := int64(limit - i - 1); u.remaining != want {
			t.Fatalf("call %d: remaining %d, want %d", i, u.remaining, want)
		}
	}
	// One single-call reservation to learn the counter, then blocks of
	// quota.MaxBlock: 1 + ceil(449/100) = 6 round trips instead of 450.
	if n := shared.reserves.Load(); n != 6 {
		t.Fatalf("%d reservations for %d calls, want 6", n, calls)
	}
	// The counter holds the admitted calls plus the unused reservation
	// until the flush gives it back.
	if v := counterValue(t, shared.Memory, key); v != 1+5*quota.MaxBlock {
		t.Fatalf("counter before the flush = %d, want %d", v, 1+5*quota.MaxBlock)
	}
	l.flush(ctx)
	if v := counterValue(t, shared.Memory, key); v != calls {
		t.Fatalf("counter after the flush = %d, want %d (the calls admitted)", v, calls)
	}
	// Idle for a whole flush interval: the reservation is forgotten.
	l.flush(ctx)
	if n := l.reserved.Len(); n != 0 {
		t.Fatalf("%d reservations kept after an idle interval", n)
	}
}
