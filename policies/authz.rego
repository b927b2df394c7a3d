# Authorisation policy of the AgentIdP gateway.
#
# Input: {method, path, scopes[], subject, organization_id, actors[]}.
# Data:  data.scopes (data/scopes.json): "<METHOD> <path pattern>" -> scopes,
#        any one of which allows the route. A pattern segment ":name"
#        matches exactly one non-empty path segment.
#
# Output: decision := {"allow": bool, "reason": string}. A route missing
# from data.scopes is denied, so a new endpoint is closed until it is
# listed.
package agentidp.authz

default decision := {"allow": false, "reason": "no policy for route"}

decision := {"allow": true, "reason": "allowed"} if allowed

decision := {"allow": false, "reason": "no organization in token"} if {
	route_scopes
	not has_org
}

decision := {"allow": false, "reason": missing_reason} if {
	has_org
	route_scopes
	not allowed
}

has_org if input.organization_id != ""

allowed if {
	has_org
	some s in route_scopes
	s in input.scopes
}

# Trailing slashes are not significant: "/api/v1/agents/" is "/api/v1/agents".
path := p if {
	p := trim_right(input.path, "/")
	p != ""
} else := "/"

method := upper(input.method)

parts := split(path, "/")

# Static routes are one map lookup; only when none matches are the
# parameterised patterns of the same method and segment count scanned.
route_scopes := s if {
	s := data.scopes[concat(" ", [method, path])]
} else := s if {
	found := {x |
		some key, scopes in data.scopes
		startswith(key, method_prefix)
		strings.count(key, "/") == slashes
		contains(key, ":")
		pattern_matches(substring(key, count(method_prefix), -1))
		some x in scopes
	}
	count(found) > 0
	s := sort(found)
}

method_prefix := concat("", [method, " "])

slashes := strings.count(path, "/")

pattern_matches(pattern) if {
	segs := split(pattern, "/")
	every i, seg in segs {
		segment_matches(seg, parts[i])
	}
}

segment_matches(seg, actual) if seg == actual

segment_matches(seg, actual) if {
	startswith(seg, ":")
	actual != ""
}

missing_reason := sprintf("missing scope %s", [route_scopes[0]]) if {
	count(route_scopes) == 1
} else := sprintf("missing scope: one of %s", [concat(", ", route_scopes)])
