package httpapi

import (
	"net/http"
	"net/url"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// maxClientKeyBody caps POST /agents/{id}/keys: an RSA-8192 public JWK is
// under 2 KiB.
const maxClientKeyBody = 8 << 10

// parseAssertionAuth handles the token-request authentication forms that
// are not client secrets: a private_key_jwt client assertion, and the
// jwt-bearer grant without client authentication (RFC 7523 §3.1). It
// reports done when the request's authentication is settled here.
func parseAssertionAuth(r *http.Request, form url.Values, req *domain.TokenRequest) (bool, *domain.OAuthError) {
	_, hasType := form["client_assertion_type"]
	_, hasAssertion := form["client_assertion"]
	_, hasSecret := form["client_secret"]
	basic := r.Header.Get("Authorization") != ""
	if hasType || hasAssertion {
		if basic || hasSecret {
			return true, domain.InvalidRequest("use one client authentication method, not both")
		}
		if form.Get("client_assertion_type") != domain.ClientAssertionTypeJWT {
			return true, domain.InvalidRequest("client_assertion_type must be " + domain.ClientAssertionTypeJWT)
		}
		if form.Get("client_assertion") == "" {
			return true, domain.InvalidRequest("client_assertion is required")
		}
		req.ClientAssertion, req.ClientID = form.Get("client_assertion"), form.Get("client_id")
		return true, nil
	}
	// Partner tokens stand on their own: client authentication is
	// optional for jwt-bearer (RFC 7523 §3.1) and for token exchange
	// without an actor token (RFC 8693 §2.1); when present it must
	// succeed.
	partner := req.GrantType == domain.GrantTypeJWTBearer ||
		req.GrantType == domain.GrantTypeTokenExchange && req.Exchange.ActorToken == ""
	if partner && !basic && !hasSecret {
		req.ClientID = form.Get("client_id")
		return true, nil
	}
	return false, nil
}

func (a *API) registerClientKey(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	var in domain.RegisterClientKeyInput
	if err := httpx.BindLimit(c, &in, maxClientKeyBody); err != nil {
		return err
	}
	k, err := a.svc.RegisterClientKey(c.Request().Context(), id, c.Param("agentId"), in)
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusCreated, k)
}

func (a *API) listClientKeys(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	ks, err := a.svc.ListClientKeys(c.Request().Context(), id, c.Param("agentId"))
	if err != nil {
		return err
	}
	return httpx.JSON(c, http.StatusOK, map[string]any{"data": ks})
}

func (a *API) revokeClientKey(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	if err := a.svc.RevokeClientKey(c.Request().Context(), id, c.Param("agentId"), c.Param("kid")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
