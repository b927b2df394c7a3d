package httpapi

import (
	"net/http"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/webhook/internal/hook"
	"github.com/labstack/echo/v4"
)

type handlers struct {
	svc *hook.Service
}

// webhook is the wire form of a subscription (the seed's snake_case
// fields; signingSecret only on creation and rotation).
type webhook struct {
	ID             string    `json:"id"`
	OrganizationID string    `json:"organization_id"`
	Name           string    `json:"name"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Active         bool      `json:"active"`
	SigningSecret  string    `json:"signingSecret,omitempty"`
	FailureCount   int       `json:"failure_count"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func toWire(s hook.Subscription, secret string) webhook {
	return webhook{ID: s.ID, OrganizationID: s.OrganizationID, Name: s.Name, URL: s.URL, Events: s.Events,
		Active: s.Active, SigningSecret: secret, FailureCount: s.FailureCount, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

// delivery is the wire form of a delivery (the payload is not repeated).
type delivery struct {
	ID             string     `json:"id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      string     `json:"last_error"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	CreatedAt      time.Time  `json:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
}

func deliveryWire(d hook.Delivery) delivery {
	return delivery{ID: d.ID, EventID: d.EventID, EventType: d.EventType, Status: d.Status, Attempts: d.Attempts,
		LastStatusCode: d.LastStatusCode, LastError: d.LastError, NextAttemptAt: d.NextAttemptAt, CreatedAt: d.CreatedAt,
		DeliveredAt: d.DeliveredAt}
}

func caller(c echo.Context, scope string) (authn.Identity, error) {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return authn.Identity{}, err
	}
	if err := httpx.RequireScope(id, scope); err != nil {
		return authn.Identity{}, err
	}
	if id.OrgID == "" {
		return authn.Identity{}, httpx.Forbidden("no organization in the caller's context")
	}
	return id, nil
}

type createRequest struct {
	Name   string   `json:"name"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

func (h *handlers) create(c echo.Context) error {
	id, err := caller(c, ScopeWrite)
	if err != nil {
		return err
	}
	var req createRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	sub, secret, err := h.svc.Create(c.Request().Context(), id.OrgID, hook.CreateInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, toWire(sub, secret))
}

type listResponse[T any] struct {
	Data []T `json:"data"`
	httpx.Pagination
}

func (h *handlers) list(c echo.Context) error {
	id, err := caller(c, ScopeRead)
	if err != nil {
		return err
	}
	p, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	list, total, err := h.svc.List(c.Request().Context(), id.OrgID, p.Offset(), p.Limit)
	if err != nil {
		return err
	}
	out := listResponse[webhook]{Data: make([]webhook, 0, len(list)), Pagination: httpx.NewPagination(p, total)}
	for _, s := range list {
		out.Data = append(out.Data, toWire(s, ""))
	}
	return httpx.JSON(c, http.StatusOK, out)
}

func (h *handlers) get(c echo.Context) error {
	id, err := caller(c, ScopeRead)
	if err != nil {
		return err
	}
	sub, err := h.svc.Get(c.Request().Context(), id.OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(sub, ""))
}

type updateRequest struct {
	Name   *string   `json:"name"`
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Active *bool     `json:"active"`
}

func (h *handlers) update(c echo.Context) error {
	id, err := caller(c, ScopeWrite)
	if err != nil {
		return err
	}
	var req updateRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	sub, err := h.svc.Update(c.Request().Context(), id.OrgID, c.Param("id"), hook.UpdateInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(sub, ""))
}

func (h *handlers) delete(c echo.Context) error {
	id, err := caller(c, ScopeWrite)
	if err != nil {
		return err
	}
	if err := h.svc.Delete(c.Request().Context(), id.OrgID, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) rotate(c echo.Context) error {
	id, err := caller(c, ScopeWrite)
	if err != nil {
		return err
	}
	sub, secret, err := h.svc.RotateSecret(c.Request().Context(), id.OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toWire(sub, secret))
}

func (h *handlers) deliveries(c echo.Context) error {
	id, err := caller(c, ScopeRead)
	if err != nil {
		return err
	}
	p, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	list, total, err := h.svc.Deliveries(c.Request().Context(), id.OrgID, c.Param("id"), p.Offset(), p.Limit)
	if err != nil {
		return err
	}
	out := listResponse[delivery]{Data: make([]delivery, 0, len(list)), Pagination: httpx.NewPagination(p, total)}
	for _, d := range list {
		out.Data = append(out.Data, deliveryWire(d))
	}
	return httpx.JSON(c, http.StatusOK, out)
}

func (h *handlers) redeliver(c echo.Context) error {
	id, err := caller(c, ScopeWrite)
	if err != nil {
		return err
	}
	d, err := h.svc.Redeliver(c.Request().Context(), id.OrgID, c.Param("id"), c.Param("deliveryId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusAccepted, deliveryWire(d))
}
