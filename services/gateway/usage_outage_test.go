package gateway

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// Three gateway replicas of a free organisation (1,000 calls a day) share
// one Redis; Redis is cut after 600 calls. Before the fix each replica
// counted from zero in memory (600 + 3 × 1,000 admitted) and never added
// those calls back. Now each admits (limit − the count it last saw) / the
// live replicas it counts from NATS KV heartbeats, and adds them back when
// Redis returns, so the day's count is the calls admitted.
func TestAttackRedisOutageDoesNotMultiplyDailyLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit, before, replicas = 1000, 600, 3

	u, err := url.Parse(testkit.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testkit.RedisPrefix(t)
	direct, err := cache.NewRedis(cache.RedisOptions{URL: u.String(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Close() })
	proxy := testkit.StartTCPProxy(t, u.Host)
	u.Host = proxy.Addr()

	_, js := natstest.Start(t).Connect(t)
	var limiters []*usageLimiter
	var beats []*natsbus.Replicas
	for range replicas {
		c, err := cache.NewRedis(cache.RedisOptions{URL: u.String(), Prefix: prefix, Timeout: 200 * time.Millisecond,
			// A cool-down longer than the outage loop: the calls in it fail
			// fast (a probe would only make the test slower, not different).
			Breaker: cache.BreakerOptions{Failures: 3, CoolDown: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		hb, err := natsbus.OpenReplicas(ctx, js, natsbus.ReplicasOptions{Service: "gateway"})
		if err != nil {
			t.Fatal(err)
		}
		beats = append(beats, hb)
		limiters = append(limiters, newUsageLimiter(c, hb.Live,
			prometheus.NewCounter(prometheus.CounterOpts{Name: "fallback_total"}), slog.New(slog.DiscardHandler)))
	}
	for range 2 { // the second round sees every first-round heartbeat
		for _, hb := range beats {
			if err := hb.Beat(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, hb := range beats {
		if got := hb.Live(); got != replicas {
			t.Fatalf("replica %d: Live() = %d; want %d", i, got, replicas)
		}
	}

	now := time.Now()
	key := "usage:calls:org-free:" + now.UTC().Format("20060102")
	admitted := int64(0)
	for i := range before {
		if limiters[i%replicas].take(ctx, "org-free", limit, now).allowed {
			admitted++
		}
	}
	if admitted != before {
		t.Fatalf("admitted before the cut = %d; want %d", admitted, before)
	}
	counts, err := direct.Counters(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cut := counts[0] // the calls admitted plus the reservations outstanding
	// What the documented bound allows: every unit counted at the cut,
	// plus each replica's share of what it saw remaining.
	want, bound := cut, int64(0)
	for i, l := range limiters {
		seen, ok := l.reserved.Seen(key)
		if !ok {
			t.Fatalf("replica %d has no count seen", i)
		}
		want += (limit - seen) / replicas
		bound += cut - seen
	}
	bound /= replicas

	proxy.Cut()
	for i := range 2 * limit {
		if i == limit {
			for _, l := range limiters {
				l.flush(ctx) // a flush during the outage loses nothing
			}
		}
		if limiters[i%replicas].take(ctx, "org-free", limit, now).allowed {
			admitted++
		}
	}
	t.Logf("counted at the cut %d, admitted %d, bound %d", cut, admitted, bound)
	if admitted != want {
		t.Fatalf("admitted with Redis cut = %d; want %d (counted at the cut %d + shares)", admitted, want, cut)
	}
	if admitted > limit+bound {
		t.Fatalf("admitted with Redis cut = %d; want <= limit + bound = %d", admitted, limit+bound)
	}

	proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		owed := int64(0)
		for _, l := range limiters {
			l.flush(ctx)
			owed += l.reserved.Owed()
		}
		if owed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still not added back 10 s after Redis returned", owed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if counts, err := direct.Counters(ctx, key); err != nil || counts[0] != admitted {
		t.Fatalf("shared counter after Redis returned = %v, %v; want [%d] (the calls admitted)", counts, err, admitted)
	}
	for i, l := range limiters {
		if l.take(ctx, "org-free", limit, now).allowed {
			t.Fatalf("replica %d admitted a call past the limit after Redis returned", i)
		}
	}
}
