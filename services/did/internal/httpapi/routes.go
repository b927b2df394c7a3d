// Package httpapi is the did service's HTTP API (echo). DID documents and
// agent cards are public; resolution and rotation need the gateway's signed
// internal context.
package httpapi

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/did/internal/domain"
)

// NewHandler returns the API:
//
//	GET  /.well-known/did.json                   public      instance DID document
//	GET  /agents/{agentId}/did.json              public      did:web resolution path
//	GET  /api/v1/agents/{agentId}/did            public      DID document (seed path)
//	GET  /api/v1/agents/{agentId}/did/card       public      agent card
//	GET  /api/v1/agents/{agentId}/did/resolve    agents:read W3C DID Resolution result
//	POST /api/v1/agents/{agentId}/did/rotate     agents:write (same org, privilege rule) key rotation
func NewHandler(svc *domain.Service, codec *authn.Codec, logger *slog.Logger, metrics *httpx.Metrics) http.Handler {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, IsPublic))
	h := &handlers{svc: svc}
	e.GET("/.well-known/did.json", h.instance)
	e.GET("/agents/:agentId/did.json", h.document)
	g := e.Group("/api/v1/agents/:agentId/did")
	g.GET("", h.document)
	g.GET("/card", h.card)
	g.GET("/resolve", h.resolve)
	g.POST("/rotate", h.rotate)
	return e
}

// IsPublic reports whether a request needs no internal context: the GET
// routes serving DID documents and agent cards.
func IsPublic(method, path string) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if path == "/.well-known/did.json" {
		return true
	}
	if rest, ok := strings.CutPrefix(path, "/agents/"); ok {
		id, tail, _ := strings.Cut(rest, "/")
		return id != "" && tail == "did.json"
	}
	if rest, ok := strings.CutPrefix(path, "/api/v1/agents/"); ok {
		id, tail, _ := strings.Cut(rest, "/")
		return id != "" && (tail == "did" || tail == "did/card")
	}
	return false
}
