package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore/sqlstoretest"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
	"github.com/agentidp/agentidp/services/webhook/migrations"
	"github.com/google/uuid"
)

// BenchmarkClaim measures one claim of a worker batch (16 deliveries, 16
// per endpoint) over a pending backlog of 1,000 and 20,000 deliveries
// spread over 10 endpoints (one holding half of the backlog). The time per
// claim must not grow with the backlog. Each iteration claims at a later
// instant than the previous lease, so the backlog stays the same size.
//
//	go test -run '^$' -bench Claim -benchtime 2s ./internal/sqlstore/
func BenchmarkClaim(b *testing.B) {
	for _, d := range sqlstoretest.Drivers() {
		for _, backlog := range []int{1000, 20000} {
			b.Run(fmt.Sprintf("%s/backlog=%d", d, backlog), func(b *testing.B) {
				db := sqlstoretest.Open(b, d, migrations.FS)
				store := whstore.New(db)
				start := fillBacklog(b, store, backlog)
				ctx := context.Background()
				// Fresh statistics, as autovacuum (or SQLite's optimize)
				// would have them after such a load.
				if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
					b.Fatal(err)
				}
				now := start
				b.ResetTimer()
				for b.Loop() {
					// Leases end a microsecond later: the next claim finds
					// the same backlog claimable again.
					got, err := store.Claim(ctx, now, now.Add(time.Microsecond), 16, 16)
					if err != nil || len(got) == 0 {
						b.Fatalf("Claim = %d, %v; want deliveries", len(got), err)
					}
					now = now.Add(2 * time.Microsecond)
				}
			})
		}
	}
}

// fillBacklog creates 10 endpoints and n pending deliveries, half of them
// for the first endpoint, and returns when they are all due.
func fillBacklog(b *testing.B, store *whstore.Store, n int) time.Time {
	b.Helper()
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	busyOrg, otherOrg := uuid.NewString(), uuid.NewString()
	for i := range 10 {
		org := otherOrg
		if i == 0 {
			org = busyOrg
		}
		sub := hook.Subscription{ID: hook.IDPrefix + uuid.NewString(), OrganizationID: org, Name: "bench",
			URL: "https://example.com/hook", Events: []string{hook.WildcardEvent}, Active: true,
			SecretPath: hook.SecretPathPrefix + "x", CreatedAt: at, UpdatedAt: at}
		if err := store.CreateSubscription(ctx, sub); err != nil {
			b.Fatal(err)
		}
	}
	// busyOrg's events go to one endpoint, otherOrg's to nine.
	busy, other := n/2, n/2/9
	var batch []events.Envelope
	flush := func() {
		if _, err := store.Enqueue(ctx, batch, at, nil); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	add := func(org string, count int) {
		for range count {
			e, err := events.New(events.TokenIssued, "bench", org, "", map[string]string{"k": "v"})
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, e)
			if len(batch) == 500 {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
	}
	add(busyOrg, busy)
	add(otherOrg, other)
	return at.Add(time.Second)
}
