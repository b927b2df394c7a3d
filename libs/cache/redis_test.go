package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/cache/cachetest"
	"github.com/agentidp/agentidp/libs/testkit"
)

func newRedis(t testing.TB) *cache.Redis {
	t.Helper()
	url := testkit.RedisURL(t)
	r, err := cache.NewRedis(cache.RedisOptions{URL: url, Prefix: testkit.RedisPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedis(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Cache { return newRedis(t) })
}

func TestRedisPrefixIsolation(t *testing.T) {
	ctx := context.Background()
	a, b := newRedis(t), newRedis(t)
	if err := a.Set(ctx, "k", []byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Get(ctx, "k"); ok {
		t.Fatal("prefix b sees a's key")
	}
	if _, err := b.IncrBy(ctx, "n", 5, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Counters(ctx, "n"); got[0] != 0 {
		t.Fatal("prefix a sees b's counter")
	}
	if n, err := a.Client().Exists(ctx, a.Prefix()+"k").Result(); err != nil || n != 1 {
		t.Fatalf("raw key under prefix: %d %v", n, err)
	}
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Get(ctx, "k"); !ok {
		t.Fatal("delete through b removed a's key")
	}
}

func TestRedisDeadFailsFast(t *testing.T) {
	r, err := cache.NewRedis(cache.RedisOptions{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	if err := r.Ping(context.Background()); err == nil {
		t.Fatal("ping to dead redis succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dead redis took %v", d)
	}
	if _, err := cache.NewRedis(cache.RedisOptions{URL: "http://nope"}); err == nil {
		t.Fatal("bad url accepted")
	}
}

func BenchmarkRedisIncrUpTo(b *testing.B) {
	cachetest.BenchIncrUpTo(b, newRedis(b))
}
