// Package fedclient is the token service's HTTP client of the federation
// service's exchange check (POST /internal/v1/federation/exchange-check),
// implementing domain.FederationExchanger. It is the one synchronous
// service-to-service call on the token endpoint: the partner registry and
// the partners' key sets live in the federation service. The request
// carries a signed internal context naming the token service, as the
// gateway's would.
package fedclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// Path is the exchange check's path on the federation service.
const Path = "/internal/v1/federation/exchange-check"

// Identity is the service identity the token service presents.
var Identity = authn.Identity{Subject: "service:token", OrgID: "system", ClientID: "token"}

// maxResponse caps the federation service's answer.
const maxResponse = 64 << 10

// Client calls the federation service.
type Client struct {
	url   string
	path  string // url's path, to which the internal context is bound
	codec *authn.Codec
	http  *http.Client
}

var _ domain.FederationExchanger = (*Client)(nil)

// New returns a client of the federation service at baseURL (e.g.
// http://federation:8088); timeout bounds one call (default 3s).
func New(baseURL string, codec *authn.Codec, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	u := strings.TrimRight(baseURL, "/") + Path
	path := Path
	if pu, err := url.Parse(u); err == nil && pu.Path != "" {
		path = pu.Path
	}
	return &Client{
		url:   u,
		path:  path,
		codec: codec,
		http: &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// ExchangeCheck implements domain.FederationExchanger. A 4xx answer about
// the token (e.g. too large) is an invalid result; network errors, 5xx
// and a refused internal context (a configuration error) wrap
// domain.ErrFederationUnavailable.
func (c *Client) ExchangeCheck(ctx context.Context, assertion string) (domain.FederationResult, error) {
	unavailable := func(format string, args ...any) (domain.FederationResult, error) {
		return domain.FederationResult{}, fmt.Errorf("%w: "+format, append([]any{domain.ErrFederationUnavailable}, args...)...)
	}
	id := Identity
	id.ExpiresAt = time.Now().Add(time.Minute).Unix()
	id.Method, id.Path = http.MethodPost, c.path
	sig, err := c.codec.Sign(id)
	if err != nil {
		return unavailable("sign internal context: %v", err)
	}
	body, err := json.Marshal(map[string]string{"token": assertion})
	if err != nil {
		return unavailable("encode request: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return unavailable("build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(authn.Header, sig)
	res, err := c.http.Do(req)
	if err != nil {
		return unavailable("%v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	if err != nil {
		return unavailable("read answer: %v", err)
	}
	switch {
	case res.StatusCode == http.StatusOK:
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden:
		return unavailable("internal context refused (HTTP %d): check the shared context key", res.StatusCode)
	case res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != http.StatusTooManyRequests:
		return domain.FederationResult{Reason: "malformed token"}, nil
	default:
		return unavailable("HTTP %d", res.StatusCode)
	}
	if len(b) > maxResponse {
		return unavailable("answer larger than %d bytes", maxResponse)
	}
	var r domain.FederationResult
	if err := json.Unmarshal(b, &r); err != nil {
		return unavailable("decode answer: %v", err)
	}
	if r.Valid && (r.AgentID == "" || r.OrganizationID == "") {
		return unavailable("valid answer without agent or organisation")
	}
	return r, nil
}
