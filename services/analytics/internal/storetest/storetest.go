// Package storetest is the conformance suite of counting.Store, run against
// PostgreSQL and SQLite.
package storetest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// Run runs the suite; newStore must return an empty store each call.
func Run(t *testing.T, newStore func(t *testing.T) counting.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s counting.Store)
	}{
		{"SameBatchTwiceCountsOnce", testTwice},
		{"OverlappingBatches", testOverlap},
		{"DuplicateInsideBatch", testDuplicateInBatch},
		{"CountsByOrgDayMetric", testCounts},
		{"ConcurrentOverlappingBatches", testConcurrent},
		{"Prune", testPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

var now = time.Date(2026, 5, 10, 8, 0, 0, 0, time.UTC)

const (
	org    = "0195f3c0-0000-7000-8000-000000000001"
	other  = "0195f3c0-0000-7000-8000-000000000002"
	metric = "token.issued"
	day    = "2026-05-10"
)

func evs(from, to int) []counting.Event {
	var out []counting.Event
	for i := from; i < to; i++ {
		out = append(out, counting.Event{ID: fmt.Sprintf("ev-%05d", i), OrgID: org, Date: day, Metric: metric})
	}
	return out
}

func apply(t *testing.T, s counting.Store, batch []counting.Event) {
	t.Helper()
	if err := s.Apply(context.Background(), batch, now); err != nil {
		t.Fatalf("Apply(%d events) = %v; want nil", len(batch), err)
	}
}

func wantCounts(t *testing.T, s counting.Store, orgID, m, from, to string, want map[string]int64) {
	t.Helper()
	got, err := s.Counts(context.Background(), orgID, m, from, to)
	if err != nil {
		t.Fatalf("Counts(%s, %s, %s..%s) = %v", orgID, m, from, to, err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Counts(%s, %s, %s..%s) = %v; want %v", orgID, m, from, to, got, want)
	}
}

func testTwice(t *testing.T, s counting.Store) {
	b := evs(0, 50)
	apply(t, s, b)
	apply(t, s, b)
	wantCounts(t, s, org, metric, day, day, map[string]int64{day: 50})
}

func testOverlap(t *testing.T, s counting.Store) {
	apply(t, s, evs(0, 10))
	apply(t, s, evs(5, 15))
	apply(t, s, evs(14, 20))
	wantCounts(t, s, org, metric, day, day, map[string]int64{day: 20})
}

func testDuplicateInBatch(t *testing.T, s counting.Store) {
	b := append(evs(0, 5), evs(0, 5)...)
	apply(t, s, b)
	wantCounts(t, s, org, metric, day, day, map[string]int64{day: 5})
}

func testCounts(t *testing.T, s counting.Store) {
	apply(t, s, []counting.Event{
		{ID: "a", OrgID: org, Date: "2026-05-08", Metric: metric},
		{ID: "b", OrgID: org, Date: "2026-05-09", Metric: metric},
		{ID: "c", OrgID: org, Date: "2026-05-09", Metric: metric},
		{ID: "d", OrgID: org, Date: "2026-05-09", Metric: "auth.failed"},
		{ID: "e", OrgID: other, Date: "2026-05-09", Metric: metric},
		{ID: "f", OrgID: org, Date: "2026-05-11", Metric: metric},
	})
	wantCounts(t, s, org, metric, "2026-05-08", "2026-05-10", map[string]int64{"2026-05-08": 1, "2026-05-09": 2})
	wantCounts(t, s, org, "auth.failed", "2026-05-01", "2026-05-31", map[string]int64{"2026-05-09": 1})
	wantCounts(t, s, other, metric, "2026-05-01", "2026-05-31", map[string]int64{"2026-05-09": 1})
	wantCounts(t, s, "nobody", metric, "2026-05-01", "2026-05-31", map[string]int64{})
}

// testConcurrent applies overlapping batches from two goroutines: every id
// must count exactly once.
func testConcurrent(t *testing.T, s counting.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i += 20 {
				// goroutine 0 walks forward, goroutine 1 backward, with
				// batches overlapping their own previous one and the other's.
				from := i
				if g == 1 {
					from = 380 - i
				}
				if err := s.Apply(context.Background(), evs(from, from+30), now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Apply = %v; want nil", err)
	}
	wantCounts(t, s, org, metric, day, day, map[string]int64{day: 410})
}

func testPrune(t *testing.T, s counting.Store) {
	ctx := context.Background()
	old := now.Add(-9 * 24 * time.Hour)
	if err := s.Apply(ctx, evs(0, 3), old); err != nil {
		t.Fatal(err)
	}
	apply(t, s, evs(3, 5))
	n, err := s.Prune(ctx, now.Add(-8*24*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3, nil", n, err)
	}
	apply(t, s, evs(3, 5)) // still remembered: no change
	wantCounts(t, s, org, metric, day, day, map[string]int64{day: 5})
}
