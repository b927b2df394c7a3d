package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// keyView is a signing key's metadata as the admin API shows it: never any
// private material.
type keyView struct {
	KID         string     `json:"kid"`
	Alg         string     `json:"alg"`
	State       string     `json:"state"`
	Published   bool       `json:"published"`
	CreatedAt   time.Time  `json:"createdAt"`
	ActivateAt  time.Time  `json:"activateAt"`
	RetireAt    time.Time  `json:"retireAt"`
	ExpiresAt   time.Time  `json:"expiresAt"`
	WithdrawnAt *time.Time `json:"withdrawnAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
}

func viewKey(k domain.KeyMeta, published []string) keyView {
	v := keyView{KID: k.KID, Alg: string(k.Alg), State: string(k.State), CreatedAt: k.CreatedAt, ActivateAt: k.ActivateAt,
		RetireAt: k.RetireAt, ExpiresAt: k.ExpiresAt, WithdrawnAt: k.WithdrawnAt, UpdatedAt: k.UpdatedAt}
	for _, p := range published {
		if p == k.KID {
			v.Published = true
		}
	}
	return v
}

// keyPage is the GET /api/v1/keys response.
type keyPage struct {
	Data []keyView `json:"data"`
	httpx.Pagination
}

// keyActionInput is the optional body of rotate and withdraw: a reason
// recorded in the audit log.
type keyActionInput struct {
	Reason string `json:"reason"`
}

// keyAdmin checks the operator scope and that the service manages its keys.
func (a *API) keyAdmin(c echo.Context) (*domain.Keyring, error) {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return nil, err
	}
	if err := httpx.RequireScope(id, domain.ScopeAdminOrgs); err != nil {
		return nil, err
	}
	ring := a.svc.Keyring()
	if ring == nil {
		return nil, httpx.Unavailable("signing keys are not managed by this instance", nil)
	}
	return ring, nil
}

// actionReason reads the optional {"reason": "..."} body.
func actionReason(c echo.Context) (string, error) {
	if c.Request().ContentLength == 0 {
		return "", nil
	}
	var in keyActionInput
	if err := httpx.BindLimit(c, &in, 4<<10); err != nil {
		return "", err
	}
	if len(in.Reason) > 500 {
		return "", httpx.Validation("reason must be at most 500 characters", nil)
	}
	return in.Reason, nil
}

// validKID accepts RFC 7638 thumbprints (base64url) and similar ids.
func validKID(kid string) bool {
	if kid == "" || len(kid) > 128 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (a *API) listKeys(c echo.Context) error {
	ring, err := a.keyAdmin(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	keys, err := ring.Keys(c.Request().Context())
	if err != nil {
		return err
	}
	published := ring.PublishedKIDs()
	out := keyPage{Data: []keyView{}, Pagination: httpx.NewPagination(page, int64(len(keys)))}
	for i := page.Offset(); i < len(keys) && i < page.Offset()+page.Limit; i++ {
		out.Data = append(out.Data, viewKey(keys[i], published))
	}
	return httpx.JSON(c, http.StatusOK, out)
}

func (a *API) rotateKeys(c echo.Context) error {
	ring, err := a.keyAdmin(c)
	if err != nil {
		return err
	}
	reason, err := actionReason(c)
	if err != nil {
		return err
	}
	id, _ := httpx.MustIdentity(c)
	k, err := ring.Rotate(c.Request().Context())
	if err != nil {
		return err
	}
	a.auditKey(c, "signing keys rotated (emergency)", id.Subject, k.KID, reason)
	return httpx.JSON(c, http.StatusOK, viewKey(k, ring.PublishedKIDs()))
}

func (a *API) withdrawKey(c echo.Context) error {
	ring, err := a.keyAdmin(c)
	if err != nil {
		return err
	}
	kid := c.Param("kid")
	if !validKID(kid) {
		return httpx.Validation("kid must be 1-128 characters of A-Z a-z 0-9 - _", nil)
	}
	reason, err := actionReason(c)
	if err != nil {
		return err
	}
	id, _ := httpx.MustIdentity(c)
	k, err := ring.Withdraw(c.Request().Context(), kid)
	if errors.Is(err, domain.ErrKeyNotFound) {
		return httpx.NotFound("KEY_NOT_FOUND", "signing key not found")
	}
	if err != nil {
		return err
	}
	a.auditKey(c, "signing key withdrawn", id.Subject, k.KID, reason)
	return httpx.JSON(c, http.StatusOK, viewKey(k, ring.PublishedKIDs()))
}

// auditKey logs an operator's key action (who, which key, why).
func (a *API) auditKey(c echo.Context, msg, actor, kid, reason string) {
	if a.log == nil {
		return
	}
	a.log.InfoContext(c.Request().Context(), msg, "actor", actor, "kid", kid, "reason", reason)
}

func (a *API) discoveryDocument(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, a.svc.DiscoveryDocument())
}
