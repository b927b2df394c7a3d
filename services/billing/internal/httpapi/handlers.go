package httpapi

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/billing/internal/subscription"
	"github.com/labstack/echo/v4"
)

type handlers struct {
	svc *subscription.Service
}

// caller returns the caller when it holds one of scopes. Every billing
// route acts on the caller's own organisation, admin:orgs included.
func caller(c echo.Context, scopes ...string) (authn.Identity, error) {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return authn.Identity{}, err
	}
	if err := httpx.RequireScope(id, scopes...); err != nil {
		return authn.Identity{}, err
	}
	if id.OrgID == "" {
		return authn.Identity{}, httpx.Forbidden("the caller belongs to no organization")
	}
	return id, nil
}

type checkoutRequest struct {
	Tier       string  `json:"tier"`
	SuccessURL *string `json:"successUrl"`
	CancelURL  *string `json:"cancelUrl"`
}

type checkoutResponse struct {
	URL       string `json:"url"`
	SessionID string `json:"sessionId"`
}

func (h *handlers) checkout(c echo.Context) error {
	id, err := caller(c, ScopeBillingWrite, ScopeAdminOrgs)
	if err != nil {
		return err
	}
	var req checkoutRequest
	if err := httpx.BindLimit(c, &req, 16<<10); err != nil {
		return err
	}
	s, err := h.svc.Checkout(c.Request().Context(), id.OrgID, subscription.CheckoutInput(req))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, checkoutResponse{URL: s.URL, SessionID: s.ID})
}

type portalResponse struct {
	URL string `json:"url"`
}

func (h *handlers) portal(c echo.Context) error {
	id, err := caller(c, ScopeBillingWrite, ScopeAdminOrgs)
	if err != nil {
		return err
	}
	u, err := h.svc.Portal(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, portalResponse{URL: u})
}

type subscriptionResponse struct {
	OrganizationID       string     `json:"organizationId"`
	Tier                 string     `json:"tier"`
	EffectiveTier        string     `json:"effectiveTier"`
	Status               string     `json:"status"`
	StripeCustomerID     *string    `json:"stripeCustomerId"`
	StripeSubscriptionID *string    `json:"stripeSubscriptionId"`
	CurrentPeriodEnd     *time.Time `json:"currentPeriodEnd"`
	CancelAtPeriodEnd    bool       `json:"cancelAtPeriodEnd"`
	UpdatedAt            *time.Time `json:"updatedAt"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (h *handlers) subscription(c echo.Context) error {
	id, err := caller(c, ScopeBillingRead, ScopeBillingWrite, ScopeAdminOrgs)
	if err != nil {
		return err
	}
	s, err := h.svc.Get(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	out := subscriptionResponse{OrganizationID: s.OrganizationID, Tier: s.Tier, EffectiveTier: s.EffectiveTier(), Status: s.Status,
		StripeCustomerID: optional(s.StripeCustomerID), StripeSubscriptionID: optional(s.StripeSubscriptionID),
		CurrentPeriodEnd: s.CurrentPeriodEnd, CancelAtPeriodEnd: s.CancelAtPeriodEnd}
	if !s.UpdatedAt.IsZero() {
		out.UpdatedAt = &s.UpdatedAt
	}
	return httpx.JSON(c, http.StatusOK, out)
}

type usageResponse struct {
	OrganizationID            string `json:"organizationId"`
	Date                      string `json:"date"`
	Month                     string `json:"month"`
	TokensToday               int64  `json:"tokensToday"`
	AgentsRegisteredToday     int64  `json:"agentsRegisteredToday"`
	CallsToday                int64  `json:"callsToday"`
	TokensThisMonth           int64  `json:"tokensThisMonth"`
	AgentsRegisteredThisMonth int64  `json:"agentsRegisteredThisMonth"`
}

func (h *handlers) usage(c echo.Context) error {
	id, err := caller(c, ScopeBillingRead, ScopeBillingWrite, ScopeAdminOrgs)
	if err != nil {
		return err
	}
	u, err := h.svc.Usage(c.Request().Context(), id.OrgID)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, usageResponse{OrganizationID: id.OrgID, Date: u.Date, Month: u.Month,
		TokensToday: u.TokensToday, AgentsRegisteredToday: u.AgentsRegisteredToday, CallsToday: u.CallsToday,
		TokensThisMonth: u.TokensThisMonth, AgentsRegisteredThisMonth: u.AgentsRegisteredThisMonth})
}

type received struct {
	Received bool `json:"received"`
}

func (h *handlers) webhook(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: httpx.CodeTooLarge, Message: "webhook body exceeds 64 KiB"}
		}
		return httpx.Validation("could not read webhook body", nil)
	}
	if err := h.svc.Webhook(c.Request().Context(), body, c.Request().Header.Get("Stripe-Signature")); err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, received{Received: true})
}
