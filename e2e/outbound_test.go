package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAttackOutboundThroughGateway runs `agentidp dev` with billing on and,
// through the gateway only, registers webhooks and federation partners at
// addresses in disguise (each a 400 that stores nothing) and posts a Stripe
// webhook signed an hour ahead (a 400), next to one signed now (a 200).
func TestAttackOutboundThroughGateway(t *testing.T) {
	mock := startStripeMock(t)
	dev := startDev(t, []string{
		"STRIPE_SECRET_KEY=sk_test_123",
		"STRIPE_API_BASE=" + mock,
		"BILLING_STRIPE_WEBHOOK_SECRET=" + billingWebhookSecret,
		"BILLING_PRICE_PRO=price_pro",
	})
	c, adminID, adminSecret := dev.c, dev.adminID, dev.adminSecret
	admin, r := c.token(adminID, adminSecret, "admin:orgs webhooks:read webhooks:write")
	c.mustStatus(r, http.StatusOK, "admin token")

	disguised := []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost.", "[::ffff:7f00:1]", "0xa9.0xfe.0xa9.0xfe"}
	for _, host := range disguised {
		r := c.do(http.MethodPost, "/api/v1/webhooks", admin, map[string]any{"name": "disguised", "url": "http://" + host + "/hook", "events": []string{"*"}})
		expectProblem(t, r, http.StatusBadRequest, "VALIDATION_ERROR", "webhook at http://"+host)
		r = c.do(http.MethodPost, "/api/v1/federation/trust", admin, map[string]any{"name": "Disguised", "issuer": "https://partner.example",
			"jwksUri": "https://" + host + "/jwks"})
		expectProblem(t, r, http.StatusBadRequest, "VALIDATION_ERROR", "partner JWKS at https://"+host)
		// Refused by the registration check, not by a fetch that failed.
		if !strings.Contains(string(r.Body), "not allowed") {
			t.Errorf("Got(partner JWKS at https://%s) = %s; want the address rule named", host, r.Body)
		}
	}
	for path, what := range map[string]string{"/api/v1/webhooks": "webhooks", "/api/v1/federation/partners": "partners"} {
		var list struct {
			Total int `json:"total"`
		}
		r := c.do(http.MethodGet, path, admin, nil)
		c.mustStatus(r, http.StatusOK, "list "+what)
		r.decode(t, &list)
		if list.Total != 0 {
			t.Errorf("Got(%s after disguised registrations) = %d; want 0", what, list.Total)
		}
	}

	now := time.Now()
	for _, tc := range []struct {
		at   time.Time
		want int
	}{{now.Add(time.Hour), http.StatusBadRequest}, {now, http.StatusOK}} {
		payload := stripeEventJSON(t, fmt.Sprintf("evt_e2e_future_%d", tc.at.Unix()), "charge.refunded", now.Unix(),
			map[string]any{"id": "ch_1", "object": "charge"})
		st, body, err := deliverWebhook(c.http, c.base, payload, billingWebhookSecret, tc.at)
		if err != nil || st != tc.want {
			t.Errorf("Got(Stripe webhook signed at %s) = %d %s %v; want %d", tc.at.Format(time.RFC3339), st, body, err, tc.want)
		}
	}
}
