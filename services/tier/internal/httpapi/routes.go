// Package httpapi is the tier service's HTTP API (echo), reached through the
// gateway with its signed internal context.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/tier/internal/org"
)

// ScopeAdminOrgs is the platform operator's cross-organisation scope.
const ScopeAdminOrgs = "admin:orgs"

// NewHandler returns the public API. Every route needs a valid internal
// context (401 otherwise).
func NewHandler(svc *org.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, nil))
	h := &handlers{svc: svc}

	g := e.Group("/api/v1")
	g.POST("/organizations", h.createOrg)
	g.GET("/organizations", h.listOrgs)
	g.GET("/organizations/:orgId", h.getOrg)
	g.PATCH("/organizations/:orgId", h.updateOrg)
	g.DELETE("/organizations/:orgId", h.deleteOrg)
	g.POST("/organizations/:orgId/members", h.addMember)
	g.GET("/tiers/status", h.tierStatus)
	return e
}
