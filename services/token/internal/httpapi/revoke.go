package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// parseTokenParam reads the form body of an RFC 7009 / RFC 7662 request and
// returns its token parameter. token_type_hint is accepted and ignored
// (only access tokens exist).
func parseTokenParam(w http.ResponseWriter, r *http.Request) (string, *domain.OAuthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", domain.InvalidRequest("content type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", &domain.OAuthError{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "request body too large"}
		}
		return "", domain.InvalidRequest("could not read request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", domain.InvalidRequest("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return "", domain.InvalidRequest("parameter " + k + " repeated")
		}
	}
	tok := form.Get("token")
	if tok == "" {
		return "", domain.InvalidRequest("token is required")
	}
	return tok, nil
}

func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// revoke is RFC 7009: 200 with an empty body whether or not the token was
// one the caller may revoke.
func (a *API) revoke(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	tok, oe := parseTokenParam(c.Response(), c.Request())
	if oe != nil {
		return writeOAuthError(c, oe)
	}
	if err := a.svc.RevokeToken(c.Request().Context(), id, tok); err != nil {
		return err
	}
	noStore(c)
	return c.NoContent(http.StatusOK)
}

// introspect is RFC 7662.
func (a *API) introspect(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	tok, oe := parseTokenParam(c.Response(), c.Request())
	if oe != nil {
		return writeOAuthError(c, oe)
	}
	res, err := a.svc.Introspect(c.Request().Context(), id, tok)
	if err != nil {
		return err
	}
	noStore(c)
	return httpx.JSON(c, http.StatusOK, res)
}

// agentInfo returns the calling agent's identity.
func (a *API) agentInfo(c echo.Context) error {
	id, err := httpx.MustIdentity(c)
	if err != nil {
		return err
	}
	info, err := a.svc.AgentInfo(c.Request().Context(), id)
	if err != nil {
		return err
	}
	noStore(c)
	return httpx.JSON(c, http.StatusOK, info)
}
