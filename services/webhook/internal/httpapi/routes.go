// Package httpapi is the webhook service's HTTP API (echo), reached through
// the gateway with its signed internal context.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
)

// Scopes of the webhook API.
const (
	ScopeRead  = "webhooks:read"
	ScopeWrite = "webhooks:write"
)

// NewHandler returns the public API. Every route needs a valid internal
// context (401 otherwise) and the scope named next to it.
func NewHandler(svc *hook.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, nil))
	h := &handlers{svc: svc}

	g := e.Group("/api/v1/webhooks")
	g.POST("", h.create)                                         // webhooks:write
	g.GET("", h.list)                                            // webhooks:read
	g.GET("/:id", h.get)                                         // webhooks:read
	g.PATCH("/:id", h.update)                                    // webhooks:write
	g.DELETE("/:id", h.delete)                                   // webhooks:write
	g.POST("/:id/rotate-secret", h.rotate)                       // webhooks:write
	g.GET("/:id/deliveries", h.deliveries)                       // webhooks:read
	g.POST("/:id/deliveries/:deliveryId/redeliver", h.redeliver) // webhooks:write
	return e
}
