// Package httpapi is the federation service's HTTP API (echo), reached
// through the gateway with its signed internal context.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/federation/internal/domain"
)

// NewHandler returns the API; every route needs the internal context:
//
//	POST   /api/v1/federation/trust               admin:orgs   register a partner
//	GET    /api/v1/federation/partners            admin:orgs   list partners
//	GET    /api/v1/federation/partners/{id}       admin:orgs
//	PATCH  /api/v1/federation/partners/{id}       admin:orgs
//	DELETE /api/v1/federation/partners/{id}       admin:orgs
//	POST   /api/v1/federation/verify              agents:read  verify a partner token
//	POST   /internal/v1/federation/exchange-check (service)    map a partner token to a local agent;
//	                                                           never routed publicly by the gateway
func NewHandler(svc *domain.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, nil))
	h := &handlers{svc: svc}
	g := e.Group("/api/v1/federation")
	g.POST("/trust", h.register)
	g.GET("/partners", h.list)
	g.GET("/partners/:id", h.get)
	g.PATCH("/partners/:id", h.update)
	g.DELETE("/partners/:id", h.remove)
	g.POST("/verify", h.verify)
	e.POST("/internal/v1/federation/exchange-check", h.exchangeCheck)
	return e
}
