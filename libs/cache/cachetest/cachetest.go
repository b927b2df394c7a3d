// Package cachetest is the conformance suite every cache.Cache
// implementation must pass, plus shared benchmarks.
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, func(t *testing.T) cache.Cache { return newIsolatedCache(t) })
//	}
package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
)

// Run runs the suite. newCache must return an empty, isolated cache each
// time it is called (one call per subtest); the suite closes it in
// t.Cleanup. Subtests run in parallel (newCache must allow that); waiting
// for expiry costs under a second.
func Run(t *testing.T, newCache func(t *testing.T) cache.Cache) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c cache.Cache)
	}{
		{"GetMissing", testGetMissing},
		{"SetGet", testSetGet},
		{"SetTTL", testSetTTL},
		{"SetNX", testSetNX},
		{"SetNXConcurrent", testSetNXConcurrent},
		{"Delete", testDelete},
		{"IncrBy", testIncrBy},
		{"IncrByExpiry", testIncrByExpiry},
		{"IncrByOnce", testIncrByOnce},
		{"IncrUpTo", testIncrUpTo},
		{"IncrUpToConcurrent", testIncrUpToConcurrent},
		{"IncrUpToExpiry", testIncrUpToExpiry},
		{"ReserveUpTo", testReserveUpTo},
		{"ReserveUpToConcurrent", testReserveUpToConcurrent},
		{"Counters", testCounters},
		{"NotInteger", testNotInteger},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			t.Cleanup(func() { _ = c.Close() })
			tc.fn(t, c)
		})
	}
}

var ctx = context.Background()

func mustGet(t *testing.T, c cache.Cache, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v, ok
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testGetMissing(t *testing.T, c cache.Cache) {
	if v, ok := mustGet(t, c, "nope"); ok || v != nil {
		t.Fatalf("missing key: %q %v", v, ok)
	}
}

func testSetGet(t *testing.T, c cache.Cache) {
	must(t, c.Set(ctx, "k", []byte("v1"), 0))
	if v, ok := mustGet(t, c, "k"); !ok || string(v) != "v1" {
		t.Fatalf("Get = %q %v", v, ok)
	}
	must(t, c.Set(ctx, "k", []byte("v2"), time.Hour))
	v, ok := mustGet(t, c, "k")
	if !ok || string(v) != "v2" {
		t.Fatalf("overwrite: %q %v", v, ok)
	}
	v[0] = 'X' // callers own returned slices
	if v, _ := mustGet(t, c, "k"); string(v) != "v2" {
		t.Fatalf("returned slice aliases stored value: %q", v)
	}
	in := []byte("mut")
	must(t, c.Set(ctx, "m", in, 0))
	in[0] = 'X'
	if v, _ := mustGet(t, c, "m"); string(v) != "mut" {
		t.Fatalf("stored slice aliases caller's value: %q", v)
	}
	must(t, c.Set(ctx, "empty", []byte{}, 0))
	if v, ok := mustGet(t, c, "empty"); !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, ok)
	}
	bin := []byte{0, 1, 2, 255, 0}
	must(t, c.Set(ctx, "bin", bin, 0))
	if v, _ := mustGet(t, c, "bin"); !bytes.Equal(v, bin) {
		t.Fatalf("binary value: %v", v)
	}
	if err := c.Set(ctx, "neg", []byte("x"), -time.Second); !errors.Is(err, cache.ErrNegativeTTL) {
		t.Fatalf("negative ttl: %v", err)
	}
}

const shortTTL = 150 * time.Millisecond
const afterShort = 400 * time.Millisecond

func testSetTTL(t *testing.T, c cache.Cache) {
	must(t, c.Set(ctx, "short", []byte("x"), shortTTL))
	must(t, c.Set(ctx, "forever", []byte("y"), 0))
	must(t, c.Set(ctx, "long", []byte("z"), time.Hour))
	must(t, c.Set(ctx, "reset", []byte("a"), shortTTL))
	must(t, c.Set(ctx, "reset", []byte("b"), 0)) // Set replaces the expiry
	if _, ok := mustGet(t, c, "short"); !ok {
		t.Fatal("expired too early")
	}
	time.Sleep(afterShort)
	if _, ok := mustGet(t, c, "short"); ok {
		t.Fatal("ttl key did not expire")
	}
	for _, k := range []string{"forever", "long", "reset"} {
		if _, ok := mustGet(t, c, k); !ok {
			t.Fatalf("%s expired", k)
		}
	}
}

func testSetNX(t *testing.T, c cache.Cache) {
	ok, err := c.SetNX(ctx, "jti", []byte("first"), time.Hour)
	if err != nil || !ok {
		t.Fatalf("first SetNX = %v %v", ok, err)
	}
	ok, err = c.SetNX(ctx, "jti", []byte("second"), time.Hour)
	if err != nil || ok {
		t.Fatalf("second SetNX = %v %v", ok, err)
	}
	if v, _ := mustGet(t, c, "jti"); string(v) != "first" {
		t.Fatalf("value = %q", v)
	}
	ok, err = c.SetNX(ctx, "short", []byte("a"), shortTTL)
	if err != nil || !ok {
		t.Fatalf("SetNX short = %v %v", ok, err)
	}
	time.Sleep(afterShort)
	ok, err = c.SetNX(ctx, "short", []byte("b"), 0)
	if err != nil || !ok {
		t.Fatalf("SetNX after expiry = %v %v", ok, err)
	}
	if _, err := c.SetNX(ctx, "neg", []byte("x"), -1); !errors.Is(err, cache.ErrNegativeTTL) {
		t.Fatalf("negative ttl: %v", err)
	}
}

func testSetNXConcurrent(t *testing.T, c cache.Cache) {
	const n = 50
	var wins, errs atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := c.SetNX(ctx, "replay", []byte(fmt.Sprint(i)), time.Minute)
			if err != nil {
				errs.Add(1)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if errs.Load() != 0 || wins.Load() != 1 {
		t.Fatalf("wins = %d, errors = %d; want exactly one winner", wins.Load(), errs.Load())
	}
}

func testDelete(t *testing.T, c cache.Cache) {
	must(t, c.Set(ctx, "a", []byte("1"), 0))
	must(t, c.Set(ctx, "b", []byte("2"), 0))
	must(t, c.Set(ctx, "c", []byte("3"), 0))
	_, err := c.IncrBy(ctx, "n", 5, time.Time{})
	must(t, err)
	must(t, c.Delete(ctx, "a", "b", "missing", "n"))
	must(t, c.Delete(ctx))
	for _, k := range []string{"a", "b", "n"} {
		if _, ok := mustGet(t, c, k); ok {
			t.Fatalf("%s not deleted", k)
		}
	}
	if _, ok := mustGet(t, c, "c"); !ok {
		t.Fatal("c deleted")
	}
	if v, err := c.IncrBy(ctx, "n", 1, time.Time{}); err != nil || v != 1 {
		t.Fatalf("counter after delete = %d %v", v, err)
	}
}

func testIncrBy(t *testing.T, c cache.Cache) {
	steps := []struct{ n, want int64 }{{1, 1}, {4, 5}, {-7, -2}, {0, -2}, {1 << 40, 1<<40 - 2}}
	for _, s := range steps {
		v, err := c.IncrBy(ctx, "ctr", s.n, time.Time{})
		if err != nil || v != s.want {
			t.Fatalf("IncrBy(%d) = %d %v, want %d", s.n, v, err, s.want)
		}
	}
	if v, ok := mustGet(t, c, "ctr"); !ok || string(v) != fmt.Sprint(int64(1<<40-2)) {
		t.Fatalf("Get on counter = %q %v (want decimal text)", v, ok)
	}
	must(t, c.Set(ctx, "text-num", []byte("41"), 0))
	if v, err := c.IncrBy(ctx, "text-num", 1, time.Time{}); err != nil || v != 42 {
		t.Fatalf("IncrBy on Set decimal = %d %v", v, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, err := c.IncrBy(ctx, "conc", 2, time.Time{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, err := c.Counters(ctx, "conc"); err != nil || got[0] != 400 {
		t.Fatalf("concurrent IncrBy = %v %v, want 400", got, err)
	}
}

func testIncrByExpiry(t *testing.T, c cache.Cache) {
	// Expiry in the past: the counter vanishes right after the call.
	past := time.Now().Add(-time.Minute)
	if v, err := c.IncrBy(ctx, "past", 3, past); err != nil || v != 3 {
		t.Fatalf("IncrBy past = %d %v", v, err)
	}
	if _, ok := mustGet(t, c, "past"); ok {
		t.Fatal("counter with past expireAt still visible")
	}
	// Expiry is set on creation only.
	soon := time.Now().Add(shortTTL)
	if v, err := c.IncrBy(ctx, "soon", 1, soon); err != nil || v != 1 {
		t.Fatalf("IncrBy soon = %d %v", v, err)
	}
	if v, err := c.IncrBy(ctx, "soon", 1, time.Now().Add(time.Hour)); err != nil || v != 2 {
		t.Fatalf("IncrBy soon again = %d %v", v, err)
	}
	if v, err := c.IncrBy(ctx, "never", 1, time.Time{}); err != nil || v != 1 {
		t.Fatalf("IncrBy never = %d %v", v, err)
	}
	if v, err := c.IncrBy(ctx, "never", 1, time.Now().Add(shortTTL)); err != nil || v != 2 {
		t.Fatalf("IncrBy never again = %d %v", v, err)
	}
	time.Sleep(afterShort)
	got, err := c.Counters(ctx, "soon", "never")
	if err != nil || got[0] != 0 || got[1] != 2 {
		t.Fatalf("after expiry: %v %v (want [0 2])", got, err)
	}
	if v, err := c.IncrBy(ctx, "soon", 5, time.Time{}); err != nil || v != 5 {
		t.Fatalf("recreated counter = %d %v", v, err)
	}
}

func testIncrUpTo(t *testing.T, c cache.Cache) {
	for i := int64(1); i <= 3; i++ {
		v, ok, err := c.IncrUpTo(ctx, "lim", 3, time.Time{})
		if err != nil || !ok || v != i {
			t.Fatalf("call %d: %d %v %v", i, v, ok, err)
		}
	}
	for i := 0; i < 2; i++ {
		v, ok, err := c.IncrUpTo(ctx, "lim", 3, time.Time{})
		if err != nil || ok || v != 3 {
			t.Fatalf("over limit: %d %v %v", v, ok, err)
		}
	}
	// A higher limit lets it grow again.
	if v, ok, err := c.IncrUpTo(ctx, "lim", 4, time.Time{}); err != nil || !ok || v != 4 {
		t.Fatalf("raised limit: %d %v %v", v, ok, err)
	}
	// limit 0: refused, and the key is not created.
	if v, ok, err := c.IncrUpTo(ctx, "zero", 0, time.Time{}); err != nil || ok || v != 0 {
		t.Fatalf("limit 0: %d %v %v", v, ok, err)
	}
	if _, ok := mustGet(t, c, "zero"); ok {
		t.Fatal("refused IncrUpTo created the key")
	}
	// Works together with IncrBy on the same counter.
	if _, err := c.IncrBy(ctx, "mixed", 9, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.IncrUpTo(ctx, "mixed", 10, time.Time{}); err != nil || !ok || v != 10 {
		t.Fatalf("mixed: %d %v %v", v, ok, err)
	}
	if v, ok, err := c.IncrUpTo(ctx, "mixed", 10, time.Time{}); err != nil || ok || v != 10 {
		t.Fatalf("mixed over: %d %v %v", v, ok, err)
	}
}

func testReserveUpTo(t *testing.T, c cache.Cache) {
	steps := []struct{ n, limit, granted, value int64 }{
		{10, 25, 10, 10}, // fits
		{10, 25, 10, 20}, // fits
		{10, 25, 5, 25},  // partly: up to the limit
		{1, 25, 0, 25},   // at the limit
		{3, 26, 1, 26},   // a raised limit
	}
	for i, s := range steps {
		g, v, err := c.ReserveUpTo(ctx, "res", s.n, s.limit, time.Time{})
		if err != nil || g != s.granted || v != s.value {
			t.Fatalf("step %d: ReserveUpTo(%d, limit %d) = %d %d %v, want %d %d", i, s.n, s.limit, g, v, err, s.granted, s.value)
		}
	}
	// Giving back an unused part makes room again.
	if v, err := c.IncrBy(ctx, "res", -4, time.Time{}); err != nil || v != 22 {
		t.Fatalf("give back: %d %v", v, err)
	}
	if g, v, err := c.ReserveUpTo(ctx, "res", 100, 26, time.Time{}); err != nil || g != 4 || v != 26 {
		t.Fatalf("after give back: %d %d %v, want 4 26", g, v, err)
	}
	// Nothing granted: the key is not created; bad n is an error.
	if g, v, err := c.ReserveUpTo(ctx, "res-zero", 5, 0, time.Now().Add(time.Minute)); err != nil || g != 0 || v != 0 {
		t.Fatalf("limit 0: %d %d %v", g, v, err)
	}
	if _, ok := mustGet(t, c, "res-zero"); ok {
		t.Fatal("ReserveUpTo that granted nothing created the key")
	}
	if _, _, err := c.ReserveUpTo(ctx, "res", 0, 100, time.Time{}); err == nil {
		t.Fatal("ReserveUpTo with n = 0 succeeded")
	}
	// Expiry is set on creation.
	if g, _, err := c.ReserveUpTo(ctx, "res-exp", 3, 10, time.Now().Add(shortTTL)); err != nil || g != 3 {
		t.Fatalf("res-exp: %d %v", g, err)
	}
	time.Sleep(afterShort)
	if got, err := c.Counters(ctx, "res-exp"); err != nil || got[0] != 0 {
		t.Fatalf("after expiry: %v %v", got, err)
	}
	if err := c.Set(ctx, "res-text", []byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReserveUpTo(ctx, "res-text", 1, 10, time.Time{}); !errors.Is(err, cache.ErrNotInteger) {
		t.Fatalf("ReserveUpTo on text: %v, want ErrNotInteger", err)
	}
}

func testReserveUpToConcurrent(t *testing.T, c cache.Cache) {
	const workers, limit = 60, 500
	var granted, errs atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < 5; j++ {
				g, v, err := c.ReserveUpTo(ctx, "block", int64(1+i%7), limit, time.Now().Add(time.Minute))
				if err != nil {
					errs.Add(1)
					return
				}
				if v > limit || g < 0 {
					t.Errorf("granted %d, value %d over the limit", g, v)
				}
				granted.Add(g)
			}
		}()
	}
	close(start)
	wg.Wait()
	// 60 workers ask for 5 × (1..7) each, 1,200 in all: exactly 500 granted.
	if errs.Load() != 0 || granted.Load() != limit {
		t.Fatalf("granted %d with %d errors, want %d and 0", granted.Load(), errs.Load(), limit)
	}
	if got, err := c.Counters(ctx, "block"); err != nil || got[0] != limit {
		t.Fatalf("counter %v %v, want %d", got, err, limit)
	}
}

func testIncrUpToConcurrent(t *testing.T, c cache.Cache) {
	const workers, limit = 100, 37
	var ok, refused, errs atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, inc, err := c.IncrUpTo(ctx, "quota", limit, time.Now().Add(time.Minute))
			switch {
			case err != nil:
				errs.Add(1)
			case inc:
				ok.Add(1)
				if v < 1 || v > limit {
					t.Errorf("value after success = %d", v)
				}
			default:
				refused.Add(1)
				if v != limit {
					t.Errorf("value after refusal = %d", v)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if errs.Load() != 0 || ok.Load() != limit || refused.Load() != workers-limit {
		t.Fatalf("ok=%d refused=%d errors=%d; want %d/%d/0", ok.Load(), refused.Load(), errs.Load(), limit, workers-limit)
	}
	if got, err := c.Counters(ctx, "quota"); err != nil || got[0] != limit {
		t.Fatalf("final value = %v %v", got, err)
	}
}

func testIncrUpToExpiry(t *testing.T, c cache.Cache) {
	if v, ok, err := c.IncrUpTo(ctx, "past", 5, time.Now().Add(-time.Second)); err != nil || !ok || v != 1 {
		t.Fatalf("past: %d %v %v", v, ok, err)
	}
	if _, ok := mustGet(t, c, "past"); ok {
		t.Fatal("counter with past expireAt still visible")
	}
	soon := time.Now().Add(shortTTL)
	for i := 0; i < 2; i++ {
		if _, ok, err := c.IncrUpTo(ctx, "win", 2, soon); err != nil || !ok {
			t.Fatalf("win %d: %v %v", i, ok, err)
		}
	}
	if _, ok, _ := c.IncrUpTo(ctx, "win", 2, soon); ok {
		t.Fatal("over limit in window")
	}
	time.Sleep(afterShort)
	// New window: the counter was created with the old expireAt and is gone.
	if v, ok, err := c.IncrUpTo(ctx, "win", 2, time.Now().Add(time.Hour)); err != nil || !ok || v != 1 {
		t.Fatalf("next window: %d %v %v", v, ok, err)
	}
}

func testCounters(t *testing.T, c cache.Cache) {
	if got, err := c.Counters(ctx); err != nil || len(got) != 0 {
		t.Fatalf("no keys: %v %v", got, err)
	}
	if _, err := c.IncrBy(ctx, "a", 3, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.IncrBy(ctx, "c", -4, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Counters(ctx, "a", "b", "c", "a")
	if err != nil || len(got) != 4 || got[0] != 3 || got[1] != 0 || got[2] != -4 || got[3] != 3 {
		t.Fatalf("Counters = %v %v", got, err)
	}
}

func testNotInteger(t *testing.T, c cache.Cache) {
	must(t, c.Set(ctx, "txt", []byte("hello"), 0))
	if _, err := c.IncrBy(ctx, "txt", 1, time.Time{}); !errors.Is(err, cache.ErrNotInteger) {
		t.Fatalf("IncrBy on text: %v", err)
	}
	if _, _, err := c.IncrUpTo(ctx, "txt", 10, time.Time{}); !errors.Is(err, cache.ErrNotInteger) {
		t.Fatalf("IncrUpTo on text: %v", err)
	}
	if _, err := c.Counters(ctx, "txt"); !errors.Is(err, cache.ErrNotInteger) {
		t.Fatalf("Counters on text: %v", err)
	}
	if v, _ := mustGet(t, c, "txt"); string(v) != "hello" {
		t.Fatalf("value changed: %q", v)
	}
}

func testPing(t *testing.T, c cache.Cache) {
	must(t, c.Ping(ctx))
}

// BenchIncrUpTo measures IncrUpTo in parallel on a handful of hot keys.
func BenchIncrUpTo(b *testing.B, c cache.Cache) {
	exp := time.Now().Add(time.Hour)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("bench:%d", next.Add(1)%8)
		for pb.Next() {
			if _, _, err := c.IncrUpTo(ctx, key, 1<<62, exp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func testIncrByOnce(t *testing.T, c cache.Cache) {
	exp := time.Now().Add(time.Hour)
	steps := []struct {
		id          string
		n           int64
		wantApplied bool
		want        int64
	}{
		{"a", 5, true, 5},
		{"a", 5, false, 5}, // a retry of "a": not added twice
		{"b", -2, true, 3},
		{"a", 7, false, 3},
	}
	for _, s := range steps {
		applied, v, err := c.IncrByOnce(ctx, "once", s.id, s.n, exp)
		if err != nil || applied != s.wantApplied || v != s.want {
			t.Fatalf("IncrByOnce(%q, %d) = %v, %d, %v; want %v, %d", s.id, s.n, applied, v, err, s.wantApplied, s.want)
		}
	}
	if got, err := c.IncrBy(ctx, "once", 1, exp); err != nil || got != 4 {
		t.Fatalf("IncrBy after IncrByOnce = %d, %v; want 4", got, err)
	}
	var wg sync.WaitGroup
	var applied atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _, err := c.IncrByOnce(ctx, "once-conc", "same", 3, exp)
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
		}()
	}
	wg.Wait()
	if got, err := c.Counters(ctx, "once-conc"); err != nil || got[0] != 3 || applied.Load() != 1 {
		t.Fatalf("20 concurrent IncrByOnce with one id: counter %v %v, applied %d; want [3], 1", got, err, applied.Load())
	}
	must(t, c.Set(ctx, "once-text", []byte("x"), 0))
	if _, _, err := c.IncrByOnce(ctx, "once-text", "a", 1, exp); !errors.Is(err, cache.ErrNotInteger) {
		t.Fatalf("IncrByOnce on text = %v; want ErrNotInteger", err)
	}
}
