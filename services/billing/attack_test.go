package billing_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestAttackStripeWebhookFutureTimestamp sends correctly signed Stripe
// webhooks dated ahead of our clock. A signature dated an hour ahead would
// otherwise stay valid for an hour plus the tolerance: beyond the
// clock-skew allowance they are 400 VALIDATION_ERROR and change nothing,
// within it they are applied.
func TestAttackStripeWebhookFutureTimestamp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	now := time.Now()
	event := func() []byte {
		return stripeEvent("evt_"+uuid.NewString(), "customer.subscription.created", now.Unix(),
			subscriptionObject(org, "sub_future", "cus_future", "active", "price_pro", now.Add(720*time.Hour).Unix(), false))
	}
	for _, ahead := range []time.Duration{time.Hour, 10 * time.Minute, 5*time.Minute + time.Second, 2 * time.Minute} {
		r := h.webhook(t, event(), whsec, now.Add(ahead))
		if r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" {
			t.Errorf("Got(webhook signed %v ahead) = %d %s; want 400 VALIDATION_ERROR", ahead, r.status, r.raw)
		}
	}
	if n := h.count(t, "SELECT COUNT(*) FROM stripe_events"); n != 0 {
		t.Errorf("Got(stripe_events after future-dated webhooks) = %d; want 0", n)
	}
	if s := h.subscription(t, org); s["status"] != "none" || s["tier"] != "free" {
		t.Errorf("Got(subscription after future-dated webhooks) = %v; want free/none", s)
	}
	// A clock a little behind Stripe's is not an attack.
	r := h.webhook(t, event(), whsec, now.Add(20*time.Second))
	expect(t, r, http.StatusOK, "")
	if n := h.count(t, "SELECT COUNT(*) FROM stripe_events"); n != 1 {
		t.Errorf("Got(stripe_events after a webhook within the skew allowance) = %d; want 1", n)
	}
}
