// Package storetest is the conformance suite of hook.Store and
// hook.SecretStore: every implementation (PostgreSQL and SQLite through
// internal/sqlstore; the secrets-port adapter on Local and Vault) must pass
// it.
package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	"github.com/google/uuid"
)

// Harness is a fresh, empty store, its secret store, and a way to list the
// subjects of the events in its outbox.
type Harness struct {
	Store   hook.Store
	Secrets hook.SecretStore
	Outbox  func(t *testing.T) []string
}

// Run runs the suite; newHarness must return an empty store each call.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"CreateGetScopedToOrg", testCreateGet},
		{"ListPagesStably", testList},
		{"UpdateAndAbort", testUpdate},
		{"DeleteRemovesDeliveries", testDelete},
		{"EnqueueMatchesAndIsIdempotent", testEnqueue},
		{"ClaimHonoursCapAndLease", testClaim},
		{"ClaimOldestFirstAcrossBacklog", testClaimOrder},
		{"ConcurrentClaimsKeepCapAndNeverShare", testConcurrentClaims},
		{"CompleteTracksFailuresAndDisables", testComplete},
		{"DisabledEndpointAccountsForEveryEvent", testDisabledEndpointAccountsForEveryEvent},
		{"DeliveriesNewestFirstAndRedeliver", testDeliveries},
		{"Secrets", testSecrets},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func newSub(t *testing.T, h Harness, orgID string, at time.Time, evs ...string) hook.Subscription {
	t.Helper()
	if len(evs) == 0 {
		evs = []string{hook.WildcardEvent}
	}
	s := hook.Subscription{ID: hook.IDPrefix + uuid.NewString(), OrganizationID: orgID, Name: "hook", URL: "https://example.com/hook",
		Events: evs, Active: true, SecretPath: hook.SecretPathPrefix + "x", CreatedAt: at, UpdatedAt: at}
	if err := h.Store.CreateSubscription(context.Background(), s); err != nil {
		t.Fatalf("CreateSubscription = %v", err)
	}
	return s
}

func event(t *testing.T, typ events.Type, orgID string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", orgID, "", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testCreateGet(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base, "agent.created", "token.issued")
	got, err := h.Store.GetSubscription(ctx, org, s.ID)
	if err != nil {
		t.Fatalf("GetSubscription = %v", err)
	}
	if got.Name != s.Name || got.URL != s.URL || !slices.Equal(got.Events, s.Events) || !got.Active ||
		!got.CreatedAt.Equal(base) || got.FailingSince != nil || got.SecretPath != s.SecretPath {
		t.Errorf("GetSubscription = %+v; want %+v", got, s)
	}
	if _, err := h.Store.GetSubscription(ctx, uuid.NewString(), s.ID); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("GetSubscription(other org) = %v; want ErrNotFound", err)
	}
	if _, err := h.Store.GetSubscription(ctx, org, "wh_missing"); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("GetSubscription(missing) = %v; want ErrNotFound", err)
	}
}

func testList(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	var want []string
	for i := range 5 {
		want = append(want, newSub(t, h, org, base.Add(time.Duration(i%2)*time.Second)).ID)
	}
	newSub(t, h, uuid.NewString(), base)
	var got []string
	for off := 0; off < 6; off += 2 {
		page, total, err := h.Store.ListSubscriptions(ctx, org, off, 2)
		if err != nil {
			t.Fatalf("ListSubscriptions = %v", err)
		}
		if total != 5 {
			t.Errorf("ListSubscriptions total = %d; want 5", total)
		}
		for _, s := range page {
			got = append(got, s.ID)
		}
	}
	slices.Sort(want)
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	if !slices.Equal(sorted, want) {
		t.Errorf("ListSubscriptions pages = %v; want each of %v once", got, want)
	}
}

func testUpdate(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base)
	since := base.Add(time.Minute)
	got, err := h.Store.UpdateSubscription(ctx, org, s.ID, func(s *hook.Subscription) error {
		s.Name, s.URL, s.Events, s.Active = "renamed", "https://example.org/x", []string{"token.issued"}, false
		s.FailureCount, s.FailingSince, s.UpdatedAt = 3, &since, since
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateSubscription = %v", err)
	}
	reread, _ := h.Store.GetSubscription(ctx, org, s.ID)
	for _, x := range []hook.Subscription{got, reread} {
		if x.Name != "renamed" || x.URL != "https://example.org/x" || x.Active || x.FailureCount != 3 ||
			x.FailingSince == nil || !x.FailingSince.Equal(since) || !slices.Equal(x.Events, []string{"token.issued"}) {
			t.Errorf("after UpdateSubscription = %+v", x)
		}
	}
	boom := errors.New("boom")
	if _, err := h.Store.UpdateSubscription(ctx, org, s.ID, func(s *hook.Subscription) error { s.Name = "x"; return boom }); !errors.Is(err, boom) {
		t.Errorf("UpdateSubscription(abort) = %v; want boom", err)
	}
	if x, _ := h.Store.GetSubscription(ctx, org, s.ID); x.Name != "renamed" {
		t.Errorf("aborted update changed name to %q", x.Name)
	}
	if _, err := h.Store.UpdateSubscription(ctx, uuid.NewString(), s.ID, func(*hook.Subscription) error { return nil }); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("UpdateSubscription(other org) = %v; want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base)
	if n, err := h.Store.Enqueue(ctx, []events.Envelope{event(t, events.AgentCreated, org)}, base, nil); err != nil || n != 1 {
		t.Fatalf("Enqueue = %d, %v; want 1", n, err)
	}
	if _, err := h.Store.DeleteSubscription(ctx, uuid.NewString(), s.ID); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("DeleteSubscription(other org) = %v; want ErrNotFound", err)
	}
	if _, err := h.Store.DeleteSubscription(ctx, org, s.ID); err != nil {
		t.Fatalf("DeleteSubscription = %v", err)
	}
	if _, err := h.Store.GetSubscription(ctx, org, s.ID); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("GetSubscription(deleted) = %v; want ErrNotFound", err)
	}
	if n, _ := h.Store.CountPending(ctx); n != 0 {
		t.Errorf("CountPending after delete = %d; want 0", n)
	}
}

func testEnqueue(t *testing.T, h Harness) {
	ctx := context.Background()
	org, other := uuid.NewString(), uuid.NewString()
	all := newSub(t, h, org, base)
	agents := newSub(t, h, org, base, "agent.created")
	tokens := newSub(t, h, org, base, "token.issued")
	inactive := newSub(t, h, org, base)
	if _, err := h.Store.UpdateSubscription(ctx, org, inactive.ID, func(s *hook.Subscription) error { s.Active = false; return nil }); err != nil {
		t.Fatal(err)
	}
	newSub(t, h, other, base, "agent.created")
	skipped := newSub(t, h, org, base)
	evs := []events.Envelope{event(t, events.AgentCreated, org), event(t, events.AgentCreated, ""), event(t, events.TokenRevoked, org)}
	skip := func(s hook.Subscription, _ events.Envelope) bool { return s.ID == skipped.ID }
	n, err := h.Store.Enqueue(ctx, evs, base, skip)
	if err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
	// agent.created → all, agents; token.revoked → all. None for tokens,
	// the other org, the skipped one or the org-less event; inactive gets
	// both recorded as skipped_disabled (not counted).
	if n != 3 {
		t.Errorf("Enqueue created %d; want 3", n)
	}
	if n, err := h.Store.Enqueue(ctx, evs, base, skip); err != nil || n != 0 {
		t.Errorf("Enqueue again = %d, %v; want 0 (idempotent)", n, err)
	}
	for sub, want := range map[string]int{all.ID: 2, agents.ID: 1, tokens.ID: 0, inactive.ID: 2, skipped.ID: 0} {
		list, total, err := h.Store.ListDeliveries(ctx, org, sub, 0, 10)
		if err != nil || total != int64(want) || len(list) != want {
			t.Errorf("ListDeliveries(%s) = %d (%d), %v; want %d", sub, len(list), total, err, want)
		}
		for _, d := range list {
			if sub == inactive.ID {
				if d.Status != hook.StatusSkippedDisabled || d.NextAttemptAt != nil || d.LastError != hook.SkippedDisabledError {
					t.Errorf("delivery to an inactive endpoint = %+v; want skipped_disabled, never due", d)
				}
				continue
			}
			if d.Status != hook.StatusPending || d.Attempts != 0 || d.NextAttemptAt == nil || len(d.Payload) == 0 {
				t.Errorf("new delivery = %+v; want pending, due, with payload", d)
			}
			if _, err := events.Decode(d.Payload); err != nil {
				t.Errorf("payload does not decode: %v", err)
			}
		}
	}
}

func testClaim(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	busy := newSub(t, h, org, base, "agent.created")
	quiet := newSub(t, h, org, base, "token.issued")
	var evs []events.Envelope
	for range 5 {
		evs = append(evs, event(t, events.AgentCreated, org))
	}
	evs = append(evs, event(t, events.TokenIssued, org))
	if _, err := h.Store.Enqueue(ctx, evs, base, nil); err != nil {
		t.Fatal(err)
	}
	lease := base.Add(time.Minute)
	if got, err := h.Store.Claim(ctx, base.Add(-time.Second), lease, 10, 2); err != nil || len(got) != 0 {
		t.Errorf("Claim(before due) = %d, %v; want 0", len(got), err)
	}
	got, err := h.Store.Claim(ctx, base, lease, 10, 2)
	if err != nil {
		t.Fatalf("Claim = %v", err)
	}
	per := map[string]int{}
	for _, c := range got {
		per[c.SubscriptionID]++
		if c.URL == "" || c.SecretPath == "" {
			t.Errorf("claimed %+v lacks URL or secret path", c)
		}
	}
	if per[busy.ID] != 2 || per[quiet.ID] != 1 {
		t.Errorf("Claim per endpoint = %v; want busy 2 (cap), quiet 1", per)
	}
	if again, _ := h.Store.Claim(ctx, base.Add(time.Second), lease, 10, 2); len(again) != 0 {
		t.Errorf("Claim while endpoints are at their cap = %d; want 0", len(again))
	}
	// Completing one frees one slot of the busy endpoint.
	for _, c := range got {
		if c.SubscriptionID == busy.ID {
			if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusDelivered, At: base}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if again, _ := h.Store.Claim(ctx, base.Add(time.Second), lease, 10, 2); len(again) != 1 {
		t.Errorf("Claim after one completion = %d; want 1", len(again))
	}
	// Expired leases are claimable again (a worker died).
	if again, _ := h.Store.Claim(ctx, lease.Add(time.Second), lease.Add(time.Hour), 10, 2); len(again) != 3 {
		t.Errorf("Claim after the leases expired = %d; want 3 (2 busy + 1 quiet)", len(again))
	}
	// limit is honoured.
	if again, _ := h.Store.Claim(ctx, lease.Add(2*time.Hour), lease.Add(3*time.Hour), 1, 2); len(again) != 1 {
		t.Errorf("Claim(limit 1) = %d; want 1", len(again))
	}
}

// testClaimOrder: a claim takes each endpoint's oldest due deliveries,
// skips those not yet due, and a long backlog at one endpoint does not keep
// another endpoint's delivery out of the batch.
func testClaimOrder(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	busy := newSub(t, h, org, base, "agent.created")
	quiet := newSub(t, h, org, base, "token.issued")
	var want []string
	for i := range 40 {
		e := event(t, events.AgentCreated, org)
		if _, err := h.Store.Enqueue(ctx, []events.Envelope{e}, base.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			want = append(want, e.ID)
		}
	}
	if _, err := h.Store.Enqueue(ctx, []events.Envelope{event(t, events.TokenIssued, org)}, base.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.Claim(ctx, base.Add(time.Hour), base.Add(2*time.Hour), 4, 3)
	if err != nil {
		t.Fatalf("Claim = %v", err)
	}
	var busyEvents []string
	quietN := 0
	for _, c := range got {
		switch c.SubscriptionID {
		case busy.ID:
			busyEvents = append(busyEvents, c.EventID)
		case quiet.ID:
			quietN++
		}
	}
	if !slices.Equal(busyEvents, want) || quietN != 1 {
		t.Errorf("Got(Claim busy events) = %v, quiet %d; want the 3 oldest %v, quiet 1", busyEvents, quietN, want)
	}
	// Not yet due: a delivery enqueued later than the claim instant.
	if again, _ := h.Store.Claim(ctx, base.Add(-time.Second), base.Add(time.Hour), 10, 10); len(again) != 0 {
		t.Errorf("Got(Claim before anything is due) = %d; want 0", len(again))
	}
}

// testConcurrentClaims: claims racing for the same endpoints never return
// the same delivery twice nor lease more than the cap per endpoint.
func testConcurrentClaims(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	const subs, perSub, maxPer = 3, 30, 4
	for range subs {
		newSub(t, h, org, base)
	}
	var evs []events.Envelope
	for range perSub {
		evs = append(evs, event(t, events.AgentCreated, org))
	}
	if n, err := h.Store.Enqueue(ctx, evs, base, nil); err != nil || n != subs*perSub {
		t.Fatalf("Enqueue = %d, %v; want %d", n, err, subs*perSub)
	}
	results := make(chan []hook.Claimed, 8)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := h.Store.Claim(ctx, base, base.Add(time.Minute), 5, maxPer)
			results <- got
			errs <- err
		}()
	}
	seen := map[string]bool{}
	per := map[string]int{}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Claim = %v", err)
		}
		for _, c := range <-results {
			if seen[c.ID] {
				t.Errorf("delivery %s claimed twice", c.ID)
			}
			seen[c.ID] = true
			per[c.SubscriptionID]++
		}
	}
	for id, n := range per {
		if n > maxPer {
			t.Errorf("Got(leased at %s) = %d; want at most %d", id, n, maxPer)
		}
	}
	if len(seen) == 0 {
		t.Error("no concurrent claim got anything")
	}
}

func claimOne(t *testing.T, h Harness, at time.Time) hook.Claimed {
	t.Helper()
	got, err := h.Store.Claim(context.Background(), at, at.Add(time.Minute), 1, 4)
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim = %d, %v; want 1", len(got), err)
	}
	return got[0]
}

func testComplete(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base)
	for range 4 {
		if _, err := h.Store.Enqueue(ctx, []events.Envelope{event(t, events.AgentCreated, org)}, base, nil); err != nil {
			t.Fatal(err)
		}
	}
	disabled := 0
	onDisable := func(sub hook.Subscription, reason string) (events.Envelope, error) {
		disabled++
		return events.New(events.WebhookEndpointDisabled, "test", sub.OrganizationID, sub.ID, map[string]string{"reason": reason})
	}
	code := 500
	c := claimOne(t, h, base)
	next := base.Add(time.Hour)
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusFailed, StatusCode: &code, Error: "HTTP 500",
		NextAttemptAt: &next, At: base, DisableAfter: 2 * time.Hour, EndpointDisabled: onDisable}); err != nil {
		t.Fatalf("Complete(failed) = %v", err)
	}
	sub, _ := h.Store.GetSubscription(ctx, org, s.ID)
	if sub.FailureCount != 1 || sub.FailingSince == nil || !sub.FailingSince.Equal(base) || !sub.Active {
		t.Errorf("after a failure: %+v; want failure_count 1, failing since base, active", sub)
	}
	list, _, _ := h.Store.ListDeliveries(ctx, org, s.ID, 0, 10)
	for _, d := range list {
		if d.ID == c.ID && (d.Status != hook.StatusFailed || d.Attempts != 1 || d.LastStatusCode == nil || *d.LastStatusCode != 500 ||
			d.LastError != "HTTP 500" || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(next)) {
			t.Errorf("failed delivery = %+v", d)
		}
	}
	// Success resets the streak.
	c = claimOne(t, h, base)
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusDelivered, At: base.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if sub, _ := h.Store.GetSubscription(ctx, org, s.ID); sub.FailureCount != 0 || sub.FailingSince != nil {
		t.Errorf("after a success: failure_count %d, failing since %v; want 0, nil", sub.FailureCount, sub.FailingSince)
	}
	// Failing continuously for DisableAfter disables once, with one event.
	c = claimOne(t, h, base)
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusFailed, NextAttemptAt: &next, At: base.Add(time.Hour),
		DisableAfter: 2 * time.Hour, EndpointDisabled: onDisable}); err != nil {
		t.Fatal(err)
	}
	c = claimOne(t, h, base)
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusDeadLetter, At: base.Add(4 * time.Hour),
		DisableAfter: 2 * time.Hour, EndpointDisabled: onDisable, Events: []events.Envelope{event(t, events.WebhookDeliveryFailed, org)}}); err != nil {
		t.Fatal(err)
	}
	sub, _ = h.Store.GetSubscription(ctx, org, s.ID)
	if sub.Active || sub.FailureCount != 2 || disabled != 1 {
		t.Errorf("after failing 3h: active %v, failure_count %d, disabled events %d; want false, 2, 1", sub.Active, sub.FailureCount, disabled)
	}
	got := h.Outbox(t)
	want := []string{events.WebhookEndpointDisabled.Subject(), events.WebhookDeliveryFailed.Subject()}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("outbox = %v; want %v", got, want)
	}
	if n, _ := h.Store.Claim(ctx, base.Add(24*time.Hour), base.Add(25*time.Hour), 10, 4); len(n) != 0 {
		t.Errorf("Claim for a disabled endpoint = %d; want 0", len(n))
	}
	// The two deliveries waiting for a retry were recorded as not sent.
	statuses := map[string]int{}
	list, _, _ = h.Store.ListDeliveries(ctx, org, s.ID, 0, 10)
	for _, d := range list {
		statuses[d.Status]++
	}
	if statuses[hook.StatusDelivered] != 1 || statuses[hook.StatusDeadLetter] != 1 || statuses[hook.StatusSkippedDisabled] != 2 || len(list) != 4 {
		t.Errorf("deliveries after disabling = %v; want 1 delivered, 1 dead_letter, 2 skipped_disabled", statuses)
	}
}

// testDisabledEndpointAccountsForEveryEvent: an attempt in flight when its
// endpoint was disabled ends skipped_disabled rather than failed (it will
// never be retried), and a skipped delivery can be redelivered.
func testDisabledEndpointAccountsForEveryEvent(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base)
	if _, err := h.Store.Enqueue(ctx, []events.Envelope{event(t, events.AgentCreated, org)}, base, nil); err != nil {
		t.Fatal(err)
	}
	c := claimOne(t, h, base)
	if _, err := h.Store.UpdateSubscription(ctx, org, s.ID, func(s *hook.Subscription) error { s.Active = false; return nil }); err != nil {
		t.Fatal(err)
	}
	next := base.Add(time.Minute)
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusFailed, Error: "HTTP 500", NextAttemptAt: &next, At: base}); err != nil {
		t.Fatal(err)
	}
	list, _, err := h.Store.ListDeliveries(ctx, org, s.ID, 0, 10)
	if err != nil || len(list) != 1 || list[0].Status != hook.StatusSkippedDisabled || list[0].NextAttemptAt != nil || list[0].Attempts != 1 {
		t.Fatalf("delivery failed on a disabled endpoint = %+v, %v; want skipped_disabled after 1 attempt, never due", list, err)
	}
	if _, err := h.Store.UpdateSubscription(ctx, org, s.ID, func(s *hook.Subscription) error { s.Active = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Store.Redeliver(ctx, org, s.ID, c.ID, next); err != nil || r.Status != hook.StatusPending {
		t.Fatalf("Redeliver(skipped_disabled) = %+v, %v; want pending", r, err)
	}
	if got := claimOne(t, h, next); got.ID != c.ID {
		t.Errorf("Claim after Redeliver = %s; want %s", got.ID, c.ID)
	}
}

func testDeliveries(t *testing.T, h Harness) {
	ctx := context.Background()
	org := uuid.NewString()
	s := newSub(t, h, org, base)
	var ids []string
	for i := range 3 {
		e := event(t, events.AgentCreated, org)
		ids = append(ids, e.ID)
		if _, err := h.Store.Enqueue(ctx, []events.Envelope{e}, base.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
	}
	list, total, err := h.Store.ListDeliveries(ctx, org, s.ID, 0, 2)
	if err != nil || total != 3 || len(list) != 2 || list[0].EventID != ids[2] || list[1].EventID != ids[1] {
		t.Fatalf("ListDeliveries = %v (%d), %v; want newest first", list, total, err)
	}
	if _, _, err := h.Store.ListDeliveries(ctx, uuid.NewString(), s.ID, 0, 2); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("ListDeliveries(other org) = %v; want ErrNotFound", err)
	}
	d := list[0]
	if _, err := h.Store.Redeliver(ctx, org, s.ID, d.ID, base); !errors.Is(err, hook.ErrNotRedeliverable) {
		t.Errorf("Redeliver(pending) = %v; want ErrNotRedeliverable", err)
	}
	c := claimOne(t, h, base.Add(time.Minute))
	if err := h.Store.Complete(ctx, c.ID, hook.Outcome{Status: hook.StatusDeadLetter, Error: "gone", At: base}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store.Redeliver(ctx, uuid.NewString(), s.ID, c.ID, base); !errors.Is(err, hook.ErrNotFound) {
		t.Errorf("Redeliver(other org) = %v; want ErrNotFound", err)
	}
	at := base.Add(time.Hour)
	r, err := h.Store.Redeliver(ctx, org, s.ID, c.ID, at)
	if err != nil || r.Status != hook.StatusPending || r.Attempts != 0 {
		t.Fatalf("Redeliver = %+v, %v; want pending with 0 attempts", r, err)
	}
	again, err := h.Store.Claim(ctx, at, at.Add(time.Minute), 10, 4)
	found := false
	for _, x := range again {
		found = found || x.ID == c.ID
	}
	if err != nil || !found {
		t.Errorf("Claim after Redeliver = %v, %v; want the redelivered one", again, err)
	}
}

func testSecrets(t *testing.T, h Harness) {
	RunSecrets(t, func(*testing.T) hook.SecretStore { return h.Secrets })
}

// RunSecrets checks the hook.SecretStore contract on the store newSecrets
// returns (used for the secrets-port adapter on every backend).
func RunSecrets(t *testing.T, newSecrets func(t *testing.T) hook.SecretStore) {
	t.Helper()
	s := newSecrets(t)
	ctx := context.Background()
	path := hook.SecretPathPrefix + hook.IDPrefix + uuid.NewString()
	if _, err := s.Get(ctx, path); !errors.Is(err, hook.ErrSecretNotFound) {
		t.Errorf("Get(missing) = %v; want ErrSecretNotFound", err)
	}
	v1, err := s.Put(ctx, path, map[string]string{"current": "a"})
	if err != nil {
		t.Fatalf("Put = %v", err)
	}
	v2, err := s.Put(ctx, path, map[string]string{"current": "b", "previous": "a"})
	if err != nil || v2 <= v1 {
		t.Fatalf("Put again = %d, %v; want a version above %d", v2, err, v1)
	}
	got, err := s.Get(ctx, path)
	if err != nil || got["current"] != "b" || got["previous"] != "a" {
		t.Errorf("Get = %v, %v; want the latest data", got, err)
	}
	if err := s.Delete(ctx, path); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := s.Get(ctx, path); !errors.Is(err, hook.ErrSecretNotFound) {
		t.Errorf("Get(deleted) = %v; want ErrSecretNotFound", err)
	}
	if err := s.Delete(ctx, path); err != nil {
		t.Errorf("Delete(missing) = %v; want nil", err)
	}
	rotated := map[string]string{"current": "whsec_new", "previous": "whsec_old", "previous_until": "2026-03-02T12:00:00.123456789Z"}
	if _, err := s.Put(ctx, path, rotated); err != nil {
		t.Fatalf("Put(after delete) = %v", err)
	}
	if got, err := s.Get(ctx, path); err != nil || len(got) != len(rotated) || got["previous_until"] != rotated["previous_until"] {
		t.Errorf("Get = %v, %v; want %v", got, err, rotated)
	}
}
