package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/labstack/echo/v4"
)

// Media types.
const (
	didContentType        = "application/did+ld+json"
	resolutionContentType = `application/ld+json;profile="https://w3id.org/did-resolution"`
)

type handlers struct {
	svc *domain.Service
}

// public writes a publicly cacheable JSON body: DID documents change only on
// agent events and rotations, and a minute of staleness is acceptable.
func public(c echo.Context, status int, contentType string, v any) error {
	return write(c, status, contentType, "public, max-age=60", v)
}

// write writes v as JSON with the content type and cache policy.
func write(c echo.Context, status int, contentType, cacheControl string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return httpx.Internal(err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", cacheControl)
	return c.Blob(status, contentType, b)
}

func (h *handlers) instance(c echo.Context) error {
	d, err := h.svc.InstanceDocument(c.Request().Context())
	if err != nil {
		return err
	}
	return public(c, http.StatusOK, didContentType, d)
}

func (h *handlers) document(c echo.Context) error {
	v, err := h.svc.AgentView(c.Request().Context(), c.Param("agentId"))
	if err != nil {
		return err
	}
	if v.Meta.Deactivated {
		return domain.Gone()
	}
	return public(c, http.StatusOK, didContentType, v.Document)
}

func (h *handlers) card(c echo.Context) error {
	card, err := h.svc.Card(c.Request().Context(), c.Param("agentId"))
	if err != nil {
		return err
	}
	return public(c, http.StatusOK, "application/json", card)
}

func (h *handlers) resolve(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, domain.ScopeAgentsRead, domain.ScopeAdminOrgs); err != nil {
		return err
	}
	r, err := h.svc.Resolve(c.Request().Context(), c.Param("agentId"))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if r.DIDDocumentMetadata.Deactivated {
		// DID Resolution's HTTP binding answers a deactivated DID with 410
		// and the metadata saying so.
		status = http.StatusGone
	}
	// Authenticated, so only the caller may cache it.
	return write(c, status, resolutionContentType, "private, max-age=60", r)
}

func (h *handlers) rotate(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	rot, err := h.svc.Rotate(c.Request().Context(), id, c.Param("agentId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, rot)
}
