package tier_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/tier"
	"github.com/prometheus/client_golang/prometheus"
)

// publishPlan publishes a billing.subscription.updated as billing does.
func publishPlan(t *testing.T, h *harness, org, tierName string, at time.Time) {
	t.Helper()
	e, err := events.New(events.BillingSubscriptionUpdated, "billing", org, "", map[string]any{
		"organizationId": org, "tier": tierName, "status": "active", "previousTier": "free", "effectiveAt": at,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := natsbus.Raw(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsbus.PublishRaw(context.Background(), h.js, []natsbus.RawMessage{raw}); err != nil {
		t.Fatal(err)
	}
}

func pending(t *testing.T, db *sqlstore.DB, org string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM pending_tier_changes WHERE organization_id = ?", org).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitPending(t *testing.T, db *sqlstore.DB, org string, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if pending(t, db, org) == want {
			return
		}
	}
	t.Fatalf("Got(pending of %s) = %d; want %d", org, pending(t, db, org), want)
}

func TestBillingPlanChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t) // default grace 72h: downgrades stay pending
	id := h.create(t, `{"name":"Acme","slug":"acme"}`)["organizationId"].(string)
	t0 := time.Now().UTC()

	publishPlan(t, h, id, "pro", t0)
	waitKV(t, h, id, func(o events.OrgData) bool { return o.PlanTier == "pro" })

	publishPlan(t, h, id, "free", t0.Add(time.Second))
	waitPending(t, h.db, id, 1)
	if o := waitKV(t, h, id, func(events.OrgData) bool { return true }); o.PlanTier != "pro" {
		t.Errorf("Got(tier with a pending downgrade) = %s; want pro", o.PlanTier)
	}
	// An older event delivered late changes nothing; a later upgrade
	// cancels the pending downgrade.
	publishPlan(t, h, id, "enterprise", t0.Add(-time.Second))
	publishPlan(t, h, id, "enterprise", t0.Add(2*time.Second))
	waitKV(t, h, id, func(o events.OrgData) bool { return o.PlanTier == "enterprise" })
	waitPending(t, h.db, id, 0)
	if n, err := h.svc.ApplyDueDowngrades(context.Background()); err != nil || n != 0 {
		t.Errorf("ApplyDueDowngrades = %d, %v; want 0", n, err)
	}
}

func TestPendingDowngradeSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "tier.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := newHarnessDB(t, db)
	id := h.create(t, `{"name":"Acme","slug":"acme","planTier":"pro"}`)["organizationId"].(string)
	publishPlan(t, h, id, "free", time.Now().UTC().Add(-73*time.Hour)) // grace already over
	waitKV(t, h, id, func(o events.OrgData) bool { return o.PlanTier == "free" })

	// A second instance (a restart) on the same database applies a due
	// change it did not schedule itself.
	id2 := h.create(t, `{"name":"Beta","slug":"beta","planTier":"pro"}`)["organizationId"].(string)
	if _, err := db.ExecContext(ctx, "INSERT INTO pending_tier_changes (organization_id, tier, apply_at) VALUES (?, ?, ?)", id2, "free", time.Now().UTC().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	c := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { c.Close() })
	svc, err := tier.New(ctx, tier.Config{}, &svcrun.Deps{Registry: prometheus.NewRegistry(), DB: db, Cache: c, NATS: nc, JS: js, Codec: h.codec})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := svc.ApplyDueDowngrades(ctx); err != nil || n != 1 {
		t.Fatalf("ApplyDueDowngrades = %d, %v; want 1", n, err)
	}
	r := h.do(t, &authn.Identity{Subject: "x", OrgID: id2, Scopes: []string{"admin:orgs"}}, "GET", "/api/v1/organizations/"+id2, "")
	if r.body["planTier"] != "free" {
		t.Errorf("Got(tier after restart) = %v; want free", r.body["planTier"])
	}
}

// TestUndecodableBillingEventIsDeadLetteredNotDropped: a plan change the
// tier service cannot decode goes to the dead letter (to be replayed after
// a fix) instead of being acknowledged and lost; the next one applies.
func TestUndecodableBillingEventIsDeadLetteredNotDropped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.create(t, `{"name":"Acme","slug":"acme"}`)["organizationId"].(string)
	bad, err := events.New(events.BillingSubscriptionUpdated, "billing", id, "", map[string]any{"organizationId": id, "tier": 42})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := natsbus.Raw(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsbus.PublishRaw(context.Background(), h.js, []natsbus.RawMessage{raw}); err != nil {
		t.Fatal(err)
	}
	publishPlan(t, h, id, "pro", time.Now().UTC())
	waitKV(t, h, id, func(o events.OrgData) bool { return o.PlanTier == "pro" })
	dlq, err := h.js.Stream(context.Background(), events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetLastMsgForSubject(context.Background(), events.DeadLetterPrefix+"."+tier.BillingDurable)
	if err != nil {
		t.Fatalf("no dead letter for the undecodable plan change: %v", err)
	}
	if got := m.Header.Get(natsbus.HeaderEventID); got != bad.ID {
		t.Errorf("dead letter event id = %q; want %q", got, bad.ID)
	}
}
