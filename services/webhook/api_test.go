package webhook_test

import (
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"strings"
	"testing"
)

func TestAPICrud(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), false)
	id, secret := e.create(t, h, "http://127.0.0.1:9/hook", "agent.created", "token.issued", "agent.created")
	if !strings.HasPrefix(id, "wh_") || !strings.HasPrefix(secret, "whsec_") {
		t.Errorf("create = id %q secret %q; want wh_… and whsec_…", id, secret)
	}
	r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, "")
	if r.status != http.StatusOK || r.body["organization_id"] != e.orgID || r.body["active"] != true ||
		r.body["failure_count"] != float64(0) || r.body["created_at"] == nil || r.body["updated_at"] == nil {
		t.Errorf("GET = %d %s", r.status, r.raw)
	}
	if _, shown := r.body["signingSecret"]; shown || strings.Contains(r.raw, secret) {
		t.Errorf("GET shows the signing secret: %s", r.raw)
	}
	if evs := r.body["events"].([]any); len(evs) != 2 {
		t.Errorf("events = %v; want de-duplicated [agent.created token.issued]", evs)
	}
	r = do(t, h, e.codec, e.rw(), http.MethodPatch, "/api/v1/webhooks/"+id, `{"name":"renamed","events":["*"],"active":false}`)
	if r.status != http.StatusOK || r.body["name"] != "renamed" || r.body["active"] != false {
		t.Errorf("PATCH = %d %s", r.status, r.raw)
	}
	e.create(t, h, "http://127.0.0.1:9/other", "*")
	r = do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks?page=1&limit=1", "")
	if r.status != http.StatusOK || r.body["total"] != float64(2) || len(r.body["data"].([]any)) != 1 {
		t.Errorf("LIST = %d %s", r.status, r.raw)
	}
	r = do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/rotate-secret", "")
	if s, _ := r.body["signingSecret"].(string); r.status != http.StatusOK || !strings.HasPrefix(s, "whsec_") || s == secret {
		t.Errorf("rotate = %d %s; want a new secret", r.status, r.raw)
	}
	if r = do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id+"/deliveries", ""); r.status != http.StatusOK || r.body["total"] != float64(0) {
		t.Errorf("deliveries = %d %s", r.status, r.raw)
	}
	if r = do(t, h, e.codec, e.rw(), http.MethodDelete, "/api/v1/webhooks/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("DELETE = %d %s", r.status, r.raw)
	}
	if r = do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, ""); r.status != http.StatusNotFound || r.body["code"] != "WEBHOOK_NOT_FOUND" {
		t.Errorf("GET after DELETE = %d %s; want 404 WEBHOOK_NOT_FOUND", r.status, r.raw)
	}
}

func TestAPIValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), false)
	strict := testConfig()
	strict.AllowPrivate = nil
	hs := e.service(t, strict, false)
	long := strings.Repeat("n", 101)
	tests := []struct {
		name    string
		handler http.Handler
		body    string
	}{
		{"private URL refused without allow-list", hs, `{"name":"a","url":"http://127.0.0.1/x","events":["*"]}`},
		{"metadata address", hs, `{"name":"a","url":"http://169.254.169.254/latest","events":["*"]}`},
		{"localhost", hs, `{"name":"a","url":"http://localhost:8080/x","events":["*"]}`},
		{"unknown event type", h, `{"name":"a","url":"http://127.0.0.1/x","events":["agent.exploded"]}`},
		{"no events", h, `{"name":"a","url":"http://127.0.0.1/x","events":[]}`},
		{"missing events", h, `{"name":"a","url":"http://127.0.0.1/x"}`},
		{"unknown field", h, `{"name":"a","url":"http://127.0.0.1/x","events":["*"],"secret":"mine"}`},
		{"empty name", h, `{"name":"","url":"http://127.0.0.1/x","events":["*"]}`},
		{"name too long", h, `{"name":"` + long + `","url":"http://127.0.0.1/x","events":["*"]}`},
		{"ftp URL", h, `{"name":"a","url":"ftp://127.0.0.1/x","events":["*"]}`},
		{"relative URL", h, `{"name":"a","url":"/x","events":["*"]}`},
		{"credentials in URL", h, `{"name":"a","url":"http://u:p@127.0.0.1/x","events":["*"]}`},
		{"events wrong type", h, `{"name":"a","url":"http://127.0.0.1/x","events":"*"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.handler, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks", tc.body)
			if r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" {
				t.Errorf("POST %s = %d %s; want 400 VALIDATION_ERROR", tc.body, r.status, r.raw)
			}
		})
	}
	if r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks", ""); r.body["total"] != float64(0) {
		t.Errorf("after invalid creates, total = %v; want 0", r.body["total"])
	}
	id, _ := e.create(t, h, "http://127.0.0.1:9/x", "*")
	for _, body := range []string{`{}`, `{"url":"http://10.0.0.1/x","active":false}`, `{"events":["nope"]}`, `{"active":"yes"}`} {
		if r := do(t, hs, e.codec, e.rw(), http.MethodPatch, "/api/v1/webhooks/"+id, body); r.status != http.StatusBadRequest {
			t.Errorf("PATCH %s = %d %s; want 400", body, r.status, r.raw)
		}
	}
	if r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, ""); r.body["active"] != true {
		t.Errorf("a rejected PATCH changed the webhook: %s", r.raw)
	}
}

func TestAPIAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), false)
	id, _ := e.create(t, h, "http://127.0.0.1:9/x", "*")
	other := identity("other-org", "webhooks:read", "webhooks:write")
	readOnly := identity(e.orgID, "webhooks:read")
	writeOnly := identity(e.orgID, "webhooks:write")
	create := `{"name":"a","url":"http://127.0.0.1/x","events":["*"]}`
	tests := []struct {
		name         string
		id           *authn.Identity
		method, path string
		body         string
		status       int
	}{
		{"no context", nil, http.MethodGet, "/api/v1/webhooks", "", http.StatusUnauthorized},
		{"no context on create", nil, http.MethodPost, "/api/v1/webhooks", create, http.StatusUnauthorized},
		{"read without scope", writeOnly, http.MethodGet, "/api/v1/webhooks", "", http.StatusForbidden},
		{"deliveries without scope", writeOnly, http.MethodGet, "/api/v1/webhooks/" + id + "/deliveries", "", http.StatusForbidden},
		{"create without scope", readOnly, http.MethodPost, "/api/v1/webhooks", create, http.StatusForbidden},
		{"patch without scope", readOnly, http.MethodPatch, "/api/v1/webhooks/" + id, `{"name":"x"}`, http.StatusForbidden},
		{"delete without scope", readOnly, http.MethodDelete, "/api/v1/webhooks/" + id, "", http.StatusForbidden},
		{"rotate without scope", readOnly, http.MethodPost, "/api/v1/webhooks/" + id + "/rotate-secret", "", http.StatusForbidden},
		{"other org get", other, http.MethodGet, "/api/v1/webhooks/" + id, "", http.StatusNotFound},
		{"other org patch", other, http.MethodPatch, "/api/v1/webhooks/" + id, `{"name":"x"}`, http.StatusNotFound},
		{"other org delete", other, http.MethodDelete, "/api/v1/webhooks/" + id, "", http.StatusNotFound},
		{"other org rotate", other, http.MethodPost, "/api/v1/webhooks/" + id + "/rotate-secret", "", http.StatusNotFound},
		{"other org deliveries", other, http.MethodGet, "/api/v1/webhooks/" + id + "/deliveries", "", http.StatusNotFound},
		{"other org redeliver", other, http.MethodPost, "/api/v1/webhooks/" + id + "/deliveries/whd_x/redeliver", "", http.StatusNotFound},
		{"missing delivery", e.rw(), http.MethodPost, "/api/v1/webhooks/" + id + "/deliveries/whd_x/redeliver", "", http.StatusNotFound},
		{"bad page", e.rw(), http.MethodGet, "/api/v1/webhooks?limit=1000", "", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, h, e.codec, tc.id, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Errorf("%s %s = %d %s; want %d", tc.method, tc.path, r.status, r.raw, tc.status)
			}
		})
	}
	if r := do(t, h, e.codec, other, http.MethodGet, "/api/v1/webhooks", ""); r.body["total"] != float64(0) {
		t.Errorf("other org's list total = %v; want 0", r.body["total"])
	}
	if r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, ""); r.status != http.StatusOK || r.body["name"] != "test hook" {
		t.Errorf("after the other org's attempts: %d %s", r.status, r.raw)
	}
}
