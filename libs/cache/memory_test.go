package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/cache/cachetest"
)

func TestMemory(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Cache { return cache.NewMemory(cache.MemoryOptions{}) })
}

func TestMemorySweep(t *testing.T) {
	now := time.Unix(1000, 0)
	m := cache.NewMemory(cache.MemoryOptions{Now: func() time.Time { return now }, SweepInterval: -1})
	defer m.Close()
	ctx := context.Background()
	m.Set(ctx, "a", []byte("x"), time.Second)
	m.IncrBy(ctx, "b", 1, now.Add(2*time.Second))
	m.Set(ctx, "c", []byte("x"), 0)
	now = now.Add(1500 * time.Millisecond)
	m.Sweep()
	if m.Len() != 2 {
		t.Fatalf("len = %d, want 2", m.Len())
	}
	now = now.Add(time.Second)
	if got, _ := m.Counters(ctx, "b"); got[0] != 0 {
		t.Fatalf("b = %d", got[0])
	}
	m.Sweep()
	if m.Len() != 1 {
		t.Fatalf("len = %d, want 1", m.Len())
	}
	m.Close()
	m.Close()
}

func BenchmarkMemoryIncrUpTo(b *testing.B) {
	m := cache.NewMemory(cache.MemoryOptions{})
	defer m.Close()
	cachetest.BenchIncrUpTo(b, m)
}
