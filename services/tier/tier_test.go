package tier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/tier"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type harness struct {
	handler http.Handler
	codec   *authn.Codec
	js      jetstream.JetStream
	cache   cache.Cache
	db      *sqlstore.DB
	svc     *tier.Service
}

func openSQLite(t *testing.T) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "tier.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessDB(t, openSQLite(t))
}

func newHarnessDB(t *testing.T, db *sqlstore.DB) *harness {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	c := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { c.Close() })
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := tier.New(ctx, tier.Config{ReconcileInterval: time.Hour, KVReplicas: 1}, &svcrun.Deps{
		Service: "tier", Registry: prometheus.NewRegistry(), DB: db, Cache: c, NATS: nc, JS: js, Codec: codec,
	})
	if err != nil {
		t.Fatalf("tier.New = %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := svc.Run(runCtx); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &harness{handler: svc.Handler(), codec: codec, js: js, cache: c, db: db, svc: svc}
}

func adminID() *authn.Identity {
	return &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"admin:orgs"}}
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func (h *harness) do(t *testing.T, id *authn.Identity, method, path, body string) response {
	t.Helper()
	req := authntest.Request(t, h.codec, id, method, path, body)
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	r := response{status: rec.Code, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (h *harness) create(t *testing.T, body string) map[string]any {
	t.Helper()
	r := h.do(t, adminID(), http.MethodPost, "/api/v1/organizations", body)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /organizations %s = %d %s; want 201", body, r.status, r.raw)
	}
	return r.body
}

func expect(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.body["code"] != code) {
		t.Errorf("Got(status, code) = %d, %v (%s); want %d, %s", r.status, r.body["code"], r.raw, status, code)
	}
}

func TestOrganizationLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := adminID()
	o := h.create(t, `{"name":"Acme Corp","slug":"acme","planTier":"pro","maxAgents":50,"maxTokensPerMonth":100000}`)
	id, _ := o["organizationId"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("Got(organizationId) = %q; want a UUID", id)
	}
	want := map[string]any{"name": "Acme Corp", "slug": "acme", "planTier": "pro", "maxAgents": 50.0, "maxTokensPerMonth": 100000.0, "status": "active"}
	for k, v := range want {
		if o[k] != v {
			t.Errorf("Got(%s) = %v; want %v", k, o[k], v)
		}
	}
	limits, _ := o["limits"].(map[string]any)
	if limits["maxAgents"] != 50.0 || limits["maxCallsPerDay"] != 50000.0 || limits["maxTokensPerDay"] != 50000.0 {
		t.Errorf("Got(limits) = %v; want {50 50000 50000}", limits)
	}
	if o["createdAt"] == nil || o["updatedAt"] == nil {
		t.Errorf("Got(createdAt, updatedAt) = %v, %v; want both", o["createdAt"], o["updatedAt"])
	}

	r := h.do(t, admin, http.MethodGet, "/api/v1/organizations/"+id, "")
	expect(t, r, http.StatusOK, "")
	if r.body["slug"] != "acme" {
		t.Errorf("GET org slug = %v; want acme", r.body["slug"])
	}

	second := h.create(t, `{"name":"Beta","slug":"beta"}`)
	if second["planTier"] != "free" || second["maxAgents"] != 10.0 || second["maxTokensPerMonth"] != nil {
		t.Errorf("Got(defaults) = %v %v %v; want free 10 null", second["planTier"], second["maxAgents"], second["maxTokensPerMonth"])
	}
	r = h.do(t, admin, http.MethodGet, "/api/v1/organizations?limit=1&page=2", "")
	expect(t, r, http.StatusOK, "")
	data, _ := r.body["data"].([]any)
	if len(data) != 1 || data[0].(map[string]any)["slug"] != "beta" || r.body["total"] != 2.0 || r.body["totalPages"] != 2.0 {
		t.Errorf("GET page 2 = %s; want beta alone, total 2", r.raw)
	}

	r = h.do(t, admin, http.MethodPatch, "/api/v1/organizations/"+id, `{"name":"Acme Inc","status":"suspended","maxTokensPerMonth":5}`)
	expect(t, r, http.StatusOK, "")
	if r.body["name"] != "Acme Inc" || r.body["status"] != "suspended" || r.body["maxTokensPerMonth"] != 5.0 || r.body["planTier"] != "pro" {
		t.Errorf("PATCH = %s; want renamed, suspended, 5 tokens, still pro", r.raw)
	}

	agent := uuid.NewString()
	r = h.do(t, admin, http.MethodPost, "/api/v1/organizations/"+id+"/members", `{"agentId":"`+agent+`","role":"admin"}`)
	expect(t, r, http.StatusCreated, "")
	if r.body["agentId"] != agent || r.body["role"] != "admin" || r.body["organizationId"] != id {
		t.Errorf("POST members = %s; want the membership", r.raw)
	}
	r = h.do(t, admin, http.MethodPost, "/api/v1/organizations/"+id+"/members", `{"agentId":"`+agent+`","role":"member"}`)
	expect(t, r, http.StatusConflict, "ALREADY_MEMBER")

	r = h.do(t, admin, http.MethodDelete, "/api/v1/organizations/"+id, "")
	expect(t, r, http.StatusNoContent, "")
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/organizations/" + id, ""},
		{http.MethodPatch, "/api/v1/organizations/" + id, `{"name":"Again"}`},
		{http.MethodDelete, "/api/v1/organizations/" + id, ""},
		{http.MethodPost, "/api/v1/organizations/" + id + "/members", `{"agentId":"` + uuid.NewString() + `","role":"member"}`},
	} {
		expect(t, h.do(t, admin, tc.method, tc.path, tc.body), http.StatusNotFound, "ORGANIZATION_NOT_FOUND")
	}
	r = h.do(t, admin, http.MethodGet, "/api/v1/organizations", "")
	if r.body["total"] != 1.0 {
		t.Errorf("Got(total after delete) = %v; want 1", r.body["total"])
	}
	// The slug stays reserved by the soft-deleted organisation.
	expect(t, h.do(t, admin, http.MethodPost, "/api/v1/organizations", `{"name":"Acme","slug":"acme"}`), http.StatusConflict, "ORGANIZATION_ALREADY_EXISTS")
}

func TestValidationChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := adminID()
	existing := h.create(t, `{"name":"Existing","slug":"existing"}`)
	id := existing["organizationId"].(string)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"bad slug", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"Acme_Corp"}`, 400, "VALIDATION_ERROR"},
		{"short slug", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"a"}`, 400, "VALIDATION_ERROR"},
		{"long slug", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"` + strings.Repeat("a", 51) + `"}`, 400, "VALIDATION_ERROR"},
		{"short name", "POST", "/api/v1/organizations", `{"name":"A","slug":"acme"}`, 400, "VALIDATION_ERROR"},
		{"long name", "POST", "/api/v1/organizations", `{"name":"` + strings.Repeat("n", 101) + `","slug":"acme"}`, 400, "VALIDATION_ERROR"},
		{"missing fields", "POST", "/api/v1/organizations", `{}`, 400, "VALIDATION_ERROR"},
		{"bad tier", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","planTier":"gold"}`, 400, "VALIDATION_ERROR"},
		{"zero maxAgents", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","maxAgents":0}`, 400, "VALIDATION_ERROR"},
		{"maxAgents above tier", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","maxAgents":11}`, 400, "VALIDATION_ERROR"},
		{"fractional maxAgents", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","maxAgents":1.5}`, 400, "VALIDATION_ERROR"},
		{"string maxAgents", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","maxAgents":"5"}`, 400, "VALIDATION_ERROR"},
		{"unknown field", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme","tier":"pro"}`, 400, "VALIDATION_ERROR"},
		{"malformed JSON", "POST", "/api/v1/organizations", `{"name":"Acme","slug":`, 400, "VALIDATION_ERROR"},
		{"trailing data", "POST", "/api/v1/organizations", `{"name":"Acme","slug":"acme"} {}`, 400, "VALIDATION_ERROR"},
		{"oversized", "POST", "/api/v1/organizations", `{"name":"` + strings.Repeat("x", 2<<20) + `","slug":"acme"}`, 413, "PAYLOAD_TOO_LARGE"},
		{"patch bad status", "PATCH", "/api/v1/organizations/" + id, `{"status":"deleted"}`, 400, "VALIDATION_ERROR"},
		{"patch bad tier", "PATCH", "/api/v1/organizations/" + id, `{"planTier":"gold"}`, 400, "VALIDATION_ERROR"},
		{"patch maxAgents above tier", "PATCH", "/api/v1/organizations/" + id, `{"maxAgents":11,"name":"Changed"}`, 400, "VALIDATION_ERROR"},
		{"patch empty", "PATCH", "/api/v1/organizations/" + id, `{}`, 400, "VALIDATION_ERROR"},
		{"patch slug", "PATCH", "/api/v1/organizations/" + id, `{"slug":"other"}`, 400, "VALIDATION_ERROR"},
		{"member bad agent", "POST", "/api/v1/organizations/" + id + "/members", `{"agentId":"x","role":"member"}`, 400, "VALIDATION_ERROR"},
		{"member bad role", "POST", "/api/v1/organizations/" + id + "/members", `{"agentId":"` + uuid.NewString() + `","role":"owner"}`, 400, "VALIDATION_ERROR"},
		{"unknown org", "GET", "/api/v1/organizations/" + uuid.NewString(), "", 404, "ORGANIZATION_NOT_FOUND"},
		{"invalid org id", "GET", "/api/v1/organizations/not-a-uuid", "", 404, "ORGANIZATION_NOT_FOUND"},
		{"patch unknown org", "PATCH", "/api/v1/organizations/" + uuid.NewString(), `{"name":"Xy"}`, 404, "ORGANIZATION_NOT_FOUND"},
		{"bad page", "GET", "/api/v1/organizations?page=0", "", 400, "VALIDATION_ERROR"},
		{"bad limit", "GET", "/api/v1/organizations?limit=1000", "", 400, "VALIDATION_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.do(t, admin, tc.method, tc.path, tc.body), tc.status, tc.code)
		})
	}
	r := h.do(t, admin, http.MethodGet, "/api/v1/organizations", "")
	data, _ := r.body["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("Got(%d orgs) after invalid requests; want 1", len(data))
	}
	got := data[0].(map[string]any)
	for _, k := range []string{"name", "planTier", "status", "maxAgents", "updatedAt"} {
		if got[k] != existing[k] {
			t.Errorf("Got(%s) = %v after invalid requests; want %v", k, got[k], existing[k])
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.create(t, `{"name":"Acme","slug":"acme"}`)["organizationId"].(string)
	noScope := &authn.Identity{Subject: uuid.NewString(), OrgID: id, Scopes: []string{"agents:read", "agents:write"}}
	routes := []struct{ method, path, body string }{
		{"POST", "/api/v1/organizations", `{"name":"Other","slug":"other"}`},
		{"GET", "/api/v1/organizations", ""},
		{"GET", "/api/v1/organizations/" + id, ""},
		{"PATCH", "/api/v1/organizations/" + id, `{"planTier":"enterprise"}`},
		{"DELETE", "/api/v1/organizations/" + id, ""},
		{"POST", "/api/v1/organizations/" + id + "/members", `{"agentId":"` + uuid.NewString() + `","role":"admin"}`},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			expect(t, h.do(t, nil, rt.method, rt.path, rt.body), http.StatusUnauthorized, "UNAUTHORIZED")
			expect(t, h.do(t, noScope, rt.method, rt.path, rt.body), http.StatusForbidden, "FORBIDDEN")
		})
	}
	expect(t, h.do(t, nil, "GET", "/api/v1/tiers/status", ""), http.StatusUnauthorized, "UNAUTHORIZED")
	r := h.do(t, adminID(), "GET", "/api/v1/organizations/"+id, "")
	if r.body["planTier"] != "free" || r.body["status"] != "active" {
		t.Errorf("Got(org after refused requests) = %s; want unchanged", r.raw)
	}
	if r := h.do(t, adminID(), "GET", "/api/v1/organizations", ""); r.body["total"] != 1.0 {
		t.Errorf("Got(total) = %v; want 1", r.body["total"])
	}
}

func TestDeleteWithActiveAgents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := adminID()
	id := h.create(t, `{"name":"Acme","slug":"acme"}`)["organizationId"].(string)
	ctx := context.Background()
	if err := h.cache.Set(ctx, tier.AgentsKey(id), []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	expect(t, h.do(t, admin, "DELETE", "/api/v1/organizations/"+id, ""), http.StatusConflict, "ORGANIZATION_HAS_ACTIVE_AGENTS")
	expect(t, h.do(t, admin, "GET", "/api/v1/organizations/"+id, ""), http.StatusOK, "")
	if err := h.cache.Set(ctx, tier.AgentsKey(id), []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	expect(t, h.do(t, admin, "DELETE", "/api/v1/organizations/"+id, ""), http.StatusNoContent, "")
	kvOrg := waitKV(t, h, id, func(o events.OrgData) bool { return o.Status == "deleted" })
	if kvOrg.Slug != "acme" {
		t.Errorf("Got(kv slug) = %q; want acme", kvOrg.Slug)
	}
	lastEvent(t, h, events.OrgDeleted, id)
}

// waitKV returns the org's read-model entry once ok accepts it.
func waitKV(t *testing.T, h *harness, id string, ok func(events.OrgData) bool) events.OrgData {
	t.Helper()
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, events.OrgsBucket)
	if err != nil {
		t.Fatalf("open kv: %v", err)
	}
	var last events.OrgData
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("kv get %s: %v", id, err)
		}
		if err := json.Unmarshal(e.Value(), &last); err != nil {
			t.Fatalf("kv value %s: %v", e.Value(), err)
		}
		if ok(last) {
			return last
		}
	}
	t.Fatalf("Got(kv %s) = %+v; condition not met within 5s", id, last)
	return last
}

// lastEvent waits for the latest event of type typ in the stream and
// checks it belongs to org.
func lastEvent(t *testing.T, h *harness, typ events.Type, org string) events.Envelope {
	t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m, err := st.GetLastMsgForSubject(ctx, typ.Subject())
		if err != nil {
			continue
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode %s: %v", typ, err)
		}
		if e.OrgID == org {
			if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID {
				t.Errorf("Got(Nats-Msg-Id) = %q; want the event id %q", got, e.ID)
			}
			return e
		}
	}
	t.Fatalf("Got no %s event for %s within 5s", typ, org)
	return events.Envelope{}
}

func TestReadModelAndTierChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := adminID()
	id := h.create(t, `{"name":"Acme","slug":"acme","maxAgents":5}`)["organizationId"].(string)
	got := waitKV(t, h, id, func(events.OrgData) bool { return true })
	if got.PlanTier != "free" || got.Status != "active" || got.Limits != (events.Limits{MaxAgents: 5, MaxCallsPerDay: 1000, MaxTokensPerDay: 1000}) {
		t.Errorf("Got(kv after create) = %+v; want free, active, limits {5 1000 1000}", got)
	}
	lastEvent(t, h, events.OrgCreated, id)

	r := h.do(t, admin, "PATCH", "/api/v1/organizations/"+id, `{"planTier":"enterprise"}`)
	expect(t, r, http.StatusOK, "")
	got = waitKV(t, h, id, func(o events.OrgData) bool { return o.PlanTier == "enterprise" })
	if got.Limits != (events.Limits{MaxAgents: 5, MaxCallsPerDay: -1, MaxTokensPerDay: -1}) {
		t.Errorf("Got(kv limits after upgrade) = %+v; want {5 -1 -1}", got.Limits)
	}
	e := lastEvent(t, h, events.TierChanged, id)
	var tc events.TierChangedData
	if err := e.DecodeData(&tc); err != nil {
		t.Fatal(err)
	}
	if tc.From != "free" || tc.To != "enterprise" || tc.OrganizationID != id {
		t.Errorf("Got(tier.changed) = %+v; want free → enterprise for %s", tc, id)
	}
	lastEvent(t, h, events.OrgUpdated, id)

	// A rename is no tier change: the last tier.changed stays the same.
	expect(t, h.do(t, admin, "PATCH", "/api/v1/organizations/"+id, `{"name":"Renamed"}`), http.StatusOK, "")
	waitKV(t, h, id, func(o events.OrgData) bool { return o.Name == "Renamed" })
	if again := lastEvent(t, h, events.TierChanged, id); again.ID != e.ID {
		t.Errorf("Got(tier.changed after rename) = %s; want still %s", again.ID, e.ID)
	}
}

func TestReconcileHealsReadModel(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.create(t, `{"name":"Acme","slug":"acme"}`)["organizationId"].(string)
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, events.OrgsBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitKV(t, h, id, func(events.OrgData) bool { return true })
	if err := kv.Purge(ctx, id); err != nil { // as if the put after commit was lost
		t.Fatal(err)
	}
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile = %v", err)
	}
	waitKV(t, h, id, func(o events.OrgData) bool { return o.Slug == "acme" })
}

func TestTierStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.create(t, `{"name":"Acme","slug":"acme","planTier":"pro"}`)["organizationId"].(string)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := h.cache.Set(ctx, tier.AgentsKey(id), []byte("4"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cache.IncrBy(ctx, tier.CallsKey(id, now), 7, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cache.IncrBy(ctx, tier.TokensKey(id, now), 3, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Yesterday's counters and another org's do not count.
	if _, err := h.cache.IncrBy(ctx, tier.CallsKey(id, now.AddDate(0, 0, -1)), 100, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	caller := &authn.Identity{Subject: uuid.NewString(), OrgID: id, Scopes: []string{"agents:read"}}
	r := h.do(t, caller, "GET", "/api/v1/tiers/status", "")
	expect(t, r, http.StatusOK, "")
	want := `{"tier":"pro","limits":{"maxAgents":100,"maxCallsPerDay":50000,"maxTokensPerDay":50000},"usage":{"agentCount":4,"callsToday":7,"tokensToday":3}}`
	if strings.TrimSpace(r.raw) != want {
		t.Errorf("GET /tiers/status = %s; want %s", r.raw, want)
	}
	stranger := &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"agents:read"}}
	expect(t, h.do(t, stranger, "GET", "/api/v1/tiers/status", ""), http.StatusNotFound, "ORGANIZATION_NOT_FOUND")
}

func TestKeys(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 1, 2, 23, 30, 0, 0, time.FixedZone("x", -3*3600)) // 2026-01-03 in UTC
	tests := []struct{ name, got, want string }{
		{"agents", tier.AgentsKey("o1"), "usage:agents:o1"},
		{"calls", tier.CallsKey("o1", day), "usage:calls:o1:20260103"},
		{"tokens", tier.TokensKey("o1", day), "usage:tokens:o1:20260103"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("Got(%s) = %q; want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	o, created, err := tier.Bootstrap(ctx, db, "Operator", "operator")
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v; want created", created, err)
	}
	if o.PlanTier != tier.TierEnterprise || o.Status != "active" {
		t.Errorf("Got(bootstrap org) = %s %s; want enterprise active", o.PlanTier, o.Status)
	}
	again, created, err := tier.Bootstrap(ctx, db, "Operator", "operator")
	if err != nil || created || again.ID != o.ID {
		t.Errorf("Bootstrap(again) = %s, %v, %v; want %s, false, nil", again.ID, created, err, o.ID)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.OrgCreated.Subject()).Scan(&n); err != nil || n != 1 {
		t.Errorf("Got(org.created in outbox) = %d, %v; want 1", n, err)
	}

	// The service's start-up reconciliation publishes it to the read model,
	// and the relay publishes its org.created.
	h := newHarnessDB(t, db)
	got := waitKV(t, h, o.ID, func(events.OrgData) bool { return true })
	if got.PlanTier != "enterprise" || got.Limits.MaxAgents != -1 {
		t.Errorf("Got(kv bootstrap org) = %+v; want enterprise, unlimited", got)
	}
	lastEvent(t, h, events.OrgCreated, o.ID)
}
