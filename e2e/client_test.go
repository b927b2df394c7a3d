package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// client talks to the suite through the gateway, as a user would.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	return &client{t: t, base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (c *client) do(method, path, token string, body any) response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return c.send(req)
}

func (c *client) send(req *http.Request) response {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// token obtains an access token with client_secret_basic.
func (c *client) token(clientID, secret, scope string) (string, response) {
	c.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	r := c.send(req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if r.Status == http.StatusOK {
		r.decode(c.t, &tok)
	}
	return tok.AccessToken, r
}

func (c *client) mustStatus(r response, want int, what string) {
	c.t.Helper()
	if r.Status != want {
		c.t.Fatalf("%s = %d %s; want %d", what, r.Status, r.Body, want)
	}
}

// journey is the end-to-end path every wiring must support: the bootstrap
// admin creates an organisation and an agent in it, the agent gets a
// credential and tokens through the gateway, calls the API with them, and
// analytics counts exactly the tokens issued.
func journey(t *testing.T, c *client, adminID, adminSecret string) {
	t.Helper()
	admin, r := c.token(adminID, adminSecret, "admin:orgs agents:read agents:write analytics:read")
	c.mustStatus(r, http.StatusOK, "admin token")

	r = c.do(http.MethodPost, "/api/v1/organizations", admin, map[string]any{"name": "Acme Robotics", "slug": fmt.Sprintf("acme-%d", time.Now().UnixNano())})
	c.mustStatus(r, http.StatusCreated, "create organization")
	var org struct {
		OrganizationID string `json:"organizationId"`
	}
	r.decode(t, &org)

	// The token service learns of the new organisation through NATS KV.
	var agent struct {
		AgentID string `json:"agentId"`
	}
	body := map[string]any{
		"email": "planner@acme.example", "agentType": "orchestrator", "version": "1.0.0",
		"capabilities": []string{"agents:read"}, "owner": "platform-team", "deploymentEnv": "production",
		"organizationId": org.OrganizationID, "scopes": []string{"agents:read", "analytics:read"},
	}
	eventually(t, 10*time.Second, func() bool {
		r = c.do(http.MethodPost, "/api/v1/agents", admin, body)
		return r.Status == http.StatusCreated
	}, func() string { return fmt.Sprintf("create agent in new org = %d %s", r.Status, r.Body) })
	r.decode(t, &agent)

	r = c.do(http.MethodPost, "/api/v1/agents/"+agent.AgentID+"/credentials", admin, map[string]any{})
	c.mustStatus(r, http.StatusCreated, "create credential")
	var cred struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	r.decode(t, &cred)
	if cred.ClientSecret == "" || cred.ClientID != agent.AgentID {
		t.Fatalf("credential = %s; want a secret for client %s", r.Body, agent.AgentID)
	}

	const tokens = 5
	var access string
	for i := range tokens {
		access, r = c.token(cred.ClientID, cred.ClientSecret, "")
		c.mustStatus(r, http.StatusOK, fmt.Sprintf("agent token %d", i))
	}

	r = c.do(http.MethodGet, "/api/v1/agents", access, nil)
	c.mustStatus(r, http.StatusOK, "list agents with the agent's token")
	var list struct {
		Data []struct {
			AgentID string `json:"agentId"`
		} `json:"data"`
		Total int `json:"total"`
	}
	r.decode(t, &list)
	if list.Total != 1 || len(list.Data) != 1 || list.Data[0].AgentID != agent.AgentID {
		t.Errorf("GET /api/v1/agents in the new org = %s; want exactly the new agent", r.Body)
	}

	// Negative paths through the gateway.
	_, r = c.token(cred.ClientID, "wrong-secret", "")
	c.mustStatus(r, http.StatusUnauthorized, "token with a wrong secret")
	_, r2 := c.token("00000000-0000-0000-0000-000000000000", "whatever", "")
	if r.Status != r2.Status || !bytes.Equal(r.Body, r2.Body) {
		t.Errorf("unknown client answered %d %s, wrong secret %d %s; want identical", r2.Status, r2.Body, r.Status, r.Body)
	}
	c.mustStatus(c.do(http.MethodPost, "/api/v1/agents", access, body), http.StatusForbidden, "create agent without agents:write")
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", "", nil), http.StatusUnauthorized, "list agents without a token")
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents/"+agentIDOfAdmin(t, c, admin), access, nil), http.StatusNotFound, "another organisation's agent")

	// Analytics counts the tokens issued in the new organisation.
	eventually(t, 15*time.Second, func() bool {
		r = c.do(http.MethodGet, "/api/v1/analytics/tokens?days=1", access, nil)
		if r.Status != http.StatusOK {
			return false
		}
		var series struct {
			Data []struct {
				Count int `json:"count"`
			} `json:"data"`
		}
		r.decode(t, &series)
		return len(series.Data) == 1 && series.Data[0].Count == tokens
	}, func() string { return fmt.Sprintf("analytics tokens = %d %s; want count %d", r.Status, r.Body, tokens) })
}

// agentIDOfAdmin returns the id of an agent in the admin's own organisation.
func agentIDOfAdmin(t *testing.T, c *client, admin string) string {
	t.Helper()
	r := c.do(http.MethodGet, "/api/v1/agents?limit=1", admin, nil)
	c.mustStatus(r, http.StatusOK, "admin lists its agents")
	var list struct {
		Data []struct {
			AgentID string `json:"agentId"`
		} `json:"data"`
	}
	r.decode(t, &list)
	if len(list.Data) == 0 {
		t.Fatal("admin organisation has no agents")
	}
	return list.Data[0].AgentID
}

func eventually(t *testing.T, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ioNopCloser is a request body of s.
func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// bootstrapAgent registers an agent in the admin's organisation with
// scopes, gives it a credential and returns its id, secret and a token
// for all its scopes.
func (c *client) bootstrapAgent(t *testing.T, admin, name string, scopes []string) (id, secret, token string) {
	t.Helper()
	r := c.do(http.MethodPost, "/api/v1/agents", admin, map[string]any{
		"email": name + "@bootstrap.example", "agentType": "custom", "version": "1.0.0", "capabilities": []string{"agents:read"},
		"owner": "team", "deploymentEnv": "production", "scopes": scopes,
	})
	c.mustStatus(r, http.StatusCreated, "create agent "+name)
	var a struct {
		AgentID string `json:"agentId"`
	}
	r.decode(t, &a)
	r = c.do(http.MethodPost, "/api/v1/agents/"+a.AgentID+"/credentials", admin, map[string]any{})
	c.mustStatus(r, http.StatusCreated, "credential for "+name)
	var cred struct {
		ClientSecret string `json:"clientSecret"`
	}
	r.decode(t, &cred)
	tok, r := c.token(a.AgentID, cred.ClientSecret, strings.Join(scopes, " "))
	c.mustStatus(r, http.StatusOK, "token of "+name)
	return a.AgentID, cred.ClientSecret, tok
}
