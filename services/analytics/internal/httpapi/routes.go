// Package httpapi is the analytics service's HTTP API (echo), reached
// through the gateway with its signed internal context.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// Scopes checked by the handlers (the gateway's policy checks them first).
const (
	ScopeRead       = "analytics:read"
	ScopeAudit      = "audit:read"
	ScopeAgentsRead = "agents:read"
)

// ControlsPath is the only public route.
const ControlsPath = "/api/v1/compliance/controls"

// Services are the use cases the API serves.
type Services struct {
	Counting   *counting.Service
	Audit      *audit.Service
	Compliance *compliance.Service
	// Integrity returns the result of the last background chain
	// verification and whether one has completed.
	Integrity func() (ok, known bool)
}

// NewHandler returns the public API. Every route but ControlsPath needs a
// valid internal context (401 otherwise) and is scoped to the caller's
// organisation.
func NewHandler(svc Services, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, func(method, path string) bool {
		return method == http.MethodGet && path == ControlsPath
	}))
	h := &handlers{svc: svc.Counting, audit: svc.Audit, compliance: svc.Compliance, integrity: svc.Integrity}

	g := e.Group("/api/v1")
	g.GET("/analytics/tokens", h.tokens)            // analytics:read
	g.GET("/analytics/agents/activity", h.activity) // analytics:read
	g.GET("/analytics/agents", h.agents)            // analytics:read
	g.GET("/audit", h.listAudit)                    // audit:read
	g.GET("/audit/verify", h.verifyAudit)           // audit:read
	g.GET("/audit/:eventId", h.getAudit)            // audit:read
	g.GET("/compliance/report", h.report)           // audit:read
	g.GET("/compliance/agent-cards", h.agentCards)  // agents:read
	g.GET("/compliance/controls", h.controls)       // public
	return e
}
