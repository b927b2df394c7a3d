package billing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/tier"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestJourney runs billing and tier in-process on one NATS server: a free
// organisation subscribes to pro (tier applies it at once), then the
// subscription is deleted (tier keeps pro for the grace period, then free).
func TestJourney(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t)
	c := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { c.Close() })

	// tier
	nc, js := srv.Connect(t)
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	tierDB := openSQLite(t, "tier.db")
	grace := 300 * time.Millisecond
	tsvc, err := tier.New(ctx, tier.Config{ReconcileInterval: time.Hour, KVReplicas: 1, DowngradeGrace: grace, DowngradeCheckInterval: 20 * time.Millisecond},
		&svcrun.Deps{Service: "tier", Registry: prometheus.NewRegistry(), DB: tierDB, Cache: c, NATS: nc, JS: js, Codec: codec})
	if err != nil {
		t.Fatalf("tier.New = %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = tsvc.Run(runCtx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	req := httptest.NewRequest(http.MethodPost, "/api/v1/organizations", strings.NewReader(`{"name":"Acme","slug":"acme"}`))
	req.Header.Set("Content-Type", "application/json")
	v, _ := codec.Sign(authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"admin:orgs"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: req.Method, Path: req.URL.Path})
	req.Header.Set(authn.Header, v)
	r := serve(tsvc.Handler(), req)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /organizations = %d %s", r.status, r.raw)
	}
	org := r.body["organizationId"].(string)
	waitKV(t, js, org, func(o events.OrgData) bool { return o.PlanTier == "free" })

	// billing
	h := newHarness(t, enabledConfig(t), srv, c)
	now := time.Now()
	end := now.Add(720 * time.Hour).Unix()
	expect(t, h.webhook(t, stripeEvent("evt_j1", "checkout.session.completed", now.Unix(), checkoutObject(org, "sub_j", "cus_j", "pro")), whsec, now), http.StatusOK, "")
	expect(t, h.webhook(t, stripeEvent("evt_j2", "customer.subscription.created", now.Unix(), subscriptionObject(org, "sub_j", "cus_j", "active", "price_pro", end, false)), whsec, now), http.StatusOK, "")
	got := waitKV(t, js, org, func(o events.OrgData) bool { return o.PlanTier == "pro" })
	if got.Limits != (events.Limits{MaxAgents: 100, MaxCallsPerDay: 50000, MaxTokensPerDay: 50000}) {
		t.Errorf("Got(kv limits on pro) = %+v; want {100 50000 50000}", got.Limits)
	}

	deleted := time.Now()
	expect(t, h.webhook(t, stripeEvent("evt_j3", "customer.subscription.deleted", now.Unix()+1, subscriptionObject(org, "sub_j", "cus_j", "canceled", "price_pro", end, false)), whsec, now), http.StatusOK, "")
	// The downgrade is scheduled, not applied.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n int
		if err := tierDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM pending_tier_changes WHERE organization_id = ? AND tier = 'free'", org).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Got no pending downgrade within 5s; want one")
		}
	}
	if o := kvGet(t, js, org); time.Since(deleted) < grace && o.PlanTier != "pro" {
		t.Errorf("Got(kv tier within the grace period) = %s; want pro", o.PlanTier)
	}
	got = waitKV(t, js, org, func(o events.OrgData) bool { return o.PlanTier == "free" })
	if since := time.Since(deleted); since < grace {
		t.Errorf("Got(downgrade after) = %v; want at least the grace %v", since, grace)
	}
	if got.Limits.MaxCallsPerDay != 1000 {
		t.Errorf("Got(kv limits on free) = %+v; want 1000 calls/day", got.Limits)
	}
	// The pending row goes right after the tier is set (and the KV may
	// show the tier first).
	var n int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := tierDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM pending_tier_changes").Scan(&n)
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Got(pending after apply) = %d, %v; want 0", n, err)
		}
	}
	if err := tierDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.TierChanged.Subject()).Scan(&n); err != nil || n != 2 {
		t.Errorf("Got(tier.changed in tier's outbox) = %d, %v; want 2 (free→pro, pro→free)", n, err)
	}
}

func kvGet(t *testing.T, js jetstream.JetStream, id string) events.OrgData {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.OrgsBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatalf("kv get %s: %v", id, err)
	}
	var o events.OrgData
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

func waitKV(t *testing.T, js jetstream.JetStream, id string, ok func(events.OrgData) bool) events.OrgData {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.OrgsBucket)
	if err != nil {
		t.Fatalf("open kv: %v", err)
	}
	var last events.OrgData
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		e, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("kv get %s: %v", id, err)
		}
		if err := json.Unmarshal(e.Value(), &last); err != nil {
			t.Fatal(err)
		}
		if ok(last) {
			return last
		}
	}
	t.Fatalf("Got(kv %s) = %+v; condition not met within 5s", id, last)
	return last
}
