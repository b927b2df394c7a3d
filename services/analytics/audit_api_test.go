package analytics_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/analytics"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/google/uuid"
)

// call sends GET path through the real handler, with a signed context for
// id (none when nil), and returns the status, headers and body.
func (h *harness) call(t *testing.T, svc *analytics.Service, id *authn.Identity, path string) (int, http.Header, string) {
	t.Helper()
	req := authntest.Request(t, h.codec, id, http.MethodGet, path, "")
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	return rec.Code, rec.Header(), string(raw)
}

func decode[T any](t *testing.T, raw string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func event(t *testing.T, typ events.Type, org, subject string, at time.Time, data any) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "token", org, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	e.Time = at
	return e
}

type auditList struct {
	Data []struct {
		EventID        string          `json:"eventId"`
		AgentID        string          `json:"agentId"`
		Action         string          `json:"action"`
		Outcome        string          `json:"outcome"`
		Timestamp      time.Time       `json:"timestamp"`
		OrganizationID string          `json:"organizationId"`
		Metadata       json.RawMessage `json:"metadata"`
		Hash           string          `json:"hash"`
		PrevHash       string          `json:"prevHash"`
		Seq            int64           `json:"seq"`
	} `json:"data"`
	Page       int   `json:"page"`
	Limit      int   `json:"limit"`
	Total      int64 `json:"total"`
	TotalPages int64 `json:"totalPages"`
}

// TestAuditComplianceAnalyticsAPI feeds a small organisation's life through
// JetStream and reads it back through every new route.
func TestAuditComplianceAnalyticsAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, otherOrg := uuid.NewString(), uuid.NewString()
	agentA, agentB := uuid.NewString(), uuid.NewString()
	now := time.Now().UTC()
	t0 := now.Add(-time.Hour)
	exp := now.Add(30 * 24 * time.Hour)
	evs := []events.Envelope{
		event(t, events.AgentCreated, org, agentA, t0, events.AgentData{AgentID: agentA, OrganizationID: org, Email: "a@acme.io", AgentType: "custom", Status: "active", Scopes: []string{"agents:read"}, At: t0}),
		event(t, events.AgentCreated, org, agentB, t0, events.AgentData{AgentID: agentB, OrganizationID: org, Email: "b@acme.io", AgentType: "custom", Status: "active", At: t0}),
		event(t, events.DIDCreated, org, agentA, t0.Add(time.Second), map[string]any{"agentId": agentA, "did": "did:web:idp:agents:" + agentA, "kid": "k1", "at": t0}),
		event(t, events.CredentialGenerated, org, agentA, t0.Add(2*time.Second), events.CredentialData{CredentialID: "c1", AgentID: agentA, Status: "active", ExpiresAt: &exp, At: t0}),
		event(t, events.AuthFailed, org, "", t0.Add(3*time.Second), events.AuthFailedData{ClientID: agentB, Reason: "invalid_client", At: t0}),
		event(t, events.TokenIssued, org, agentA, t0.Add(4*time.Second), events.TokenIssuedData{JTI: "j1", ClientID: agentA, IssuedAt: t0}),
		event(t, events.TokenIssued, org, agentA, t0.Add(5*time.Second), events.TokenIssuedData{JTI: "j2", ClientID: agentA, IssuedAt: t0}),
		event(t, events.AgentSuspended, org, agentB, t0.Add(6*time.Second), events.AgentData{AgentID: agentB, Status: "suspended", At: t0}),
		event(t, events.TokenIssued, otherOrg, "x", t0, events.TokenIssuedData{JTI: "j3"}),
	}
	for _, e := range evs {
		publish(t, h.js, e, e.ID)
	}
	publish(t, h.js, evs[5], "again-"+evs[5].ID) // a duplicate outside the dedupe window
	svc, _ := h.start(t, analytics.DefaultConfig())
	waitFor(t, 10*time.Second, func() bool { return h.pending(t) == 0 })

	auditor := &authn.Identity{Subject: "auditor", OrgID: org, Scopes: []string{"audit:read"}}

	t.Run("list", func(t *testing.T) {
		code, _, raw := h.call(t, svc, auditor, "/api/v1/audit")
		l := decode[auditList](t, raw)
		if code != 200 || l.Total != 8 || len(l.Data) != 8 || l.Page != 1 || l.Limit != 20 || l.TotalPages != 1 {
			t.Fatalf("GET /audit = %d %s; want the 8 events of the org", code, raw)
		}
		first := l.Data[0]
		if first.EventID != evs[7].ID || first.Action != "agent.suspended" || first.Seq != 8 || first.OrganizationID != org || first.PrevHash != l.Data[1].Hash {
			t.Errorf("Got(newest) = %+v; want agent.suspended, seq 8, linked", first)
		}
		if !strings.Contains(string(l.Data[1].Metadata), `"jti":"j2"`) {
			t.Errorf("Got(metadata) = %s; want the event data", l.Data[2].Metadata)
		}
	})

	tests := []struct {
		name  string
		id    *authn.Identity
		query string
		code  int
		total int64
	}{
		{"agent", auditor, "?agentId=" + agentA, 200, 5},
		{"action", auditor, "?action=token.issued", 200, 2},
		{"failure", auditor, "?outcome=failure", 200, 1},
		{"from time", auditor, "?fromDate=" + t0.Add(4*time.Second).Format(time.RFC3339Nano), 200, 3},
		{"to day", auditor, "?toDate=" + now.Format("2006-01-02"), 200, 8},
		{"before", auditor, "?toDate=2020-01-01", 200, 0},
		{"page 2", auditor, "?limit=5&page=2", 200, 8},
		{"bad outcome", auditor, "?outcome=maybe", 400, 0},
		{"bad from", auditor, "?fromDate=yesterday", 400, 0},
		{"bad to", auditor, "?toDate=2026-13-01", 400, 0},
		{"from after to", auditor, "?fromDate=2026-05-02&toDate=2026-05-01", 400, 0},
		{"bad limit", auditor, "?limit=1000", 400, 0},
		{"no context", nil, "", 401, 0},
		{"missing scope", &authn.Identity{Subject: "a", OrgID: org, Scopes: []string{"analytics:read"}}, "", 403, 0},
		{"other org", &authn.Identity{Subject: "a", OrgID: otherOrg, Scopes: []string{"audit:read"}}, "", 200, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, raw := h.call(t, svc, tc.id, "/api/v1/audit"+tc.query)
			if code != tc.code {
				t.Fatalf("GET /audit%s = %d %s; want %d", tc.query, code, raw, tc.code)
			}
			if code == 200 {
				if l := decode[auditList](t, raw); l.Total != tc.total {
					t.Errorf("GET /audit%s total = %d; want %d", tc.query, l.Total, tc.total)
				}
			}
		})
	}

	t.Run("get", func(t *testing.T) {
		if code, _, raw := h.call(t, svc, auditor, "/api/v1/audit/"+evs[0].ID); code != 200 || !strings.Contains(raw, `"seq":1`) {
			t.Errorf("GET /audit/{id} = %d %s; want 200 seq 1", code, raw)
		}
		for _, p := range []string{evs[8].ID, uuid.NewString()} {
			if code, _, raw := h.call(t, svc, auditor, "/api/v1/audit/"+p); code != 404 || !strings.Contains(raw, "AUDIT_EVENT_NOT_FOUND") {
				t.Errorf("GET /audit/%s = %d %s; want 404 AUDIT_EVENT_NOT_FOUND", p, code, raw)
			}
		}
		if code, _, _ := h.call(t, svc, nil, "/api/v1/audit/"+evs[0].ID); code != 401 {
			t.Errorf("GET /audit/{id} without context = %d; want 401", code)
		}
	})

	t.Run("verify", func(t *testing.T) {
		code, _, raw := h.call(t, svc, auditor, "/api/v1/audit/verify")
		want := `{"valid":true,"checked":8,"firstSeq":1,"lastSeq":8,"keyId":"` + audit.KeyID(analytics.DefaultConfig().CheckpointKey) + `","headLedger":"checked"}`
		if code != 200 || strings.TrimSuffix(raw, "\n") != want {
			t.Errorf("GET /audit/verify = %d %s; want valid, 8 checked", code, raw)
		}
		if code, _, _ := h.call(t, svc, &authn.Identity{Subject: "a", OrgID: org, Scopes: []string{"agents:read"}}, "/api/v1/audit/verify"); code != 403 {
			t.Errorf("GET /audit/verify without audit:read = %d; want 403", code)
		}
		if err := svc.VerifyAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		if ok, known := svc.Integrity(); !ok || !known {
			t.Errorf("Integrity() = %v, %v; want true, true", ok, known)
		}
	})

	t.Run("report", func(t *testing.T) {
		code, _, raw := h.call(t, svc, auditor, "/api/v1/compliance/report")
		type report struct {
			ReportID          string `json:"reportId"`
			AgntcySpecVersion string `json:"agntcySpecVersion"`
			OrganizationID    string `json:"organizationId"`
			OverallStatus     string `json:"overallStatus"`
			Sections          []struct {
				ID           string `json:"id"`
				Status       string `json:"status"`
				Requirements []struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"requirements"`
			} `json:"sections"`
		}
		r := decode[report](t, raw)
		if code != 200 || r.AgntcySpecVersion != "1.0.0" || r.OrganizationID != org || len(r.Sections) != 3 {
			t.Fatalf("GET /compliance/report = %d %s; want a 3-section report", code, raw)
		}
		got := map[string]string{}
		for _, s := range r.Sections {
			got[s.ID] = s.Status
		}
		// Agent A (the only active one) has a DID and a fresh credential.
		if got["agent-identity"] != "pass" || got["authentication"] != "pass" || got["audit-trail"] != "pass" || r.OverallStatus != "pass" {
			t.Errorf("Got(section statuses) = %v, overall %s; want all pass (%s)", got, r.OverallStatus, raw)
		}
		_, _, again := h.call(t, svc, auditor, "/api/v1/compliance/report")
		if decode[report](t, again).ReportID != r.ReportID {
			t.Errorf("Got(second report id) differs; want the cached report")
		}
		if code, _, _ := h.call(t, svc, &authn.Identity{Subject: "a", OrgID: org, Scopes: []string{"agents:read"}}, "/api/v1/compliance/report"); code != 403 {
			t.Errorf("GET /compliance/report without audit:read = %d; want 403", code)
		}
	})

	t.Run("agent cards", func(t *testing.T) {
		reader := &authn.Identity{Subject: "a", OrgID: org, Scopes: []string{"agents:read"}}
		code, _, raw := h.call(t, svc, reader, "/api/v1/compliance/agent-cards")
		cards := decode[[]map[string]any](t, raw)
		if code != 200 || len(cards) != 1 || cards[0]["did"] != "did:web:idp:agents:"+agentA || cards[0]["name"] != "a@acme.io" || cards[0]["identityProvider"] != "agentidp" {
			t.Errorf("GET /compliance/agent-cards = %d %s; want agent A's card only", code, raw)
		}
		if code, _, _ := h.call(t, svc, auditor, "/api/v1/compliance/agent-cards"); code != 403 {
			t.Errorf("GET /compliance/agent-cards without agents:read = %d; want 403", code)
		}
	})

	t.Run("controls public", func(t *testing.T) {
		code, hdr, raw := h.call(t, svc, nil, "/api/v1/compliance/controls")
		if code != 200 || hdr.Get("Cache-Control") != "public, max-age=60" {
			t.Fatalf("GET /compliance/controls = %d %v %s; want public 200", code, hdr, raw)
		}
		for _, id := range []string{"CC6.7", "CC7.2", "CC9.2", "ENC-REST", "ALERT"} {
			if !strings.Contains(raw, `"id":"`+id+`"`) {
				t.Errorf("GET /compliance/controls = %s; want control %s", raw, id)
			}
		}
	})

	t.Run("analytics", func(t *testing.T) {
		reader := reader(org)
		code, _, raw := h.call(t, svc, reader, "/api/v1/analytics/agents/activity")
		type heat struct {
			OrganizationID string `json:"organizationId"`
			Data           []struct {
				DayOfWeek, Hour int
				Count           int64
			} `json:"data"`
		}
		hm := decode[heat](t, raw)
		var total, cell int64
		for _, c := range hm.Data {
			total += c.Count
			if c.DayOfWeek == int(t0.Weekday()) && c.Hour == t0.Hour() {
				cell = c.Count
			}
		}
		if code != 200 || len(hm.Data) != 168 || total != 8 || cell == 0 {
			t.Errorf("GET /analytics/agents/activity = %d, %d cells, total %d, cell %d; want 168 cells, 8 events", code, len(hm.Data), total, cell)
		}
		code, _, raw = h.call(t, svc, reader, "/api/v1/analytics/agents")
		type usage struct {
			Month string `json:"month"`
			Data  []struct {
				AgentID      string    `json:"agentId"`
				TokensIssued int64     `json:"tokensIssued"`
				LastActiveAt time.Time `json:"lastActiveAt"`
			} `json:"data"`
		}
		u := decode[usage](t, raw)
		if code != 200 || u.Month != now.Format("2006-01") || len(u.Data) != 1 || u.Data[0].AgentID != agentA || u.Data[0].TokensIssued != 2 ||
			!u.Data[0].LastActiveAt.Equal(t0.Add(5*time.Second).Truncate(time.Microsecond)) {
			t.Errorf("GET /analytics/agents = %d %s; want agent A with 2 tokens", code, raw)
		}
		if code, _, _ := h.call(t, svc, auditor, "/api/v1/analytics/agents"); code != 403 {
			t.Errorf("GET /analytics/agents without analytics:read = %d; want 403", code)
		}
		if code, _, _ := h.call(t, svc, nil, "/api/v1/analytics/agents/activity"); code != 401 {
			t.Errorf("GET /analytics/agents/activity without context = %d; want 401", code)
		}
	})
}
