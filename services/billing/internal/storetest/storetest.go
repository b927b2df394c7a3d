// Package storetest is the conformance suite of subscription.Store: every
// implementation (PostgreSQL and SQLite through internal/sqlstore) must pass
// it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/billing/internal/subscription"
	"github.com/google/uuid"
)

// Harness is a fresh, empty store and a way to count its outbox rows.
type Harness struct {
	Store       subscription.Store
	OutboxCount func(t *testing.T) int
}

// Run runs the suite; newHarness must return an empty store each call.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"ApplyCreatesAndUpdates", testApply},
		{"ApplyOnceConcurrently", testApplyOnce},
		{"ApplyAbortsOnError", testApplyAborts},
		{"LookupBySubscriptionAndCustomer", testLookup},
		{"CountUsageOnce", testCountUsage},
		{"Reporting", testReporting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func event(t *testing.T, orgID string) events.Envelope {
	t.Helper()
	e, err := events.New(events.BillingSubscriptionUpdated, "test", orgID, "", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func put(s subscription.Subscription, evs ...events.Envelope) subscription.Change {
	return func(subscription.Subscription, bool) (*subscription.Subscription, []events.Envelope, error) {
		return &s, evs, nil
	}
}

func render(s subscription.Subscription) string {
	end := "nil"
	if s.CurrentPeriodEnd != nil {
		end = s.CurrentPeriodEnd.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{%s %s %s cus=%s sub=%s end=%s cancel=%v created=%d updated=%s}", s.OrganizationID, s.Tier, s.Status,
		s.StripeCustomerID, s.StripeSubscriptionID, end, s.CancelAtPeriodEnd, s.StripeEventCreated, s.UpdatedAt.Format(time.RFC3339Nano))
}

func testApply(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	if _, err := h.Store.Get(ctx, org); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("Get(missing) = %v; want ErrNotFound", err)
	}
	end := base.Add(30 * 24 * time.Hour)
	first := subscription.Subscription{OrganizationID: org, Tier: "pro", Status: "active", StripeCustomerID: "cus_1",
		StripeSubscriptionID: "sub_1", CurrentPeriodEnd: &end, StripeEventCreated: 100, UpdatedAt: base}
	var sawFound bool
	dup, err := h.Store.ApplyStripeEvent(ctx, "evt_1", "customer.subscription.created", base, subscription.Lookup{OrganizationID: org},
		func(cur subscription.Subscription, found bool) (*subscription.Subscription, []events.Envelope, error) {
			sawFound = found
			return &first, []events.Envelope{event(t, org)}, nil
		})
	if err != nil || dup || sawFound {
		t.Fatalf("ApplyStripeEvent(new) = %v, %v (found %v); want false, nil, not found", dup, err, sawFound)
	}
	got, err := h.Store.Get(ctx, org)
	if err != nil || render(got) != render(first) {
		t.Fatalf("Get = %s, %v; want %s", render(got), err, render(first))
	}
	second := first
	second.Status, second.CancelAtPeriodEnd, second.CurrentPeriodEnd, second.UpdatedAt = "past_due", true, nil, base.Add(time.Second)
	var seen subscription.Subscription
	if _, err := h.Store.ApplyStripeEvent(ctx, "evt_2", "invoice.payment_failed", base, subscription.Lookup{OrganizationID: org},
		func(cur subscription.Subscription, found bool) (*subscription.Subscription, []events.Envelope, error) {
			seen = cur
			return &second, nil, nil
		}); err != nil {
		t.Fatal(err)
	}
	if render(seen) != render(first) {
		t.Errorf("Got(cur passed to change) = %s; want %s", render(seen), render(first))
	}
	if got, _ := h.Store.Get(ctx, org); render(got) != render(second) {
		t.Errorf("Get after update = %s; want %s", render(got), render(second))
	}
	// Recording only (nil change result) writes nothing but the event id.
	if dup, err := h.Store.ApplyStripeEvent(ctx, "evt_3", "ping", base, subscription.Lookup{}, put(subscription.Subscription{})); err != nil || dup {
		t.Errorf("ApplyStripeEvent(no lookup) = %v, %v; want false, nil", dup, err)
	}
	if dup, err := h.Store.ApplyStripeEvent(ctx, "evt_3", "ping", base, subscription.Lookup{}, nil); err != nil || !dup {
		t.Errorf("ApplyStripeEvent(recorded id) = %v, %v; want true, nil", dup, err)
	}
	if n := h.OutboxCount(t); n != 1 {
		t.Errorf("Got(outbox) = %d; want 1", n)
	}
}

func testApplyOnce(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	var calls atomic.Int32
	var dups atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := h.Store.ApplyStripeEvent(ctx, "evt_once", "customer.subscription.created", base, subscription.Lookup{OrganizationID: org},
				func(cur subscription.Subscription, found bool) (*subscription.Subscription, []events.Envelope, error) {
					calls.Add(1)
					return &subscription.Subscription{OrganizationID: org, Tier: "pro", Status: "active", UpdatedAt: base}, []events.Envelope{event(t, org)}, nil
				})
			if err != nil {
				t.Errorf("ApplyStripeEvent = %v", err)
			}
			if dup {
				dups.Add(1)
			}
		}()
	}
	wg.Wait()
	if calls.Load() != 1 || dups.Load() != 19 || h.OutboxCount(t) != 1 {
		t.Errorf("Got(changes, duplicates, outbox) = %d, %d, %d; want 1, 19, 1", calls.Load(), dups.Load(), h.OutboxCount(t))
	}
}

func testApplyAborts(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	boom := errors.New("boom")
	_, err := h.Store.ApplyStripeEvent(ctx, "evt_x", "t", base, subscription.Lookup{OrganizationID: org},
		func(subscription.Subscription, bool) (*subscription.Subscription, []events.Envelope, error) {
			return nil, nil, boom
		})
	if !errors.Is(err, boom) {
		t.Fatalf("ApplyStripeEvent = %v; want boom", err)
	}
	// The event stays unrecorded: a retry applies it.
	dup, err := h.Store.ApplyStripeEvent(ctx, "evt_x", "t", base, subscription.Lookup{OrganizationID: org},
		put(subscription.Subscription{OrganizationID: org, Tier: "pro", Status: "active", UpdatedAt: base}))
	if err != nil || dup {
		t.Errorf("ApplyStripeEvent(retry) = %v, %v; want false, nil", dup, err)
	}
}

func testLookup(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	if _, err := h.Store.ApplyStripeEvent(ctx, "evt_a", "t", base, subscription.Lookup{OrganizationID: org},
		put(subscription.Subscription{OrganizationID: org, Tier: "pro", Status: "active", StripeCustomerID: "cus_9", StripeSubscriptionID: "sub_9", UpdatedAt: base})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		lookup subscription.Lookup
		found  bool
	}{
		{"by subscription", subscription.Lookup{SubscriptionID: "sub_9"}, true},
		{"by customer", subscription.Lookup{CustomerID: "cus_9"}, true},
		{"unknown org falls back to subscription", subscription.Lookup{OrganizationID: uuid.NewString(), SubscriptionID: "sub_9"}, true},
		{"nothing matches", subscription.Lookup{SubscriptionID: "sub_x", CustomerID: "cus_x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotFound bool
			var gotOrg string
			if _, err := h.Store.ApplyStripeEvent(ctx, "evt_"+uuid.NewString(), "t", base, tc.lookup,
				func(cur subscription.Subscription, found bool) (*subscription.Subscription, []events.Envelope, error) {
					gotFound, gotOrg = found, cur.OrganizationID
					return nil, nil, nil
				}); err != nil {
				t.Fatal(err)
			}
			if gotFound != tc.found || (tc.found && gotOrg != org) {
				t.Errorf("Got(found, org) = %v, %s; want %v, %s", gotFound, gotOrg, tc.found, org)
			}
		})
	}
}

func testCountUsage(t *testing.T, h Harness) {
	ctx := context.Background()
	org, other := uuid.NewString(), uuid.NewString()
	batch := []subscription.UsageEvent{
		{ID: "e1", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
		{ID: "e2", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
		{ID: "e2", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
		{ID: "e3", OrganizationID: org, Day: "2026-03-02", Metric: subscription.MetricTokensIssued},
		{ID: "e4", OrganizationID: org, Day: "2026-03-02", Metric: subscription.MetricAgentsRegistered},
		{ID: "e5", OrganizationID: other, Day: "2026-03-02", Metric: subscription.MetricTokensIssued},
		{ID: "e6", OrganizationID: org, Day: "2026-04-01", Metric: subscription.MetricTokensIssued},
	}
	for range 2 { // a redelivered batch counts nothing again
		if err := h.Store.CountUsage(ctx, batch, base); err != nil {
			t.Fatalf("CountUsage = %v", err)
		}
	}
	got, err := h.Store.Usage(ctx, org, "2026-03-01", "2026-03-31")
	if err != nil {
		t.Fatal(err)
	}
	want := "[2026-03-01/tokens_issued=2 2026-03-02/agents_registered=1 2026-03-02/tokens_issued=1]"
	var parts []string
	for _, u := range got {
		parts = append(parts, fmt.Sprintf("%s/%s=%d", u.Day, u.Metric, u.Count))
	}
	if g := fmt.Sprint(parts); g != want {
		t.Errorf("Usage = %s; want %s", g, want)
	}
	if n, err := h.Store.PruneUsageEvents(ctx, base.Add(time.Second)); err != nil || n != 6 {
		t.Errorf("PruneUsageEvents = %d, %v; want 6", n, err)
	}
}

func testReporting(t *testing.T, h Harness) {
	ctx := context.Background()
	org, nocustomer := uuid.NewString(), uuid.NewString()
	if _, err := h.Store.ApplyStripeEvent(ctx, "evt_r", "t", base, subscription.Lookup{OrganizationID: org},
		put(subscription.Subscription{OrganizationID: org, Tier: "pro", Status: "active", StripeCustomerID: "cus_r", UpdatedAt: base})); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.CountUsage(ctx, []subscription.UsageEvent{
		{ID: "r1", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
		{ID: "r2", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
		{ID: "r3", OrganizationID: org, Day: "2026-03-01", Metric: subscription.MetricAgentsRegistered},
		{ID: "r4", OrganizationID: nocustomer, Day: "2026-03-01", Metric: subscription.MetricTokensIssued},
	}, base); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.Unreported(ctx, subscription.MetricTokensIssued, 10)
	if err != nil || len(got) != 1 || got[0].OrganizationID != org || got[0].Count != 2 || got[0].Reported != 0 || got[0].StripeCustomerID != "cus_r" {
		t.Fatalf("Unreported = %+v, %v; want one row of %s with 2 unreported for cus_r", got, err, org)
	}
	if err := h.Store.MarkReported(ctx, org, "2026-03-01", subscription.MetricTokensIssued, 2); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.MarkReported(ctx, org, "2026-03-01", subscription.MetricTokensIssued, 1); err != nil { // never goes back
		t.Fatal(err)
	}
	if got, err := h.Store.Unreported(ctx, subscription.MetricTokensIssued, 10); err != nil || len(got) != 0 {
		t.Errorf("Unreported after mark = %+v, %v; want none", got, err)
	}
}
