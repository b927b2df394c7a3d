// Package httpapi is the analytics service's HTTP API (echo), reached
// through the gateway with its signed internal context.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// ScopeRead is the scope of every analytics read.
const ScopeRead = "analytics:read"

// NewHandler returns the public API. Every route needs a valid internal
// context (401 otherwise) and is scoped to the caller's organisation.
func NewHandler(svc *counting.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, nil))
	h := &handlers{svc: svc}

	g := e.Group("/api/v1")
	g.GET("/analytics/tokens", h.tokens)
	return e
}
