package httpapi

import (
	"net/http"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

func (a *API) createAgent(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in domain.CreateAgentInput
	if err := httpx.BindLimit(c, &in, 64<<10); err != nil {
		return err
	}
	ag, err := a.svc.CreateAgent(c.Request().Context(), id, in)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/v1/agents/"+ag.AgentID)
	return httpx.JSON(c, http.StatusCreated, ag)
}

func (a *API) listAgents(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c, 20, 100)
	if err != nil {
		return err
	}
	res, err := a.svc.ListAgents(c.Request().Context(), id, domain.AgentFilter{
		Owner: c.QueryParam("owner"), AgentType: c.QueryParam("agentType"), Status: c.QueryParam("status"),
	}, page)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, res)
}

func (a *API) getAgent(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	ag, err := a.svc.GetAgent(c.Request().Context(), id, c.Param("agentId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, ag)
}

func (a *API) updateAgent(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in domain.UpdateAgentInput
	if err := httpx.BindLimit(c, &in, 64<<10); err != nil {
		return err
	}
	ag, err := a.svc.UpdateAgent(c.Request().Context(), id, c.Param("agentId"), in)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, ag)
}

func (a *API) decommissionAgent(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := a.svc.DecommissionAgent(c.Request().Context(), id, c.Param("agentId")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) createCredential(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in domain.CreateCredentialInput
	// An empty body means "no options".
	if c.Request().ContentLength != 0 {
		if err := httpx.BindLimit(c, &in, 4<<10); err != nil {
			return err
		}
	}
	cred, err := a.svc.CreateCredential(c.Request().Context(), id, c.Param("agentId"), in)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, cred)
}

func (a *API) listCredentials(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	cs, err := a.svc.ListCredentials(c.Request().Context(), id, c.Param("agentId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, map[string]any{"data": cs})
}

func (a *API) rotateCredential(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	cred, err := a.svc.RotateCredential(c.Request().Context(), id, c.Param("agentId"), c.Param("credentialId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, cred)
}

func (a *API) revokeCredential(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := a.svc.RevokeCredential(c.Request().Context(), id, c.Param("agentId"), c.Param("credentialId")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
