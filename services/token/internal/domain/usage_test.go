package domain

import (
	"context"
	"errors"
	"testing"
	"time"
)

type flakyCounters struct {
	fail bool
	got  map[string]int64
}

func (f *flakyCounters) IncrBy(_ context.Context, key string, n int64, _ time.Time) (int64, error) {
	if f.fail {
		return 0, errors.New("cache down")
	}
	f.got[key] += n
	return f.got[key], nil
}
func (f *flakyCounters) ReserveUpTo(context.Context, string, int64, int64, time.Time) (int64, int64, error) {
	return 0, 0, errors.New("not used")
}
func (f *flakyCounters) IncrByOnce(context.Context, string, string, int64, time.Time) (bool, int64, error) {
	return false, 0, errors.New("not used")
}
func (f *flakyCounters) SetValue(context.Context, string, string) error { return nil }

func TestUsageBatcherKeepsCountsUntilTheyLand(t *testing.T) {
	t.Parallel()
	b := newUsageBatcher()
	midnight := time.Now().Add(time.Hour)
	for range 5 {
		b.add("usage:tokens:o1:20260101", midnight)
	}
	b.add("usage:tokens:o2:20260101", midnight)
	c := &flakyCounters{fail: true, got: map[string]int64{}}
	if err := b.flush(context.Background(), c); err == nil {
		t.Fatal("flush with the cache down succeeded; want an error")
	}
	b.add("usage:tokens:o1:20260101", midnight)
	c.fail = false
	if err := b.flush(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if c.got["usage:tokens:o1:20260101"] != 6 || c.got["usage:tokens:o2:20260101"] != 1 {
		t.Errorf("counts after recovery = %v; want o1=6 o2=1 (nothing lost, nothing doubled)", c.got)
	}
	if err := b.flush(context.Background(), c); err != nil || c.got["usage:tokens:o1:20260101"] != 6 {
		t.Errorf("an empty flush changed the counts: %v, %v", c.got, err)
	}
}
