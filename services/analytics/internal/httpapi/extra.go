package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/labstack/echo/v4"
)

// caller returns the identity after checking one of scopes.
func caller(c echo.Context, scope string) (authn.Identity, error) {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return id, err
	}
	return id, httpx.RequireScope(id, scope)
}

type heatCell struct {
	DayOfWeek int   `json:"dayOfWeek"`
	Hour      int   `json:"hour"`
	Count     int64 `json:"count"`
}

// activity answers the heatmap of the last 30 days by day of week and hour.
func (h *handlers) activity(c echo.Context) error {
	id, err := caller(c, ScopeRead)
	if err != nil {
		return err
	}
	cells, err := h.svc.Heatmap(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	out := struct {
		OrganizationID string     `json:"organizationId"`
		Data           []heatCell `json:"data"`
	}{id.OrgID, make([]heatCell, len(cells))}
	for i, cell := range cells {
		out.Data[i] = heatCell{DayOfWeek: cell.DayOfWeek, Hour: cell.Hour, Count: cell.Count}
	}
	return httpx.JSON(c, http.StatusOK, out)
}

type agentUsage struct {
	AgentID      string    `json:"agentId"`
	TokensIssued int64     `json:"tokensIssued"`
	LastActiveAt time.Time `json:"lastActiveAt"`
}

// agents answers the per-agent token usage of the current month.
func (h *handlers) agents(c echo.Context) error {
	id, err := caller(c, ScopeRead)
	if err != nil {
		return err
	}
	month, usage, err := h.svc.MonthlyAgents(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	out := struct {
		OrganizationID string       `json:"organizationId"`
		Month          string       `json:"month"`
		Data           []agentUsage `json:"data"`
	}{id.OrgID, month, make([]agentUsage, len(usage))}
	for i, u := range usage {
		out.Data[i] = agentUsage{AgentID: u.AgentID, TokensIssued: u.Tokens, LastActiveAt: u.LastActiveAt}
	}
	return httpx.JSON(c, http.StatusOK, out)
}

type auditEvent struct {
	EventID        string    `json:"eventId"`
	AgentID        string    `json:"agentId"`
	Action         string    `json:"action"`
	Outcome        string    `json:"outcome"`
	Timestamp      time.Time `json:"timestamp"`
	OrganizationID string    `json:"organizationId"`
	Metadata       rawJSON   `json:"metadata"`
	Hash           string    `json:"hash"`
	PrevHash       string    `json:"prevHash"`
	Seq            int64     `json:"seq"`
}

// rawJSON embeds stored JSON text as is.
type rawJSON string

// MarshalJSON implements json.Marshaler.
func (r rawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return []byte("{}"), nil
	}
	return []byte(r), nil
}

func toEvent(r audit.Record) auditEvent {
	return auditEvent{EventID: r.EventID, AgentID: r.AgentID, Action: r.Action, Outcome: r.Outcome, Timestamp: r.Timestamp,
		OrganizationID: r.OrganizationID, Metadata: rawJSON(r.Metadata), Hash: r.Hash, PrevHash: r.PrevHash, Seq: r.Seq}
}

// parseBound reads an RFC 3339 time or a YYYY-MM-DD day (UTC); a day as
// the upper bound covers the whole day.
func parseBound(name, v string, upper bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		if upper {
			return d.Add(24*time.Hour - time.Microsecond), nil
		}
		return d, nil
	}
	return time.Time{}, httpx.Validation(name+" must be an RFC 3339 time or a YYYY-MM-DD date", map[string]string{name: v})
}

const maxFilterLen = 256

// listAudit answers a page of the caller's audit records, newest first.
func (h *handlers) listAudit(c echo.Context) error {
	id, err := caller(c, ScopeAudit)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	f := audit.Filter{AgentID: c.QueryParam("agentId"), Action: c.QueryParam("action"), Outcome: c.QueryParam("outcome")}
	for name, v := range map[string]string{"agentId": f.AgentID, "action": f.Action} {
		if len(v) > maxFilterLen {
			return httpx.Validation(name+" is too long", map[string]string{name: "at most 256 characters"})
		}
	}
	if f.Outcome != "" && f.Outcome != audit.OutcomeSuccess && f.Outcome != audit.OutcomeFailure {
		return httpx.Validation("outcome must be success or failure", map[string]string{"outcome": f.Outcome})
	}
	if v := c.QueryParam("fromDate"); v != "" {
		if f.From, err = parseBound("fromDate", v, false); err != nil {
			return err
		}
	}
	if v := c.QueryParam("toDate"); v != "" {
		if f.To, err = parseBound("toDate", v, true); err != nil {
			return err
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return httpx.Validation("fromDate must not be after toDate", nil)
	}
	recs, total, err := h.audit.List(c.Request().Context(), id.OrgID, f, page.Offset(), page.Limit)
	if err != nil {
		return err
	}
	data := make([]auditEvent, len(recs))
	for i, r := range recs {
		data[i] = toEvent(r)
	}
	p := httpx.NewPagination(page, total)
	return httpx.JSON(c, http.StatusOK, struct {
		Data []auditEvent `json:"data"`
		httpx.Pagination
	}{data, p})
}

// getAudit answers one audit record of the caller's organisation.
func (h *handlers) getAudit(c echo.Context) error {
	id, err := caller(c, ScopeAudit)
	if err != nil {
		return err
	}
	eventID := c.Param("eventId")
	if eventID == "" || len(eventID) > maxFilterLen || strings.ContainsAny(eventID, " \t\r\n") {
		return httpx.NotFound("AUDIT_EVENT_NOT_FOUND", "audit event not found or outside the retention window")
	}
	r, err := h.audit.Get(c.Request().Context(), id.OrgID, eventID)
	if errors.Is(err, audit.ErrNotFound) {
		return httpx.NotFound("AUDIT_EVENT_NOT_FOUND", "audit event not found or outside the retention window")
	}
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, toEvent(r))
}

// verifyAudit walks the caller's chain.
func (h *handlers) verifyAudit(c echo.Context) error {
	id, err := caller(c, ScopeAudit)
	if err != nil {
		return err
	}
	v, err := h.audit.Verify(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, v)
}

// report answers the AGNTCY compliance report (cached 5 minutes).
func (h *handlers) report(c echo.Context) error {
	id, err := caller(c, ScopeAudit)
	if err != nil {
		return err
	}
	r, err := h.compliance.Report(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, r)
}

// agentCards answers one card per active agent.
func (h *handlers) agentCards(c echo.Context) error {
	id, err := caller(c, ScopeAgentsRead)
	if err != nil {
		return err
	}
	cards, err := h.compliance.AgentCards(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, cards)
}

// controls answers the SOC 2 control status (public, cacheable 60s).
func (h *handlers) controls(c echo.Context) error {
	ok, known := false, false
	if h.integrity != nil {
		ok, known = h.integrity()
	}
	raw, err := json.Marshal(struct {
		Controls []compliance.Control `json:"controls"`
	}{compliance.Controls(ok, known)})
	if err != nil {
		return httpx.Internal(err)
	}
	// httpx.JSON forbids caching; this public document may be cached.
	hdr := c.Response().Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "public, max-age=60")
	c.Response().WriteHeader(http.StatusOK)
	_, err = c.Response().Write(append(raw, '\n'))
	return err
}
