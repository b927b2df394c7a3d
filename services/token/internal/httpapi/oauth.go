package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/labstack/echo/v4"
)

// maxTokenBody caps the token request body: a client_credentials request
// is a few hundred bytes.
const maxTokenBody = 16 << 10

func writeOAuthError(c echo.Context, e *domain.OAuthError) error {
	h := c.Response().Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.Challenge {
		h.Set("WWW-Authenticate", `Basic realm="agentidp"`)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", httpx.RetryAfterSeconds(e.RetryAfter))
	}
	c.Response().WriteHeader(e.Status)
	return json.NewEncoder(c.Response()).Encode(e)
}

// parseTokenRequest reads an RFC 6749 client_credentials request.
func parseTokenRequest(r *http.Request, w http.ResponseWriter) (domain.TokenRequest, *domain.OAuthError) {
	var req domain.TokenRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return req, domain.InvalidRequest("content type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, &domain.OAuthError{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "request body too large"}
		}
		return req, domain.InvalidRequest("could not read request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return req, domain.InvalidRequest("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return req, domain.InvalidRequest("parameter " + k + " repeated")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return req, domain.InvalidRequest("grant_type is required")
	case "client_credentials":
		req.GrantType = gt
	case domain.GrantTypeTokenExchange:
		req.GrantType = gt
		req.Exchange = domain.ExchangeParams{
			SubjectToken: form.Get("subject_token"), SubjectTokenType: form.Get("subject_token_type"),
			ActorToken: form.Get("actor_token"), ActorTokenType: form.Get("actor_token_type"),
			Audience: form.Get("audience"), Resource: form.Get("resource"), RequestedTokenType: form.Get("requested_token_type"),
		}
	case domain.GrantTypeJWTBearer:
		req.GrantType, req.Assertion = gt, form.Get("assertion")
	default:
		return req, &domain.OAuthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "supported grant types: client_credentials, " + domain.GrantTypeTokenExchange}
	}
	if _, ok := form["scope"]; ok {
		req.HasScope = true
		req.Scope = form.Get("scope")
	}
	if done, oe := parseAssertionAuth(r, form, &req); done {
		return req, oe
	}
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, cred, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return req, domain.InvalidRequest("unsupported authorization scheme")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return req, &domain.OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed", Challenge: true}
		}
		u, p, ok := strings.Cut(string(raw), ":")
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
		id, err1 := url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		if !ok || err1 != nil || err2 != nil {
			return req, &domain.OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed", Challenge: true}
		}
		if _, has := form["client_secret"]; has {
			return req, domain.InvalidRequest("use one client authentication method, not both")
		}
		if postID != "" && postID != id {
			return req, domain.InvalidRequest("client_id does not match the authenticated client")
		}
		req.ClientID, req.Secret, req.Basic = id, secret, true
		return req, nil
	}
	if postID == "" || postSecret == "" {
		return req, &domain.OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed"}
	}
	req.ClientID, req.Secret = postID, postSecret
	return req, nil
}

func (a *API) token(c echo.Context) error {
	req, oe := parseTokenRequest(c.Request(), c.Response())
	req.Source = func() string { return a.sourceAddr(c.Request()) }
	if oe != nil {
		if oe.Code == "invalid_client" {
			// Counted and audited like a wrong secret, and refused with
			// 429 while the client id or address is blocked.
			if t := a.svc.RejectClient(c.Request().Context(), req, "malformed"); t.Status == http.StatusTooManyRequests {
				oe = t
			}
		}
		return writeOAuthError(c, oe)
	}
	var res any
	if req.GrantType == domain.GrantTypeTokenExchange {
		res, oe = a.svc.ExchangeToken(c.Request().Context(), req)
	} else {
		res, oe = a.svc.IssueToken(c.Request().Context(), req)
	}
	if oe != nil {
		return writeOAuthError(c, oe)
	}
	h := c.Response().Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	c.Response().WriteHeader(http.StatusOK)
	return json.NewEncoder(c.Response()).Encode(res)
}

func (a *API) jwks(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/json", a.svc.JWKS())
}

func (a *API) discovery(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, a.svc.Discovery())
}

// sourceAddr is the caller's IP address for the failed-authentication
// throttle: the one the gateway signed (authn.ClientAddrHeader), else the
// TCP peer's. X-Forwarded-For is never read: whoever reaches the service
// directly could set it to dodge the per-address limit.
func (a *API) sourceAddr(r *http.Request) string {
	if v := r.Header.Get(authn.ClientAddrHeader); v != "" && a.codec != nil {
		if addr, err := a.codec.VerifyClientAddr(v); err == nil {
			if ip, err := netip.ParseAddr(addr); err == nil {
				return ip.Unmap().String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return ""
}
