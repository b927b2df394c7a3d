package httpapi

import (
	"net/http"
	"strconv"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	"github.com/labstack/echo/v4"
)

// Bounds of ?days (the seed's: default 30, at most 90).
const (
	defaultDays = 30
	maxDays     = 90
)

type handlers struct {
	svc        *counting.Service
	audit      *audit.Service
	compliance *compliance.Service
	integrity  func() (ok, known bool)
}

type dayCount struct {
	Date  string `json:"date"`
	Count int64  `json:"count"`
}

type seriesResponse struct {
	OrganizationID string     `json:"organizationId"`
	Days           int        `json:"days"`
	Data           []dayCount `json:"data"`
}

// tokens answers the daily token issuances of the caller's organisation.
func (h *handlers) tokens(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := httpx.RequireScope(id, ScopeRead); err != nil {
		return err
	}
	days := defaultDays
	if v := c.QueryParam("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDays {
			return httpx.Validation("days must be an integer from 1 to 90", map[string]string{"days": v})
		}
		days = n
	}
	series, err := h.svc.Series(c.Request().Context(), id.OrgID, string(events.TokenIssued), days)
	if err != nil {
		return err
	}
	out := seriesResponse{OrganizationID: id.OrgID, Days: days, Data: make([]dayCount, len(series))}
	for i, d := range series {
		out.Data[i] = dayCount{Date: d.Date, Count: d.Count}
	}
	return httpx.JSON(c, http.StatusOK, out)
}
