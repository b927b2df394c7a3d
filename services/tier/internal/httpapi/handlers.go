package httpapi

import (
	"net/http"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/tier/internal/org"
	"github.com/labstack/echo/v4"
)

type handlers struct {
	svc *org.Service
}

// organization is the wire form of an organisation (the seed's fields plus
// the effective limits).
type organization struct {
	OrganizationID    string        `json:"organizationId"`
	Name              string        `json:"name"`
	Slug              string        `json:"slug"`
	PlanTier          string        `json:"planTier"`
	MaxAgents         int64         `json:"maxAgents"`
	MaxTokensPerMonth *int64        `json:"maxTokensPerMonth"`
	Status            string        `json:"status"`
	Limits            events.Limits `json:"limits"`
	CreatedAt         time.Time     `json:"createdAt"`
	UpdatedAt         time.Time     `json:"updatedAt"`
}

func toWire(o org.Organization) organization {
	l := o.Limits()
	return organization{
		OrganizationID: o.ID, Name: o.Name, Slug: o.Slug, PlanTier: o.PlanTier,
		MaxAgents: l.MaxAgents, MaxTokensPerMonth: o.MaxTokensPerMonth, Status: o.Status,
		Limits: l, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
}

// admin checks that the caller holds admin:orgs, the only scope that
// manages organisations.
func admin(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	return httpx.RequireScope(id, ScopeAdminOrgs)
}

type createRequest struct {
	Name              string  `json:"name"`
	Slug              string  `json:"slug"`
	PlanTier          *string `json:"planTier"`
	MaxAgents         *int64  `json:"maxAgents"`
	MaxTokensPerMonth *int64  `json:"maxTokensPerMonth"`
}

func (h *handlers) createOrg(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	var req createRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	o, err := h.svc.Create(c.Request().Context(), org.CreateInput{
		Name: req.Name, Slug: req.Slug, PlanTier: req.PlanTier, MaxAgents: req.MaxAgents, MaxTokensPerMonth: req.MaxTokensPerMonth,
	})
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, toWire(o))
}

type listResponse struct {
	Data []organization `json:"data"`
	httpx.Pagination
}

func (h *handlers) listOrgs(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	p, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	list, total, err := h.svc.List(c.Request().Context(), p.Offset(), p.Limit)
	if err != nil {
		return err
	}
	out := listResponse{Data: make([]organization, 0, len(list)), Pagination: httpx.NewPagination(p, total)}
	for _, o := range list {
		out.Data = append(out.Data, toWire(o))
	}
	return httpx.JSON(c, http.StatusOK, out)
}

func (h *handlers) getOrg(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	o, err := h.svc.Get(c.Request().Context(), c.Param("orgId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(o))
}

type updateRequest struct {
	Name              *string `json:"name"`
	PlanTier          *string `json:"planTier"`
	MaxAgents         *int64  `json:"maxAgents"`
	MaxTokensPerMonth *int64  `json:"maxTokensPerMonth"`
	Status            *string `json:"status"`
}

func (h *handlers) updateOrg(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	var req updateRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	o, err := h.svc.Update(c.Request().Context(), c.Param("orgId"), org.UpdateInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(o))
}

func (h *handlers) deleteOrg(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	if err := h.svc.Delete(c.Request().Context(), c.Param("orgId")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type memberRequest struct {
	AgentID string `json:"agentId"`
	Role    string `json:"role"`
}

type memberResponse struct {
	OrganizationID string    `json:"organizationId"`
	AgentID        string    `json:"agentId"`
	Role           string    `json:"role"`
	CreatedAt      time.Time `json:"createdAt"`
}

func (h *handlers) addMember(c echo.Context) error {
	if err := admin(c); err != nil {
		return err
	}
	var req memberRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	m, err := h.svc.AddMember(c.Request().Context(), c.Param("orgId"), req.AgentID, req.Role)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, memberResponse{OrganizationID: m.OrganizationID, AgentID: m.AgentID, Role: m.Role, CreatedAt: m.CreatedAt})
}

type statusResponse struct {
	Tier   string        `json:"tier"`
	Limits events.Limits `json:"limits"`
	Usage  usage         `json:"usage"`
}

type usage struct {
	AgentCount  int64 `json:"agentCount"`
	CallsToday  int64 `json:"callsToday"`
	TokensToday int64 `json:"tokensToday"`
}

func (h *handlers) tierStatus(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	st, err := h.svc.TierStatus(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, statusResponse{Tier: st.Tier, Limits: st.Limits,
		Usage: usage{AgentCount: st.Usage.AgentCount, CallsToday: st.Usage.CallsToday, TokensToday: st.Usage.TokensToday}})
}
