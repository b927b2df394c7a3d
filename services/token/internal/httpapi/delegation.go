package httpapi

import (
	"net/http"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// delegate is POST /api/v1/oauth2/token/delegate.
func (a *API) delegate(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in domain.DelegateInput
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	res, err := a.svc.Delegate(c.Request().Context(), id, in)
	if err != nil {
		return err
	}
	noStore(c)
	return httpx.JSON(c, http.StatusCreated, res)
}

// verifyInput is the body of POST /verify-delegation.
type verifyInput struct {
	Token string `json:"token"`
}

// verifyDelegation is POST /api/v1/oauth2/token/verify-delegation: always
// 200 for a well-formed request, {valid:false, reason} for a bad token.
func (a *API) verifyDelegation(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in verifyInput
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	if in.Token == "" {
		return httpx.Validation("token is required", map[string]string{"token": "required"})
	}
	noStore(c)
	return httpx.JSON(c, http.StatusOK, a.svc.VerifyDelegation(c.Request().Context(), id, in.Token))
}

// revokeDelegation is DELETE /api/v1/oauth2/token/delegate/:chainId.
func (a *API) revokeDelegation(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := a.svc.RevokeDelegation(c.Request().Context(), id, c.Param("chainId")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listDelegations is GET /api/v1/oauth2/token/delegations?role=delegator|delegatee.
func (a *API) listDelegations(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	res, err := a.svc.ListDelegations(c.Request().Context(), id, c.QueryParam("role"), page)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, res)
}
