package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// issue registers an agent in org with every scope and returns an access
// token of it and the credential.
func (e *env) issue(t testing.TB, org, email string) (string, domain.Agent, domain.NewCredential) {
	t.Helper()
	a := e.createAgent(t, org, email, `,"scopes":["agents:read","tokens:read"]`)
	cred := e.createCredential(t, org, a.AgentID, "")
	return e.accessToken(t, a.AgentID, cred.ClientSecret), a, cred
}

func (e *env) accessToken(t testing.TB, id, secret string) string {
	t.Helper()
	rec := e.token(t, tokenReq{id: id, secret: secret})
	if rec.Code != http.StatusOK {
		t.Fatalf("token = %d %s; want 200", rec.Code, rec.Body)
	}
	return decode[domain.TokenResponse](t, rec).AccessToken
}

// form posts a form body with the caller's internal context.
func (e *env) form(t testing.TB, path, org string, scopes []string, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if org != "" {
		v, err := e.codec.Sign(authn.Identity{Subject: "caller", OrgID: org, Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour).Unix(),
			Method: req.Method, Path: req.URL.Path})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(authn.Header, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func (e *env) introspect(t testing.TB, org, tok string) map[string]any {
	t.Helper()
	rec := e.form(t, "/oauth2/introspect", org, []string{"tokens:read"}, url.Values{"token": {tok}}.Encode())
	if rec.Code != http.StatusOK {
		t.Fatalf("introspect = %d %s; want 200", rec.Code, rec.Body)
	}
	return decode[map[string]any](t, rec)
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, a, _ := e.issue(t, "org-1", "i@x.io")
	got := e.introspect(t, "org-1", tok)
	for k, want := range map[string]any{"active": true, "sub": a.AgentID, "client_id": a.AgentID, "organization_id": "org-1",
		"token_type": "Bearer", "iss": "http://idp.test", "aud": "agentidp"} {
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Errorf("Got(introspect[%s]) = %v; want %v", k, got[k], want)
		}
	}
	for _, k := range []string{"scope", "exp", "iat", "jti"} {
		if got[k] == nil || got[k] == "" {
			t.Errorf("Got(introspect[%s]) missing in %v", k, got)
		}
	}
	if _, ok := got["credential_id"]; ok {
		t.Errorf("Got(introspect) = %v; want no credential_id", got)
	}

	// Everything that is not an active token of the caller's org is only
	// {"active":false}.
	other, _, _ := e.issue(t, "org-2", "o@x.io")
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	unknownKid := "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vcGUiLCJ0eXAiOiJhdCtqd3QifQ." + parts[1] + "." + parts[2]
	for name, tc := range map[string]struct{ org, tok string }{
		"foreign org":   {"org-2", tok},
		"garbage":       {"org-1", "not-a-jwt"},
		"tampered":      {"org-1", tampered},
		"unknown key":   {"org-1", unknownKid},
		"oversized":     {"org-1", tok + strings.Repeat("A", 9000)},
		"other's token": {"org-1", other},
	} {
		got := e.introspect(t, tc.org, tc.tok)
		if len(got) != 1 || got["active"] != false {
			t.Errorf("%s: Got(introspect) = %v; want only active:false", name, got)
		}
	}
}

func TestIntrospectionRequestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, _, _ := e.issue(t, "org-1", "r@x.io")
	body := url.Values{"token": {tok}}.Encode()
	for _, path := range []string{"/oauth2/introspect", "/api/v1/token/introspect", "/oauth2/revoke", "/api/v1/token/revoke"} {
		for name, tc := range map[string]struct {
			org    string
			scopes []string
			body   string
			ctype  string
			want   int
		}{
			"no internal context": {"", nil, body, "", http.StatusUnauthorized},
			"missing scope":       {"org-1", []string{"agents:read"}, body, "", http.StatusForbidden},
			"no token":            {"org-1", []string{"tokens:read"}, "token_type_hint=access_token", "", http.StatusBadRequest},
			"repeated token":      {"org-1", []string{"tokens:read"}, body + "&" + body, "", http.StatusBadRequest},
			"malformed form":      {"org-1", []string{"tokens:read"}, "token=%zz", "", http.StatusBadRequest},
			"json body":           {"org-1", []string{"tokens:read"}, `{"token":"x"}`, "application/json", http.StatusBadRequest},
			"body too large":      {"org-1", []string{"tokens:read"}, "token=" + strings.Repeat("A", 20<<10), "", http.StatusRequestEntityTooLarge},
		} {
			req := httptest.NewRequest("POST", path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.org != "" {
				v, _ := e.codec.Sign(authn.Identity{Subject: "caller", OrgID: tc.org, Scopes: tc.scopes, ExpiresAt: time.Now().Add(time.Hour).Unix(),
					Method: req.Method, Path: req.URL.Path})
				req.Header.Set(authn.Header, v)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("POST %s (%s): Got(status) = %d %s; want %d", path, name, rec.Code, rec.Body, tc.want)
			}
		}
	}
	// Nothing above revoked the token.
	if got := e.introspect(t, "org-1", tok); got["active"] != true {
		t.Errorf("Got(introspect after rejected requests) = %v; want active", got)
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, a, cred := e.issue(t, "org-1", "v@x.io")
	tok2 := e.accessToken(t, a.AgentID, cred.ClientSecret)

	// A foreign org, garbage or unknown token: 200 and nothing changes.
	for name, tc := range map[string]struct{ org, tok string }{
		"foreign org": {"org-2", tok}, "garbage": {"org-1", "garbage"}, "oversized": {"org-1", strings.Repeat("A", 9000)},
	} {
		rec := e.form(t, "/oauth2/revoke", tc.org, []string{"tokens:read"}, url.Values{"token": {tc.tok}, "token_type_hint": {"access_token"}}.Encode())
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
			t.Errorf("%s: Got(revoke) = %d %q; want 200 and no body", name, rec.Code, rec.Body)
		}
	}
	if got := e.introspect(t, "org-1", tok); got["active"] != true {
		t.Fatalf("Got(introspect after foreign revoke) = %v; want active", got)
	}
	for i := 0; i < 2; i++ { // twice: idempotent
		rec := e.form(t, "/api/v1/token/revoke", "org-1", []string{"tokens:read"}, url.Values{"token": {tok}}.Encode())
		if rec.Code != http.StatusOK {
			t.Fatalf("Got(revoke) = %d %s; want 200", rec.Code, rec.Body)
		}
	}
	if got := e.introspect(t, "org-1", tok); len(got) != 1 || got["active"] != false {
		t.Errorf("Got(introspect revoked) = %v; want active:false", got)
	}
	if got := e.introspect(t, "org-1", tok2); got["active"] != true {
		t.Errorf("Got(introspect sibling token) = %v; want active (only the jti is revoked)", got)
	}
}

func TestCascadeRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Credential revocation revokes tokens issued under it.
	tok, a, cred := e.issue(t, "org-1", "c@x.io")
	cred2 := e.createCredential(t, "org-1", a.AgentID, "")
	tokOther := e.accessToken(t, a.AgentID, cred2.ClientSecret)
	if rec := e.do(t, "DELETE", "/api/v1/agents/"+a.AgentID+"/credentials/"+cred.CredentialID, "org-1", allScopes, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke credential = %d %s", rec.Code, rec.Body)
	}
	if got := e.introspect(t, "org-1", tok); got["active"] != false {
		t.Errorf("Got(introspect after credential revoke) = %v; want inactive", got)
	}
	if got := e.introspect(t, "org-1", tokOther); got["active"] != true {
		t.Errorf("Got(introspect token of another credential) = %v; want active", got)
	}
	// Rotation (no grace) revokes tokens of the old secret, not new ones.
	tokOld := e.accessToken(t, a.AgentID, cred2.ClientSecret)
	rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/credentials/"+cred2.CredentialID+"/rotate", "org-1", allScopes, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("rotate = %d %s", rec.Code, rec.Body)
	}
	rotated := decode[domain.NewCredential](t, rec)
	if got := e.introspect(t, "org-1", tokOld); got["active"] != false {
		t.Errorf("Got(introspect after rotation) = %v; want inactive", got)
	}
	tokNew := e.accessToken(t, a.AgentID, rotated.ClientSecret)
	if got := e.introspect(t, "org-1", tokNew); got["active"] != true {
		t.Errorf("Got(introspect token of the rotated secret) = %v; want active", got)
	}
	// Suspension revokes; a token issued after reactivation — even in the
	// same second — works.
	status := func(s string) {
		t.Helper()
		if rec := e.do(t, "PATCH", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, `{"status":"`+s+`"}`); rec.Code != http.StatusOK {
			t.Fatalf("PATCH status %s = %d %s", s, rec.Code, rec.Body)
		}
	}
	status("suspended")
	if got := e.introspect(t, "org-1", tokNew); got["active"] != false {
		t.Errorf("Got(introspect after suspension) = %v; want inactive", got)
	}
	status("active")
	time.Sleep(2 * time.Millisecond)
	fresh := e.accessToken(t, a.AgentID, rotated.ClientSecret)
	if got := e.introspect(t, "org-1", fresh); got["active"] != true {
		t.Errorf("Got(introspect token issued after reactivation) = %v; want active", got)
	}
	if got := e.introspect(t, "org-1", tokNew); got["active"] != false {
		t.Errorf("Got(introspect pre-suspension token after reactivation) = %v; want still inactive", got)
	}
	// Organisation deletion (from the read model) revokes the whole org.
	if err := e.svc.RevokeOrg(context.Background(), "org-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := e.introspect(t, "org-1", fresh); got["active"] != false {
		t.Errorf("Got(introspect after org deletion) = %v; want inactive", got)
	}
}

// failingStore fails every revocation read, as a database outage does.
type failingStore struct{ domain.Store }

func (failingStore) ListRevocations(context.Context, time.Time) ([]domain.Revocation, error) {
	return nil, errors.New("database down")
}

func TestIntrospectionWithoutRevocationState(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(s domain.Store) domain.Store { return failingStore{s} })
	tok, _, _ := e.issue(t, "org-1", "f@x.io")
	rec := e.form(t, "/oauth2/introspect", "org-1", []string{"tokens:read"}, url.Values{"token": {tok}}.Encode())
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "active") {
		t.Errorf("Got(introspect without revocation state) = %d %s; want 503 and no answer", rec.Code, rec.Body)
	}
}

func TestAgentInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-1", "who@x.io", "")
	req := httptest.NewRequest("GET", "/agent-info", nil)
	v, _ := e.codec.Sign(authn.Identity{Subject: a.AgentID, OrgID: "org-1", Scopes: []string{"agents:read"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: "GET", Path: "/agent-info"})
	req.Header.Set(authn.Header, v)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("Got(agent-info) = %d %s; want 200", rec.Code, rec.Body)
	}
	got := decode[map[string]any](t, rec)
	for k, want := range map[string]any{"agentId": a.AgentID, "email": "who@x.io", "organizationId": "org-1", "status": "active",
		"scopes": []any{"agents:read"}, "agentType": "screener", "deploymentEnv": "production"} {
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Errorf("Got(agent-info[%s]) = %v; want %v", k, got[k], want)
		}
	}
	if _, ok := got["did"]; !ok {
		t.Errorf("Got(agent-info) = %v; want a did field", got)
	}
	// Another org's agent id in the context is not found; no context is 401.
	v, _ = e.codec.Sign(authn.Identity{Subject: a.AgentID, OrgID: "org-2", Scopes: []string{"agents:read"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: "GET", Path: "/agent-info"})
	req = httptest.NewRequest("GET", "/agent-info", nil)
	req.Header.Set(authn.Header, v)
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("Got(agent-info, other org) = %d; want 404", rec.Code)
	}
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("GET", "/agent-info", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("Got(agent-info without context) = %d; want 401", rec.Code)
	}
}

func BenchmarkIntrospect(b *testing.B) {
	e := newEnv(b)
	tok, _, _ := e.issue(b, "org-1", "b@x.io")
	body := url.Values{"token": {tok}}.Encode()
	v, _ := e.codec.Sign(authn.Identity{Subject: "caller", OrgID: "org-1", Scopes: []string{"tokens:read"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: "POST", Path: "/oauth2/introspect"})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(authn.Header, v)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("Got(status) = %d", rec.Code)
		}
	}
}
