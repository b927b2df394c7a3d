package hook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/migrations"
	"github.com/google/uuid"
)

// staticSecrets is a SecretStore holding one signing secret per path.
type staticSecrets struct{ secret string }

func (s staticSecrets) Put(context.Context, string, map[string]string) (int, error) { return 1, nil }
func (s staticSecrets) Get(context.Context, string) (map[string]string, error) {
	return map[string]string{"current": s.secret}, nil
}
func (s staticSecrets) Delete(context.Context, string) error { return nil }

// TestRealisedRetryDelaysFollowTheSchedule stops the fault where retries
// came early and a delivery dead-lettered well before the schedule's
// total: with the clock and the random source injected, each retry falls
// due exactly base·(1 + r·MaxJitter) after the previous attempt, and the
// dead letter comes after 1+len(schedule) attempts, no sooner than the
// schedule's total.
func TestRealisedRetryDelaysFollowTheSchedule(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.5, 0.999} {
		// Named subtests: a '#' in the temporary directory's name (what
		// t.Run("") gives) would cut the SQLite file URI short.
		t.Run(fmt.Sprintf("jitter %.3f", r), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			db := sqlstoretest.Open(t, sqlstore.SQLite, migrations.FS)
			if err := db.EnsureOutbox(ctx); err != nil {
				t.Fatal(err)
			}
			store := whstore.New(db)
			var hits atomic.Int32
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
			}))
			t.Cleanup(rc.Close)
			secret, err := hook.NewSecret()
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			var clock atomic.Int64
			clock.Store(t0.UnixNano())
			schedule := hook.Schedule{time.Second, 30 * time.Second, 2 * time.Minute, time.Hour}
			d := hook.NewDispatcher(store, staticSecrets{secret}, hook.DispatcherOptions{
				Client: rc.Client(), Schedule: schedule, PollInterval: 5 * time.Millisecond, DisableAfter: 1000 * time.Hour,
				Now:  func() time.Time { return time.Unix(0, clock.Load()).UTC() },
				Rand: func() float64 { return r },
			})
			org := uuid.NewString()
			sub := hook.Subscription{ID: hook.IDPrefix + uuid.NewString(), OrganizationID: org, Name: "n", URL: rc.URL,
				Events: []string{"*"}, Active: true, SecretPath: "p", CreatedAt: t0, UpdatedAt: t0}
			if err := store.CreateSubscription(ctx, sub); err != nil {
				t.Fatal(err)
			}
			ev, err := events.New(events.AgentCreated, "test", org, "agent", map[string]string{})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() { _ = d.Run(ctx) })
			t.Cleanup(func() { cancel(); wg.Wait() })
			if err := d.Ingest(ctx, []events.Envelope{ev}); err != nil {
				t.Fatal(err)
			}
			due := t0
			for i := 0; i <= len(schedule); i++ {
				var got hook.Delivery
				waitFor(t, fmt.Sprintf("attempt %d", i+1), func() bool {
					list, _, err := store.ListDeliveries(ctx, org, sub.ID, 0, 1)
					if err != nil || len(list) != 1 || list[0].Attempts != i+1 {
						return false
					}
					got = list[0]
					return true
				})
				if i == len(schedule) {
					if got.Status != hook.StatusDeadLetter {
						t.Fatalf("after %d attempts status = %s; want %s", i+1, got.Status, hook.StatusDeadLetter)
					}
					break
				}
				base := schedule[i]
				want := due.Add(base + time.Duration(r*hook.MaxJitter*float64(base))).Truncate(time.Microsecond)
				if got.Status != hook.StatusFailed || got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(want) {
					t.Fatalf("after attempt %d: status %s, next attempt at %v; want failed, due %v (%v after the attempt)",
						i+1, got.Status, got.NextAttemptAt, want, want.Sub(due))
				}
				if delay := want.Sub(due); delay < base {
					t.Fatalf("retry %d after %v; want at least the scheduled %v", i+1, delay, base)
				}
				due = *got.NextAttemptAt
				clock.Store(due.UnixNano()) // the retry falls due
			}
			if n := hits.Load(); n != int32(len(schedule)+1) {
				t.Errorf("endpoint got %d requests; want %d", n, len(schedule)+1)
			}
			if elapsed := due.Sub(t0); elapsed < schedule.Total() || elapsed > schedule.Total()+schedule.Total()/5 {
				t.Errorf("dead letter %v after the first attempt; want within [%v, %v]", elapsed, schedule.Total(), schedule.Total()*6/5)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
