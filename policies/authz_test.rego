package agentidp.authz_test

import data.agentidp.authz

fixture := {
	"GET /api/v1/agents": ["agents:read"],
	"GET /api/v1/agents/:id": ["agents:read"],
	"POST /api/v1/agents/:id/credentials/:cid/rotate": ["agents:write"],
	"GET /api/v1/tiers/status": ["agents:read", "admin:orgs"],
}

req(method, path, scopes) := {
	"method": method, "path": path, "scopes": scopes,
	"subject": "agent-1", "organization_id": "org-1", "actors": [],
}

test_static_route_allowed if {
	d := authz.decision with input as req("GET", "/api/v1/agents", ["agents:read"]) with data.scopes as fixture
	d.allow
}

test_trailing_slash_normalised if {
	d := authz.decision with input as req("GET", "/api/v1/agents/", ["agents:read"]) with data.scopes as fixture
	d.allow
}

test_pattern_route_allowed if {
	d := authz.decision with input as req("POST", "/api/v1/agents/a1/credentials/c1/rotate", ["agents:write"]) with data.scopes as fixture
	d.allow
}

test_missing_scope_named if {
	d := authz.decision with input as req("POST", "/api/v1/agents/a1/credentials/c1/rotate", ["agents:read"]) with data.scopes as fixture
	not d.allow
	d.reason == "missing scope agents:write"
}

test_any_of_several if {
	d := authz.decision with input as req("GET", "/api/v1/tiers/status", ["admin:orgs"]) with data.scopes as fixture
	d.allow
}

test_unknown_route_denied if {
	d := authz.decision with input as req("DELETE", "/api/v1/agents", ["agents:read", "agents:write"]) with data.scopes as fixture
	not d.allow
	d.reason == "no policy for route"
}

test_parameter_needs_a_segment if {
	d := authz.decision with input as req("GET", "/api/v1/agents//", ["agents:read"]) with data.scopes as fixture
	d.allow # "/api/v1/agents//" is the list route after normalisation
	e := authz.decision with input as req("POST", "/api/v1/agents//credentials/c1/rotate", ["agents:write"]) with data.scopes as fixture
	not e.allow
}
