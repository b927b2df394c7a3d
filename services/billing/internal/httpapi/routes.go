// Package httpapi is the billing service's HTTP API (echo), reached through
// the gateway with its signed internal context — except the Stripe webhook,
// which is public and authenticated by its Stripe-Signature.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/billing/internal/subscription"
)

// Scopes.
const (
	ScopeAdminOrgs    = "admin:orgs"
	ScopeBillingRead  = "billing:read"
	ScopeBillingWrite = "billing:write"
)

// WebhookPath is the public Stripe webhook route.
const WebhookPath = "/api/v1/billing/webhook"

// MaxWebhookBody is the largest webhook body accepted (Stripe events are a
// few KiB).
const MaxWebhookBody = 64 << 10

// NewHandler returns the public API. Every route except the webhook needs a
// valid internal context (401 otherwise).
func NewHandler(svc *subscription.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, func(method, path string) bool {
		return method == http.MethodPost && path == WebhookPath
	}))
	h := &handlers{svc: svc}

	g := e.Group("/api/v1")
	g.POST("/billing/checkout", h.checkout)
	g.POST("/tiers/upgrade", h.checkout)
	g.POST("/billing/portal", h.portal)
	g.GET("/billing/subscription", h.subscription)
	g.GET("/billing/usage", h.usage)
	g.POST("/billing/webhook", h.webhook)
	return e
}
