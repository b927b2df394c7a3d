// Package httpapi is the token service's HTTP adapter: every route is
// listed in Routes; handlers translate HTTP to domain calls and back.
package httpapi

import (
	"log/slog"
	"strings"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// API holds what the handlers need.
type API struct {
	svc   *domain.Service
	log   *slog.Logger
	codec *authn.Codec // verifies the gateway's signed client address
}

// IsPublic reports the routes reachable without the gateway's internal
// context: the OAuth token endpoint (clients authenticate themselves) and
// discovery.
func IsPublic(method, path string) bool {
	switch {
	case method == "POST" && (path == "/oauth2/token" || path == "/api/v1/token"):
		return true
	case (method == "GET" || method == "HEAD") && strings.HasPrefix(path, "/.well-known/"):
		return true
	}
	return false
}

// New returns the service's HTTP handler.
func New(svc *domain.Service, logger *slog.Logger, metrics *httpx.Metrics, codec *authn.Codec) *echo.Echo {
	e := httpx.NewEcho(logger)
	if metrics != nil {
		e.Use(metrics.Middleware)
	}
	e.Use(httpx.RequireIdentity(codec, IsPublic))
	a := &API{svc: svc, log: logger, codec: codec}
	a.Routes(e)
	return e
}

// Routes registers every route.
func (a *API) Routes(e *echo.Echo) {
	e.POST("/oauth2/token", a.token)
	e.POST("/api/v1/token", a.token)
	e.GET("/.well-known/jwks.json", a.jwks)
	e.GET("/.well-known/oauth-authorization-server", a.discoveryDocument)
	e.GET("/.well-known/openid-configuration", a.discoveryDocument)

	// Signing keys (operator, admin:orgs).
	e.GET("/api/v1/keys", a.listKeys)
	e.POST("/api/v1/keys/rotate", a.rotateKeys)
	e.POST("/api/v1/keys/:kid/withdraw", a.withdrawKey)
	e.POST("/oauth2/revoke", a.revoke)
	e.POST("/api/v1/token/revoke", a.revoke)
	e.POST("/oauth2/introspect", a.introspect)
	e.POST("/api/v1/token/introspect", a.introspect)
	e.GET("/agent-info", a.agentInfo)

	// Delegation (agents acting for agents); token exchange is on /oauth2/token.
	e.POST("/api/v1/oauth2/token/delegate", a.delegate)
	e.DELETE("/api/v1/oauth2/token/delegate/:chainId", a.revokeDelegation)
	e.POST("/api/v1/oauth2/token/verify-delegation", a.verifyDelegation)
	e.GET("/api/v1/oauth2/token/delegations", a.listDelegations)

	g := e.Group("/api/v1/agents")
	g.POST("", a.createAgent)
	g.GET("", a.listAgents)
	g.GET("/:agentId", a.getAgent)
	g.PATCH("/:agentId", a.updateAgent)
	g.DELETE("/:agentId", a.decommissionAgent)
	g.POST("/:agentId/credentials", a.createCredential)
	g.GET("/:agentId/credentials", a.listCredentials)
	g.POST("/:agentId/credentials/:credentialId/rotate", a.rotateCredential)
	g.DELETE("/:agentId/credentials/:credentialId", a.revokeCredential)
	g.POST("/:agentId/keys", a.registerClientKey)
	g.GET("/:agentId/keys", a.listClientKeys)
	g.DELETE("/:agentId/keys/:kid", a.revokeClientKey)
}
