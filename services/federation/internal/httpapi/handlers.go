package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/federation/internal/domain"
	"github.com/labstack/echo/v4"
)

type handlers struct {
	svc *domain.Service
}

// partner is the wire form, in the seed's snake_case.
type partner struct {
	ID                   string              `json:"id"`
	Name                 string              `json:"name"`
	Issuer               string              `json:"issuer"`
	JWKSURI              string              `json:"jwks_uri"`
	Audience             string              `json:"audience"`
	AllowedOrganizations []string            `json:"allowed_organizations"`
	ClaimMapping         domain.ClaimMapping `json:"claim_mapping"`
	Status               string              `json:"status"`
	ExpiresAt            *time.Time          `json:"expires_at"`
	CreatedAt            time.Time           `json:"created_at"`
	UpdatedAt            time.Time           `json:"updated_at"`
}

// toWire renders p; its status is the effective one at now (the service's
// clock, so that it agrees with verification).
func toWire(p domain.Partner, now time.Time) partner {
	return partner{ID: p.ID, Name: p.Name, Issuer: p.Issuer, JWKSURI: p.JWKSURI, Audience: p.Audience,
		AllowedOrganizations: p.AllowedOrganizations, ClaimMapping: p.ClaimMapping, Status: p.EffectiveStatus(now),
		ExpiresAt: p.ExpiresAt, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

type trustRequest struct {
	Name                 string               `json:"name"`
	Issuer               string               `json:"issuer"`
	JWKSURI              string               `json:"jwksUri"`
	AllowedOrganizations []string             `json:"allowedOrganizations"`
	ExpiresAt            *string              `json:"expiresAt"`
	Audience             *string              `json:"audience"`
	ClaimMapping         *domain.ClaimMapping `json:"claimMapping"`
}

func (h *handlers) register(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, domain.ScopeAdminOrgs); err != nil {
		return err
	}
	var req trustRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	p, err := h.svc.Register(c.Request().Context(), id, domain.RegisterInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, toWire(p, h.svc.Now()))
}

type listResponse struct {
	Data []partner `json:"data"`
	httpx.Pagination
}

func (h *handlers) list(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, domain.ScopeAdminOrgs); err != nil {
		return err
	}
	pg, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	list, total, err := h.svc.List(c.Request().Context(), id, pg.Offset(), pg.Limit)
	if err != nil {
		return err
	}
	out := listResponse{Data: make([]partner, 0, len(list)), Pagination: httpx.NewPagination(pg, total)}
	for _, p := range list {
		out.Data = append(out.Data, toWire(p, h.svc.Now()))
	}
	return httpx.JSON(c, http.StatusOK, out)
}

func (h *handlers) get(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	p, err := h.svc.Get(c.Request().Context(), id, c.Param("id"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(p, h.svc.Now()))
}

type updateRequest struct {
	Name                 *string              `json:"name"`
	Status               *string              `json:"status"`
	AllowedOrganizations *[]string            `json:"allowedOrganizations"`
	ExpiresAt            json.RawMessage      `json:"expiresAt"`
	JWKSURI              *string              `json:"jwksUri"`
	Audience             *string              `json:"audience"`
	ClaimMapping         *domain.ClaimMapping `json:"claimMapping"`
}

func (h *handlers) update(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, domain.ScopeAdminOrgs); err != nil {
		return err
	}
	var req updateRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	p, err := h.svc.Update(c.Request().Context(), id, c.Param("id"), domain.UpdateInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(p, h.svc.Now()))
}

func (h *handlers) remove(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := h.svc.Delete(c.Request().Context(), id, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type tokenRequest struct {
	Token string `json:"token"`
}

// tokenBodyLimit bounds the body: a token beyond jose's size cap is
// rejected as invalid anyway.
const tokenBodyLimit = 16 << 10

func (h *handlers) verify(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, domain.ScopeAgentsRead, domain.ScopeAdminOrgs); err != nil {
		return err
	}
	var req tokenRequest
	if err := httpx.BindLimit(c, &req, tokenBodyLimit); err != nil {
		return err
	}
	r, err := h.svc.Verify(c.Request().Context(), id, req.Token)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, r)
}

func (h *handlers) exchangeCheck(c echo.Context) error {
	if _, err := httpx.MustIdentity(c); err != nil {
		return err
	}
	var req tokenRequest
	if err := httpx.BindLimit(c, &req, tokenBodyLimit); err != nil {
		return err
	}
	r, err := h.svc.ExchangeCheck(c.Request().Context(), req.Token)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, r)
}
