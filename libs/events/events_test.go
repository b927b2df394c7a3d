package events

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestSubjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ  Type
		want string
	}{
		{TokenIssued, "agentidp.token.issued.v1"},
		{OrgMemberAdded, "agentidp.org.member_added.v1"},
		{WebhookDeliveryFailed, "agentidp.webhook.delivery.failed.v1"},
	}
	for _, tt := range tests {
		if got := tt.typ.Subject(); got != tt.want {
			t.Errorf("Subject(%q) = %q; want %q", tt.typ, got, tt.want)
		}
		back, err := TypeFromSubject(tt.want)
		if err != nil || back != tt.typ {
			t.Errorf("TypeFromSubject(%q) = %q, %v; want %q", tt.want, back, err, tt.typ)
		}
	}
	for _, bad := range []string{"other.token.issued.v1", "agentidp.token.issued", "agentidp..v1"} {
		if _, err := TypeFromSubject(bad); err == nil {
			t.Errorf("TypeFromSubject(%q) succeeded; want an error", bad)
		}
	}
	seen := map[Type]bool{}
	for _, typ := range Types {
		if seen[typ] {
			t.Errorf("Types lists %q twice", typ)
		}
		seen[typ] = true
		if !strings.HasPrefix(typ.Subject(), SubjectPrefix+".") {
			t.Errorf("Subject(%q) = %q; outside the stream", typ, typ.Subject())
		}
	}
}

func TestNewDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	e, err := New(AgentCreated, "token", "org-1", "agent-1", AgentData{AgentID: "agent-1", Status: "active"})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.ID) != 36 || e.ID[14] != '7' {
		t.Errorf("New().ID = %q; want a UUIDv7", e.ID)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var d AgentData
	if err := got.DecodeData(&d); err != nil || d.AgentID != "agent-1" || got.OrgID != "org-1" || got.Type != AgentCreated {
		t.Errorf("round trip = %+v, %+v, %v; want the original", got, d, err)
	}
	if _, err := Decode([]byte(`{"type":"x"}`)); err == nil {
		t.Error("Decode(no id) succeeded; want an error")
	}
}

// TestGolden pins the wire shape of the envelope and each payload: within a
// version, fields may be added but never renamed or removed.
func TestGolden(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := at.Add(time.Hour)
	samples := map[string]any{
		"agent":       AgentData{AgentID: "a1", OrganizationID: "o1", Email: "bot@example.com", AgentType: "custom", Status: "active", Scopes: []string{"agents:read"}, At: at},
		"credential":  CredentialData{CredentialID: "c1", AgentID: "a1", Status: "active", ExpiresAt: &exp, At: at},
		"token":       TokenIssuedData{JTI: "j1", ClientID: "a1", CredentialID: "c1", Scope: "agents:read", GrantType: "client_credentials", ExpiresAt: exp, IssuedAt: at},
		"auth_failed": AuthFailedData{ClientID: "a1", Reason: "invalid_client", Method: "client_secret_basic", SourceAddress: "203.0.113.7", At: at},
		"org":         OrgData{OrganizationID: "o1", Name: "Acme", Slug: "acme", PlanTier: "free", Status: "active", Limits: Limits{10, 1000, 1000}, UpdatedAt: at},
		"org_member":  OrgMemberData{OrganizationID: "o1", AgentID: "a1", Role: "admin", At: at},
		"tier":        TierChangedData{OrganizationID: "o1", From: "free", To: "pro", Limits: Limits{100, 50000, 50000}, At: at},
		"envelope": Envelope{SpecVersion: SpecVersion, ID: "0192f0c4-0000-7000-8000-000000000000", Type: TokenIssued, Source: "token",
			Time: at, OrgID: "o1", Subject: "a1", DataContentType: "application/json", Data: json.RawMessage(`{"jti":"j1"}`)},
	}
	for name, v := range samples {
		got, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name+".golden.json")
		if *update {
			if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read golden %s: %v (run go test -update)", path, err)
		}
		if strings.TrimSpace(string(want)) != string(got) {
			t.Errorf("%s shape changed:\n got: %s\nwant: %s", name, got, want)
		}
	}
}
