package httpx

import (
	"github.com/agentidp/agentidp/libs/authn"
	"github.com/labstack/echo/v4"
)

// RequireIdentity verifies the gateway's signed internal context on every
// request except those isPublic allows, and stores the identity in the
// request context. A request without a valid context is a 401: reaching a
// service around the gateway yields nothing, and neither does a context
// signed for another method or path (a captured header replayed elsewhere).
func RequireIdentity(codec *authn.Codec, isPublic func(method, path string) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if isPublic != nil && isPublic(r.Method, r.URL.Path) {
				return next(c)
			}
			id, err := codec.Verify(r.Header.Get(authn.Header), r.Method, r.URL.Path)
			if err != nil {
				return Unauthorized("missing or invalid gateway context")
			}
			c.SetRequest(r.WithContext(authn.NewContext(r.Context(), id)))
			return next(c)
		}
	}
}

// Identity returns the caller established by RequireIdentity. Handlers on
// non-public routes can rely on it being present; on public routes ok is false.
func Identity(c echo.Context) (authn.Identity, bool) {
	return authn.FromContext(c.Request().Context())
}

// MustIdentity returns the caller or a 401 error when there is none.
func MustIdentity(c echo.Context) (authn.Identity, error) {
	id, ok := Identity(c)
	if !ok {
		return authn.Identity{}, Unauthorized("authentication required")
	}
	return id, nil
}

// RequireScope returns a 403 unless the caller holds one of scopes. The
// gateway's OPA policy is the first line; services check again so that a
// misconfigured route table cannot widen access.
func RequireScope(id authn.Identity, scopes ...string) error {
	for _, s := range scopes {
		if id.HasScope(s) {
			return nil
		}
	}
	return Forbidden("missing scope " + scopes[0])
}
