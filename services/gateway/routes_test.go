package gateway

import "testing"

func TestRouteTableMatch(t *testing.T) {
	t.Parallel()
	up := map[string]string{
		ServiceToken: "http://token", ServiceTier: "http://tier", ServiceAnalytics: "http://analytics",
		ServiceDID: "http://did", ServiceWebhook: "http://webhook", ServiceFederation: "http://federation", ServiceBilling: "http://billing",
	}
	table, err := newRouteTable(DefaultRoutes(), up)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		wantService  string
		wantPublic   bool
	}{
		{"POST", "/oauth2/token", ServiceToken, true},
		{"GET", "/api/v1/agents", ServiceToken, false},
		{"GET", "/api/v1/agents/a1/credentials", ServiceToken, false},
		{"GET", "/api/v1/agents/a1/did", ServiceDID, true},
		{"GET", "/api/v1/agents/a1/did/card", ServiceDID, true},
		{"GET", "/api/v1/agents/a1/did/resolve", ServiceDID, false},
		{"POST", "/api/v1/agents/a1/did/rotate", ServiceDID, false},
		{"POST", "/api/v1/agents/a1/did", ServiceDID, false},
		{"GET", "/agents/a1/did.json", ServiceDID, true},
		{"GET", "/.well-known/did.json", ServiceDID, true},
		{"GET", "/api/v1/webhooks/wh_1/deliveries", ServiceWebhook, false},
		{"POST", "/api/v1/federation/verify", ServiceFederation, false},
		{"GET", "/api/v1/organizations", ServiceTier, false},
		{"GET", "/api/v1/tiers/status", ServiceTier, false},
		{"GET", "/api/v1/audit/verify", ServiceAnalytics, false},
		{"GET", "/api/v1/compliance/controls", ServiceAnalytics, true},
		{"GET", "/api/v1/compliance/report", ServiceAnalytics, false},
		{"POST", "/api/v1/tiers/upgrade", ServiceBilling, false},
		{"POST", "/api/v1/billing/webhook", ServiceBilling, true},
		{"POST", "/api/v1/billing/checkout", ServiceBilling, false},
		{"POST", "/api/v1/keys/rotate", ServiceToken, false},
		{"GET", "/api/v1/agentsx", "", false},
		{"GET", "/agents//did.json", "", false},
		{"GET", "/agents/a1/did.json/x", "", false},
		{"GET", "/nowhere", "", false},
	}
	for _, tt := range tests {
		r := table.match(tt.method, tt.path)
		switch {
		case tt.wantService == "" && r != nil:
			t.Errorf("match(%s %s) = %s; want no route", tt.method, tt.path, r.Path)
		case tt.wantService != "" && r == nil:
			t.Errorf("match(%s %s) = nil; want %s", tt.method, tt.path, tt.wantService)
		case r != nil && (r.Service != tt.wantService || r.Public != tt.wantPublic):
			t.Errorf("match(%s %s) = %s public=%v; want %s public=%v", tt.method, tt.path, r.Service, r.Public, tt.wantService, tt.wantPublic)
		}
	}
	// A service that is not deployed has no routes: 404, not 502.
	partial, err := newRouteTable(DefaultRoutes(), map[string]string{ServiceToken: "http://token"})
	if err != nil {
		t.Fatal(err)
	}
	if r := partial.match("GET", "/api/v1/webhooks"); r != nil {
		t.Errorf("match(/api/v1/webhooks) without a webhook URL = %s; want no route", r.Path)
	}
}
