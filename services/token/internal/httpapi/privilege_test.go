package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// operatorScopes are the platform operator's: every scope.
var operatorScopes = append(slices.Clone(allScopes), "admin:orgs")

// scopedParty registers an agent of org with exactly scopes (the operator
// creates it, so any scope can be given), a credential, and a token
// carrying every one of its scopes.
func (e *env) scopedParty(t testing.TB, org, email string, scopes []string) party {
	t.Helper()
	rec := e.do(t, "POST", "/api/v1/agents", org, operatorScopes, body(email, `,"scopes":["`+strings.Join(scopes, `","`)+`"]`))
	if rec.Code != http.StatusCreated {
		t.Fatalf("create agent %s = %d %s; want 201", email, rec.Code, rec.Body)
	}
	a := decode[domain.Agent](t, rec)
	rec = e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/credentials", org, operatorScopes, "{}")
	if rec.Code != http.StatusCreated {
		t.Fatalf("create credential = %d %s; want 201", rec.Code, rec.Body)
	}
	cred := decode[domain.NewCredential](t, rec)
	rec = e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret, scope: strings.Join(scopes, " "), hasScope: true})
	if rec.Code != http.StatusOK {
		t.Fatalf("token = %d %s", rec.Code, rec.Body)
	}
	tok := decode[domain.TokenResponse](t, rec).AccessToken
	return party{agent: a, cred: cred, token: tok, claims: e.claims(t, tok)}
}

// agentAs reads an agent back with the operator's powers.
func (e *env) agentAs(t testing.TB, p party) domain.Agent {
	t.Helper()
	rec := e.do(t, "GET", "/api/v1/agents/"+p.agent.AgentID, p.agent.OrganizationID, operatorScopes, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("get agent = %d %s", rec.Code, rec.Body)
	}
	return decode[domain.Agent](t, rec)
}

// active reports whether the service would accept p's token (introspection
// by its own organisation).
func (e *env) active(t testing.TB, org, tok string) bool {
	t.Helper()
	return e.introspect(t, org, tok)["active"] == true
}

// wantProblem fails unless rec is status with problem code.
func wantProblem(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("Got(%s) = %d %s; want %d %s", what, rec.Code, rec.Body, status, code)
	}
	if got := decode[map[string]any](t, rec)["code"]; got != code {
		t.Fatalf("Got(%s code) = %v; want %s", what, got, code)
	}
}

// attackScene is the setting: the bootstrap organisation's admin
// agent (every scope and admin:orgs) and an agent of the same organisation
// holding agents:write.
type attackScene struct {
	e      *env
	admin  party
	writer party
}

func newAttackScene(t *testing.T) attackScene {
	t.Helper()
	e := newEnv(t)
	return attackScene{
		e:      e,
		admin:  e.scopedParty(t, "org-1", "admin@x.io", operatorScopes),
		writer: e.scopedParty(t, "org-1", "writer@x.io", []string{"agents:read", "agents:write"}),
	}
}

func (s attackScene) asWriter(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return s.e.as(t, s.writer.identity(), method, path, body)
}

func TestAttackAgentsWriteCannotMintAdminCredential(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	rec := s.asWriter(t, "POST", "/api/v1/agents/"+s.admin.agent.AgentID+"/credentials", "{}")
	wantProblem(t, "create a credential for the admin", rec, 403, "FORBIDDEN")
	if msg := decode[map[string]any](t, rec)["message"]; !strings.Contains(msg.(string), "subset of its own") {
		t.Errorf("Got(message) = %q; want it to name the rule", msg)
	}
	if strings.Contains(rec.Body.String(), "clientSecret") {
		t.Errorf("Got(body) = %s; want no secret", rec.Body)
	}
	list := decode[map[string][]domain.Credential](t, s.e.do(t, "GET", "/api/v1/agents/"+s.admin.agent.AgentID+"/credentials", "org-1", operatorScopes, ""))
	if len(list["data"]) != 1 {
		t.Errorf("Got(admin credentials) = %d; want 1 (nothing created)", len(list["data"]))
	}
}

func TestAttackAgentsWriteCannotRotateAdminCredential(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	rec := s.asWriter(t, "POST", "/api/v1/agents/"+s.admin.agent.AgentID+"/credentials/"+s.admin.cred.CredentialID+"/rotate", "")
	wantProblem(t, "rotate the admin's credential", rec, 403, "FORBIDDEN")
	if rec := s.e.token(t, tokenReq{id: s.admin.agent.AgentID, secret: s.admin.cred.ClientSecret}); rec.Code != 200 {
		t.Errorf("Got(token with the admin's secret after the refused rotation) = %d; want 200 (unchanged)", rec.Code)
	}
	if !s.e.active(t, "org-1", s.admin.token) {
		t.Errorf("Got(admin token after the refused rotation) inactive; want active")
	}
}

func TestAttackAgentsWriteCannotRegisterKeyOnAdmin(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	_, jwk := genKey(t, jose.ES256)
	rec := s.asWriter(t, "POST", "/api/v1/agents/"+s.admin.agent.AgentID+"/keys", `{"jwk":`+jwk+`}`)
	wantProblem(t, "register a key on the admin", rec, 403, "FORBIDDEN")
	keys := decode[map[string][]domain.ClientKey](t, s.e.do(t, "GET", "/api/v1/agents/"+s.admin.agent.AgentID+"/keys", "org-1", operatorScopes, ""))
	if len(keys["data"]) != 0 {
		t.Errorf("Got(admin keys) = %d; want 0", len(keys["data"]))
	}
}

func TestAttackAgentsWriteCannotRemoveAdminKey(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	_, jwk := genKey(t, jose.ES256)
	rec := s.e.do(t, "POST", "/api/v1/agents/"+s.admin.agent.AgentID+"/keys", "org-1", operatorScopes, `{"jwk":`+jwk+`}`)
	if rec.Code != 201 {
		t.Fatalf("register = %d %s", rec.Code, rec.Body)
	}
	k := decode[domain.ClientKey](t, rec)
	wantProblem(t, "remove the admin's key", s.asWriter(t, "DELETE", "/api/v1/agents/"+s.admin.agent.AgentID+"/keys/"+k.KeyID, ""), 403, "FORBIDDEN")
	keys := decode[map[string][]domain.ClientKey](t, s.e.do(t, "GET", "/api/v1/agents/"+s.admin.agent.AgentID+"/keys", "org-1", operatorScopes, ""))
	if len(keys["data"]) != 1 || keys["data"][0].Status != domain.ClientKeyActive {
		t.Errorf("Got(admin keys) = %+v; want the one key, active", keys["data"])
	}
}

func TestAttackAgentsWriteCannotStripAdminScopes(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	rec := s.asWriter(t, "PATCH", "/api/v1/agents/"+s.admin.agent.AgentID, `{"scopes":["agents:read"]}`)
	wantProblem(t, "strip the admin's scopes", rec, 403, "FORBIDDEN")
	if got := s.e.agentAs(t, s.admin); !slices.Equal(got.Scopes, s.admin.agent.Scopes) {
		t.Errorf("Got(admin scopes) = %v; want %v", got.Scopes, s.admin.agent.Scopes)
	}
	if !s.e.active(t, "org-1", s.admin.token) {
		t.Errorf("Got(admin token) inactive; want active")
	}
}

func TestAttackAgentsWriteCannotSuspendAdmin(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	wantProblem(t, "suspend the admin", s.asWriter(t, "PATCH", "/api/v1/agents/"+s.admin.agent.AgentID, `{"status":"suspended"}`), 403, "FORBIDDEN")
	if got := s.e.agentAs(t, s.admin); got.Status != "active" {
		t.Errorf("Got(admin status) = %s; want active", got.Status)
	}
	if !s.e.active(t, "org-1", s.admin.token) {
		t.Errorf("Got(admin token) inactive; want active")
	}
}

func TestAttackAgentsWriteCannotDecommissionAdmin(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	wantProblem(t, "decommission the admin", s.asWriter(t, "DELETE", "/api/v1/agents/"+s.admin.agent.AgentID, ""), 403, "FORBIDDEN")
	if got := s.e.agentAs(t, s.admin); got.Status != "active" {
		t.Errorf("Got(admin status) = %s; want active", got.Status)
	}
	if rec := s.e.token(t, tokenReq{id: s.admin.agent.AgentID, secret: s.admin.cred.ClientSecret}); rec.Code != 200 {
		t.Errorf("Got(admin token request) = %d; want 200", rec.Code)
	}
}

func TestAttackGrantingAScopeTheCallerLacks(t *testing.T) {
	t.Parallel()
	s := newAttackScene(t)
	low := s.e.scopedParty(t, "org-1", "low@x.io", []string{"agents:read"})
	reader := s.e.scopedParty(t, "org-1", "reader@x.io", []string{"agents:read", "audit:read"})
	// A platform operator whose token carries only what it needs to manage.
	narrowOp := authn.Identity{Subject: s.admin.agent.AgentID, OrgID: "org-1", Scopes: []string{"admin:orgs", "agents:write"},
		ExpiresAt: s.admin.claims.ExpiresAt}
	lowPath := "/api/v1/agents/" + low.agent.AgentID
	tests := []struct {
		name   string
		caller authn.Identity
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"PATCH scopes adds a scope the caller lacks", s.writer.identity(), "PATCH", lowPath, `{"scopes":["agents:read","webhooks:write"]}`, 403, "FORBIDDEN"},
		{"PATCH scopes adds admin:orgs", s.writer.identity(), "PATCH", lowPath, `{"scopes":["agents:read","admin:orgs"]}`, 403, "FORBIDDEN"},
		{"PATCH scopes and defaultScopes", s.writer.identity(), "PATCH", lowPath, `{"scopes":["agents:read","audit:read"],"defaultScopes":["audit:read"]}`, 403, "FORBIDDEN"},
		{"PATCH defaultScopes the caller's token lacks", narrowOp, "PATCH", "/api/v1/agents/" + reader.agent.AgentID, `{"defaultScopes":["audit:read"]}`, 403, "FORBIDDEN"},
		{"POST agent with a scope the caller lacks", s.writer.identity(), "POST", "/api/v1/agents", body("new1@x.io", `,"scopes":["agents:read","audit:read"]`), 403, "FORBIDDEN"},
		{"POST agent with defaults the caller lacks", narrowOp, "POST", "/api/v1/agents", body("new2@x.io", ""), 403, "FORBIDDEN"},
		{"a credential has no scope list to widen", s.writer.identity(), "POST", lowPath + "/credentials", `{"scopes":["admin:orgs"]}`, 400, "VALIDATION_ERROR"},
	}
	for _, tc := range tests {
		rec := s.e.as(t, tc.caller, tc.method, tc.path, tc.body)
		if got := decode[map[string]any](t, rec)["code"]; rec.Code != tc.status || got != tc.code {
			t.Errorf("%s: Got = %d %s; want %d %s", tc.name, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
	if got := s.e.agentAs(t, low); !slices.Equal(got.Scopes, []string{"agents:read"}) {
		t.Errorf("Got(low scopes) = %v; want [agents:read]", got.Scopes)
	}
	if got := s.e.agentAs(t, reader); !slices.Equal(got.DefaultScopes, []string{"agents:read", "audit:read"}) {
		t.Errorf("Got(reader defaultScopes) = %v; want unchanged", got.DefaultScopes)
	}
	list := decode[domain.AgentPage](t, s.e.do(t, "GET", "/api/v1/agents", "org-1", operatorScopes, ""))
	if list.Total != 4 {
		t.Errorf("Got(agents) = %d; want 4 (nothing created)", list.Total)
	}
	creds := decode[map[string][]domain.Credential](t, s.e.do(t, "GET", lowPath+"/credentials", "org-1", operatorScopes, ""))
	if len(creds["data"]) != 1 {
		t.Errorf("Got(low credentials) = %d; want 1", len(creds["data"]))
	}
}

// The privilege table: every route that acts on an agent, with a caller
// below, equal to and above the target, in the target's organisation and
// in another one, with and without admin:orgs; and the bootstrap admin
// agent (admin:orgs) as the target of the strongest caller that lacks
// admin:orgs and of an operator. Every cell asserts its exact status; an
// escalation — a success the privilege rule forbids, or a delegated or
// exchanged token wider than the authority it came from — is counted, and
// there must be none.

var (
	tScopes     = []string{"agents:read", "agents:write", "tokens:read", "audit:read"}
	belowScopes = []string{"agents:read", "agents:write", "tokens:read"}
	aboveScopes = append(slices.Clone(tScopes), "webhooks:read", "analytics:read")
	adminScopes = append(slices.Clone(tScopes), "admin:orgs")
)

// privCaller is a column of the table.
type privCaller struct {
	name   string
	org    string
	scopes []string
	// target is the target's scopes (tScopes unless the column is about
	// the admin agent).
	target []string
}

var privCallers = []privCaller{
	{"below/same-org", "org-1", belowScopes, tScopes},
	{"equal/same-org", "org-1", tScopes, tScopes},
	{"above/same-org", "org-1", aboveScopes, tScopes},
	{"admin:orgs/same-org", "org-1", adminScopes, tScopes},
	{"below/other-org", "org-2", belowScopes, tScopes},
	{"equal/other-org", "org-2", tScopes, tScopes},
	{"above/other-org", "org-2", aboveScopes, tScopes},
	{"admin:orgs/other-org", "org-2", adminScopes, tScopes},
	{"all-but-admin/same-org→admin", "org-1", allScopes, operatorScopes},
	{"admin:orgs/same-org→admin", "org-1", adminScopes, operatorScopes},
	{"admin:orgs/other-org→admin", "org-2", adminScopes, operatorScopes},
}

// privRoute is a row: do performs the route as caller on target (prepared
// by setup, when the route needs a key or a suspended target) and returns
// the response and, for delegation and exchange, the issued token's scopes
// and the scopes of the authority it was derived from.
type privRoute struct {
	name  string
	setup func(t *testing.T, e *env, target party) string
	do    func(t *testing.T, e *env, caller, target party, arg string) (rec *httptest.ResponseRecorder, issued, from []string)
	want  [11]int
}

func mgmt(method, suffix, body string) func(t *testing.T, e *env, caller, target party, arg string) (*httptest.ResponseRecorder, []string, []string) {
	return func(t *testing.T, e *env, caller, target party, arg string) (*httptest.ResponseRecorder, []string, []string) {
		path := "/api/v1/agents/" + target.agent.AgentID + strings.ReplaceAll(suffix, "{cred}", target.cred.CredentialID)
		path = strings.ReplaceAll(path, "{arg}", arg)
		return e.as(t, caller.identity(), method, path, strings.ReplaceAll(body, "{arg}", arg)), nil, nil
	}
}

var privRoutes = []privRoute{
	{name: "create credential", do: mgmt("POST", "/credentials", "{}"),
		want: [11]int{403, 201, 201, 201, 404, 404, 404, 201, 403, 201, 201}},
	{name: "rotate credential", do: mgmt("POST", "/credentials/{cred}/rotate", ""),
		want: [11]int{403, 200, 200, 200, 404, 404, 404, 200, 403, 200, 200}},
	{name: "revoke credential", do: mgmt("DELETE", "/credentials/{cred}", ""),
		want: [11]int{403, 204, 204, 204, 404, 404, 404, 204, 403, 204, 204}},
	{name: "register key", setup: func(t *testing.T, _ *env, _ party) string { _, jwk := genKey(t, jose.ES256); return jwk },
		do:   mgmt("POST", "/keys", `{"jwk":{arg}}`),
		want: [11]int{403, 201, 201, 201, 404, 404, 404, 201, 403, 201, 201}},
	{name: "remove key", setup: func(t *testing.T, e *env, target party) string {
		_, jwk := genKey(t, jose.ES256)
		rec := e.do(t, "POST", "/api/v1/agents/"+target.agent.AgentID+"/keys", "org-1", operatorScopes, `{"jwk":`+jwk+`}`)
		if rec.Code != 201 {
			t.Fatalf("register key = %d %s", rec.Code, rec.Body)
		}
		return decode[domain.ClientKey](t, rec).KeyID
	}, do: mgmt("DELETE", "/keys/{arg}", ""),
		want: [11]int{403, 204, 204, 204, 404, 404, 404, 204, 403, 204, 204}},
	{name: "PATCH scopes (narrowing)", do: mgmt("PATCH", "", `{"scopes":["agents:read"]}`),
		want: [11]int{403, 200, 200, 200, 404, 404, 404, 200, 403, 200, 200}},
	{name: "PATCH status suspend", do: mgmt("PATCH", "", `{"status":"suspended"}`),
		want: [11]int{403, 200, 200, 200, 404, 404, 404, 200, 403, 200, 200}},
	{name: "PATCH status reactivate", setup: func(t *testing.T, e *env, target party) string {
		if rec := e.do(t, "PATCH", "/api/v1/agents/"+target.agent.AgentID, "org-1", operatorScopes, `{"status":"suspended"}`); rec.Code != 200 {
			t.Fatalf("suspend = %d %s", rec.Code, rec.Body)
		}
		return ""
	}, do: mgmt("PATCH", "", `{"status":"active"}`),
		want: [11]int{403, 200, 200, 200, 404, 404, 404, 200, 403, 200, 200}},
	{name: "PATCH other fields", do: mgmt("PATCH", "", `{"owner":"someone-else","version":"9.9.9"}`),
		want: [11]int{403, 200, 200, 200, 404, 404, 404, 200, 403, 200, 200}},
	{name: "DELETE", do: mgmt("DELETE", "", ""),
		want: [11]int{403, 204, 204, 204, 404, 404, 404, 204, 403, 204, 204}},
	// Delegation hands the target (delegatee) a slice of the caller's own
	// token: asking for the target's scopes is refused when the caller's
	// token lacks one; another organisation's agent is not found.
	{name: "delegate to target", do: func(t *testing.T, e *env, caller, target party, _ string) (*httptest.ResponseRecorder, []string, []string) {
		rec := e.as(t, caller.identity(), "POST", "/api/v1/oauth2/token/delegate",
			`{"delegateeAgentId":"`+target.agent.AgentID+`","scopes":["`+strings.Join(tScopes, `","`)+`"]}`)
		if rec.Code != 201 {
			return rec, nil, nil
		}
		tok := decode[domain.DelegateResult](t, rec).DelegationToken
		return rec, strings.Fields(e.claims(t, tok).Scope), strings.Fields(caller.claims.Scope)
	}, want: [11]int{400, 201, 201, 201, 400, 404, 404, 404, 201, 201, 404}},
	// Token exchange: the caller acts for the target with the target's
	// own token, never wider than that token; only within one organisation.
	{name: "exchange target's token", do: func(t *testing.T, e *env, caller, target party, _ string) (*httptest.ResponseRecorder, []string, []string) {
		form := exchangeForm(target.token, caller.token)
		form.Set("scope", strings.Join(tScopes, " "))
		rec := e.exchange(t, caller.agent.AgentID, caller.cred.ClientSecret, form)
		if rec.Code != 200 {
			return rec, nil, nil
		}
		tok := decode[domain.ExchangeResponse](t, rec).AccessToken
		return rec, strings.Fields(e.claims(t, tok).Scope), strings.Fields(target.claims.Scope)
	}, want: [11]int{200, 200, 200, 200, 400, 400, 400, 400, 200, 200, 400}},
	{name: "exchange target's token for admin:orgs", do: func(t *testing.T, e *env, caller, target party, _ string) (*httptest.ResponseRecorder, []string, []string) {
		form := exchangeForm(target.token, caller.token)
		form.Set("scope", "admin:orgs")
		rec := e.exchange(t, caller.agent.AgentID, caller.cred.ClientSecret, form)
		if rec.Code != 200 {
			return rec, nil, nil
		}
		tok := decode[domain.ExchangeResponse](t, rec).AccessToken
		// admin:orgs never travels by delegation: any success escalates.
		return rec, strings.Fields(e.claims(t, tok).Scope), nil
	}, want: [11]int{400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400}},
}

func TestPrivilegeTableHasNoEscalation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, org := range []string{"org-1", "org-2"} {
		raw, _ := json.Marshal(events.OrgData{OrganizationID: org, Status: "active", Limits: events.Limits{MaxAgents: -1, MaxTokensPerDay: -1}})
		e.svc.Orgs().Apply(org, raw)
	}
	callers := make([]party, len(privCallers))
	for i, c := range privCallers {
		callers[i] = e.scopedParty(t, c.org, "caller"+string(rune('a'+i))+"@x.io", c.scopes)
	}
	escalations, n := 0, 0
	for _, r := range privRoutes {
		for i, c := range privCallers {
			n++
			target := e.scopedParty(t, "org-1", "target"+string(rune('a'+i))+"-"+strings.NewReplacer(" ", "-", "(", "", ")", "", "'", "", ":", "").Replace(r.name)+"@x.io", c.target)
			arg := ""
			if r.setup != nil {
				arg = r.setup(t, e, target)
			}
			rec, issued, from := r.do(t, e, callers[i], target, arg)
			if rec.Code != r.want[i] {
				t.Errorf("%s as %s: Got = %d %s; want %d", r.name, c.name, rec.Code, rec.Body, r.want[i])
			}
			if rec.Code/100 != 2 {
				continue
			}
			if issued != nil || from != nil {
				// Delegation and exchange: the issued token is a subset of
				// the authority it derives from, and never admin:orgs.
				if !isSubset(issued, from) || slices.Contains(issued, "admin:orgs") {
					escalations++
					t.Errorf("ESCALATION %s as %s: issued %v from %v", r.name, c.name, issued, from)
				}
				continue
			}
			allowed := slices.Contains(c.scopes, "admin:orgs") || (c.org == "org-1" && isSubset(c.target, c.scopes))
			if !allowed {
				escalations++
				t.Errorf("ESCALATION %s as %s: %d", r.name, c.name, rec.Code)
			}
		}
	}
	if escalations != 0 {
		t.Errorf("Got(escalations) = %d of %d cells; want 0", escalations, n)
	}
	if want := len(privRoutes) * len(privCallers); n != want {
		t.Errorf("Got(cells) = %d; want %d", n, want)
	}
}

func isSubset(sub, set []string) bool {
	for _, s := range sub {
		if !slices.Contains(set, s) {
			return false
		}
	}
	return true
}

// freshToken asks for a token until one is issued: a request in the very
// millisecond of a watermark is refused (fail closed), the next one is not.
func (e *env) freshToken(t *testing.T, r tokenReq) *httptest.ResponseRecorder {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := e.token(t, r)
		if rec.Code != http.StatusUnauthorized || time.Now().After(deadline) {
			return rec
		}
	}
}

// sharedScopes is a scene of the revocation tests: x holds three scopes and
// a token carrying them; y received a delegation from x and exchanged x's
// token; orgAdmin manages both.
type sharedScopes struct {
	e                    *env
	orgAdmin, x, y       party
	delegated, exchanged string
}

func newSharedScopes(t *testing.T) sharedScopes {
	t.Helper()
	e := newEnv(t)
	s := sharedScopes{e: e,
		orgAdmin: e.scopedParty(t, "org-1", "orgadmin@x.io", allScopes),
		x:        e.scopedParty(t, "org-1", "x@x.io", []string{"agents:read", "tokens:read", "webhooks:read"}),
		y:        e.scopedParty(t, "org-1", "y@x.io", []string{"agents:read", "tokens:read"}),
	}
	rec := e.as(t, s.x.identity(), "POST", "/api/v1/oauth2/token/delegate", `{"delegateeAgentId":"`+s.y.agent.AgentID+`","scopes":["webhooks:read"]}`)
	if rec.Code != 201 {
		t.Fatalf("delegate = %d %s", rec.Code, rec.Body)
	}
	s.delegated = decode[domain.DelegateResult](t, rec).DelegationToken
	rec = e.exchange(t, s.y.agent.AgentID, s.y.cred.ClientSecret, exchangeForm(s.x.token, s.y.token))
	if rec.Code != 200 {
		t.Fatalf("exchange = %d %s", rec.Code, rec.Body)
	}
	s.exchanged = decode[domain.ExchangeResponse](t, rec).AccessToken
	return s
}

func (s sharedScopes) wantActive(t *testing.T, when string, want bool) {
	t.Helper()
	for name, tok := range map[string]string{"x's token": s.x.token, "the delegation token": s.delegated, "the exchanged token": s.exchanged} {
		if got := s.e.active(t, "org-1", tok); got != want {
			t.Errorf("Got(%s active %s) = %v; want %v", name, when, got, want)
		}
		// The same check the gateways make, from the same revocation set.
		c := s.e.claims(t, tok)
		tk := revocation.Token{JTI: c.ID, Subject: c.Subject, CredentialID: c.CredentialID, OrgID: c.OrganizationID,
			IssuedAtMs: revocation.IssuedAtMs(c.IssuedAt, c.IssuedAtMs)}
		for _, p := range c.Parents {
			tk.Parents = append(tk.Parents, revocation.Token{JTI: p.JTI, Subject: p.Sub, CredentialID: p.CredentialID, OrgID: c.OrganizationID, IssuedAtMs: p.IssuedAtMs})
		}
		if c.Act != nil {
			tk.Actors = append(tk.Actors, c.Act.Sub)
		}
		if got := s.e.svc.Revocations().Revoked(tk); got == want {
			t.Errorf("Got(revocation set: %s revoked %s) = %v; want %v", name, when, got, !want)
		}
	}
}

func TestAttackRemovedScopeKeepsNoLiveToken(t *testing.T) {
	t.Parallel()
	s := newSharedScopes(t)
	s.wantActive(t, "before any change", true)
	// Changes that take nothing away revoke nothing.
	if rec := s.e.as(t, s.orgAdmin.identity(), "PATCH", "/api/v1/agents/"+s.x.agent.AgentID,
		`{"owner":"new-team","scopes":["agents:read","tokens:read","webhooks:read","audit:read"]}`); rec.Code != 200 {
		t.Fatalf("widen = %d %s", rec.Code, rec.Body)
	}
	s.wantActive(t, "after a change that removes nothing", true)

	rec := s.e.as(t, s.orgAdmin.identity(), "PATCH", "/api/v1/agents/"+s.x.agent.AgentID, `{"scopes":["agents:read","tokens:read"]}`)
	if rec.Code != 200 {
		t.Fatalf("remove webhooks:read = %d %s", rec.Code, rec.Body)
	}
	s.wantActive(t, "after webhooks:read was removed", false)

	// Issuance after the reduction cannot hand the removed scope out again.
	rec = s.e.freshToken(t, tokenReq{id: s.x.agent.AgentID, secret: s.x.cred.ClientSecret})
	if rec.Code != 200 {
		t.Fatalf("fresh token = %d %s", rec.Code, rec.Body)
	}
	fresh := decode[domain.TokenResponse](t, rec)
	if strings.Contains(fresh.Scope, "webhooks:read") || !s.e.active(t, "org-1", fresh.AccessToken) {
		t.Errorf("Got(fresh token) scope %q active %v; want no webhooks:read, active", fresh.Scope, s.e.active(t, "org-1", fresh.AccessToken))
	}
	rec = s.e.token(t, tokenReq{id: s.x.agent.AgentID, secret: s.x.cred.ClientSecret, scope: "webhooks:read", hasScope: true})
	if rec.Code != 400 || decode[map[string]string](t, rec)["error"] != "invalid_scope" {
		t.Errorf("Got(token asking for the removed scope) = %d %s; want 400 invalid_scope", rec.Code, rec.Body)
	}
}

func TestAttackSuspendedAgentKeepsNoLiveToken(t *testing.T) {
	t.Parallel()
	s := newSharedScopes(t)
	path := "/api/v1/agents/" + s.x.agent.AgentID
	if rec := s.e.as(t, s.orgAdmin.identity(), "PATCH", path, `{"status":"suspended"}`); rec.Code != 200 {
		t.Fatalf("suspend = %d %s", rec.Code, rec.Body)
	}
	s.wantActive(t, "after suspension", false)
	if rec := s.e.token(t, tokenReq{id: s.x.agent.AgentID, secret: s.x.cred.ClientSecret}); rec.Code != 401 {
		t.Errorf("Got(token of a suspended agent) = %d; want 401", rec.Code)
	}
	if rec := s.e.as(t, s.orgAdmin.identity(), "PATCH", path, `{"status":"active"}`); rec.Code != 200 {
		t.Fatalf("reactivate = %d %s", rec.Code, rec.Body)
	}
	s.wantActive(t, "after reactivation", false)
	if rec := s.e.freshToken(t, tokenReq{id: s.x.agent.AgentID, secret: s.x.cred.ClientSecret}); rec.Code != 200 {
		t.Errorf("Got(token after reactivation) = %d %s; want 200", rec.Code, rec.Body)
	}
}

// The platform operator may act on another organisation's agents, so it
// may act on their tokens: its revocation works and its introspection is
// truthful; anyone else still learns nothing (RFC 7662 §2.2, RFC 7009 §2.2).
func TestAttackOperatorRevocationOfForeignTokenIsNotANoOp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim := e.scopedParty(t, "org-b", "victim@x.io", []string{"agents:read", "tokens:read"})
	revoke := func(org string, scopes []string) int {
		return e.form(t, "/oauth2/revoke", org, scopes, url.Values{"token": {victim.token}}.Encode()).Code
	}
	introspect := func(org string, scopes []string) map[string]any {
		rec := e.form(t, "/oauth2/introspect", org, scopes, url.Values{"token": {victim.token}}.Encode())
		if rec.Code != 200 {
			t.Fatalf("introspect = %d %s", rec.Code, rec.Body)
		}
		return decode[map[string]any](t, rec)
	}
	stranger := []string{"tokens:read", "agents:read", "agents:write"}
	if got := introspect("org-a", stranger); len(got) != 1 || got["active"] != false {
		t.Errorf("Got(introspect by another org) = %v; want only active:false", got)
	}
	if code := revoke("org-a", stranger); code != 200 {
		t.Errorf("Got(revoke by another org) = %d; want 200", code)
	}
	if !e.active(t, "org-b", victim.token) {
		t.Fatalf("Got(victim token after a stranger's revoke) inactive; want active (nothing changed)")
	}
	operator := []string{"tokens:read", "admin:orgs"}
	if got := introspect("platform", operator); got["active"] != true || got["organization_id"] != "org-b" || got["sub"] != victim.agent.AgentID {
		t.Errorf("Got(introspect by the operator) = %v; want active, org-b, the victim", got)
	}
	if code := revoke("platform", operator); code != 200 {
		t.Errorf("Got(revoke by the operator) = %d; want 200", code)
	}
	if e.active(t, "org-b", victim.token) {
		t.Errorf("Got(victim token after the operator's revoke) active; want revoked")
	}
	if got := introspect("platform", operator); len(got) != 1 || got["active"] != false {
		t.Errorf("Got(introspect by the operator after revoke) = %v; want active:false", got)
	}
}

// An agent acting on itself follows the same rule: a token asked for with
// a narrow scope cannot mint a credential (or change the agent) beyond it.
func TestAttackNarrowTokenCannotMintWiderCredentialForItself(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	self := e.scopedParty(t, "org-1", "self@x.io", []string{"agents:read", "agents:write", "webhooks:write"})
	narrow := self.identity()
	narrow.Scopes = []string{"agents:write"}
	path := "/api/v1/agents/" + self.agent.AgentID
	wantProblem(t, "narrow token creates its own credential", e.as(t, narrow, "POST", path+"/credentials", "{}"), 403, "FORBIDDEN")
	wantProblem(t, "narrow token changes its own agent", e.as(t, narrow, "PATCH", path, `{"owner":"me"}`), 403, "FORBIDDEN")
	if rec := e.as(t, self.identity(), "POST", path+"/credentials", "{}"); rec.Code != 201 {
		t.Errorf("Got(full token creates its own credential) = %d %s; want 201", rec.Code, rec.Body)
	}
}
