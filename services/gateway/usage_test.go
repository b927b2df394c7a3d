package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/prometheus/client_golang/prometheus"
)

// countingCounter counts the round trips made to a shared counter; delay
// makes a reservation take as long as a network round trip.
type countingCounter struct {
	*cache.Memory
	delay           time.Duration
	reserves, incrs atomic.Int64
}

func (c *countingCounter) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	c.reserves.Add(1)
	time.Sleep(c.delay)
	return c.Memory.ReserveUpTo(ctx, key, n, limit, expireAt)
}

func (c *countingCounter) IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	c.incrs.Add(1)
	return c.Memory.IncrBy(ctx, key, n, expireAt)
}

func newTestLimiter(shared Counter) *usageLimiter {
	return &usageLimiter{
		shared:   shared,
		fallback: cache.NewMemory(cache.MemoryOptions{}),
		metric:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fallback_total"}),
		logger:   slog.New(slog.DiscardHandler),
	}
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
	// leaseMax: 1 + ceil(449/100) = 6 round trips instead of 450.
	if n := shared.reserves.Load(); n != 6 {
		t.Fatalf("%d reservations for %d calls, want 6", n, calls)
	}
	// The counter holds the admitted calls plus the unused reservation
	// until the flush gives it back.
	if v := counterValue(t, shared.Memory, key); v != 1+5*leaseMax {
		t.Fatalf("counter before the flush = %d, want %d", v, 1+5*leaseMax)
	}
	l.flush(ctx)
	if v := counterValue(t, shared.Memory, key); v != calls {
		t.Fatalf("counter after the flush = %d, want %d (the calls admitted)", v, calls)
	}
	// Idle for a whole flush interval: the lease is dropped.
	l.flush(ctx)
	l.mu.Lock()
	n := len(l.leases)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d leases kept after an idle interval", n)
	}
}

func TestReservationsShrinkNearTheLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ limit, total, want int64 }{
		{50_000, 0, leaseMax}, {50_000, 49_000, 62}, {50_000, 49_990, 1}, {3, 0, 1}, {100, 100, 1}, {100, 150, 1},
	} {
		if got := leaseSize(c.limit, c.total); got != c.want {
			t.Errorf("leaseSize(%d, %d) = %d, want %d", c.limit, c.total, got, c.want)
		}
	}
}

// Several replicas sharing one counter, each with many concurrent callers,
// admit exactly the limit between them.
func TestReplicasTogetherAdmitExactlyTheLimit(t *testing.T) {
	t.Parallel()
	shared := &countingCounter{Memory: cache.NewMemory(cache.MemoryOptions{}), delay: 100 * time.Microsecond}
	replicas := []*usageLimiter{newTestLimiter(shared), newTestLimiter(shared), newTestLimiter(shared)}
	const limit, workers = 2_000, 16
	var admitted atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopFlush := make(chan struct{})
	go func() { // flushes give reservations back while the callers run
		for {
			select {
			case <-stopFlush:
				return
			case <-time.After(time.Millisecond):
				for _, l := range replicas {
					l.flush(ctx)
				}
			}
		}
	}()
	now := time.Now()
	for _, l := range replicas {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					u := l.take(ctx, "org-1", limit, now)
					if !u.allowed {
						return
					}
					admitted.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stopFlush)
	if got := admitted.Load(); got > limit {
		t.Fatalf("admitted %d, more than the limit %d", got, limit)
	}
	// A caller stops at its first refusal, which a replica can meet while
	// another still holds an unused reservation; after the flushes give
	// everything back, the rest of the allowance is admitted to the last
	// call, and not one more.
	for _, l := range replicas {
		l.flush(ctx)
	}
	for _, l := range replicas {
		for l.take(ctx, "org-1", limit, now).allowed {
			admitted.Add(1)
		}
	}
	if got := admitted.Load(); got != limit {
		t.Fatalf("admitted %d, want exactly %d", got, limit)
	}
	if n := shared.reserves.Load(); n >= limit {
		t.Fatalf("%d round trips for %d calls: no reservations were shared", n, limit)
	}
}

// Within one replica, concurrent callers wait for the reservation in
// flight instead of racing it, so none is refused while calls remain: as
// many concurrent callers as the limit are all admitted, and the next ones
// all refused.
func TestOneReplicaAdmitsExactlyTheLimitUnderConcurrency(t *testing.T) {
	t.Parallel()
	shared := &countingCounter{Memory: cache.NewMemory(cache.MemoryOptions{}), delay: 100 * time.Microsecond}
	l := newTestLimiter(shared)
	const limit = 700
	now := time.Now()
	// One call first, so the replica knows the counter and reserves blocks.
	if !l.take(context.Background(), "org-1", limit, now).allowed {
		t.Fatal("first call refused")
	}
	wave := func(callers int) (admitted, refused int64) {
		var a, r atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if l.take(context.Background(), "org-1", limit, now).allowed {
					a.Add(1)
				} else {
					r.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		return a.Load(), r.Load()
	}
	if a, r := wave(limit - 1); a != limit-1 || r != 0 {
		t.Fatalf("first wave: admitted %d refused %d, want %d and 0", a, r, limit-1)
	}
	if a, r := wave(100); a != 0 || r != 100 {
		t.Fatalf("second wave: admitted %d refused %d, want 0 and 100", a, r)
	}
}
