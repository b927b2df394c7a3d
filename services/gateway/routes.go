package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Upstream service names used by the default route table.
const (
	ServiceToken      = "token"
	ServiceTier       = "tier"
	ServiceAnalytics  = "analytics"
	ServiceWebhook    = "webhook"
	ServiceDID        = "did"
	ServiceFederation = "federation"
	ServiceBilling    = "billing"
)

// Route maps requests to an upstream service. A public route is matched
// exactly (path and, if given, method) and skips authentication, tier
// counting and policy; a non-public route is a path prefix matched on
// segment boundaries ("/api/v1/agents" matches "/api/v1/agents/x" but not
// "/api/v1/agentsx"). The longest matching path wins; on a tie an exact
// public route beats a prefix.
//
// GATEWAY_ROUTES takes a JSON array of routes, replacing the default table:
//
//	[{"path":"/oauth2/token","methods":["POST"],"public":true,"service":"token"},
//	 {"path":"/api/v1/agents","service":"token"}]
type Route struct {
	Path    string   `json:"path"`
	Methods []string `json:"methods,omitempty"` // public routes only; empty means any
	Public  bool     `json:"public,omitempty"`
	Service string   `json:"service"`
}

// DefaultRoutes is the route table of the services built so far.
func DefaultRoutes() []Route {
	post, get := []string{"POST"}, []string{"GET"}
	return []Route{
		{Path: "/oauth2/token", Methods: post, Public: true, Service: ServiceToken},
		{Path: "/api/v1/token", Methods: post, Public: true, Service: ServiceToken},
		{Path: "/.well-known/jwks.json", Methods: get, Public: true, Service: ServiceToken},
		{Path: "/.well-known/oauth-authorization-server", Methods: get, Public: true, Service: ServiceToken},
		{Path: "/.well-known/openid-configuration", Methods: get, Public: true, Service: ServiceToken},
		{Path: "/api/v1/agents", Service: ServiceToken},
		{Path: "/oauth2/introspect", Service: ServiceToken},
		{Path: "/oauth2/revoke", Service: ServiceToken},
		{Path: "/api/v1/token", Service: ServiceToken},        // introspect, revoke
		{Path: "/api/v1/oauth2/token", Service: ServiceToken}, // delegate, verify-delegation, delegations
		{Path: "/agent-info", Service: ServiceToken},
		{Path: "/api/v1/organizations", Service: ServiceTier},
		{Path: "/api/v1/tiers", Service: ServiceTier},
		{Path: "/api/v1/analytics", Service: ServiceAnalytics},
		{Path: "/api/v1/audit", Service: ServiceAnalytics},
		{Path: "/api/v1/compliance/controls", Methods: get, Public: true, Service: ServiceAnalytics},
		{Path: "/api/v1/compliance", Service: ServiceAnalytics},
		{Path: "/api/v1/webhooks", Service: ServiceWebhook},
		{Path: "/.well-known/did.json", Methods: get, Public: true, Service: ServiceDID},
		{Path: "/agents/*/did.json", Methods: get, Public: true, Service: ServiceDID},
		{Path: "/api/v1/agents/*/did", Methods: get, Public: true, Service: ServiceDID},
		{Path: "/api/v1/agents/*/did/card", Methods: get, Public: true, Service: ServiceDID},
		{Path: "/api/v1/agents/*/did", Service: ServiceDID}, // resolve, rotate
		{Path: "/api/v1/federation", Service: ServiceFederation},
		{Path: "/api/v1/keys", Service: ServiceToken},
		{Path: "/api/v1/billing/webhook", Methods: post, Public: true, Service: ServiceBilling},
		{Path: "/api/v1/billing", Service: ServiceBilling},
		{Path: "/api/v1/tiers/upgrade", Service: ServiceBilling},
	}
}

// ParseRoutes decodes a GATEWAY_ROUTES value.
func ParseRoutes(s string) ([]Route, error) {
	var routes []Route
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("GATEWAY_ROUTES: %w", err)
	}
	return routes, nil
}

// routeTable matches request paths against routes, longest first.
type routeTable struct {
	routes []*route
}

type route struct {
	Route
	counters routeCounters // labelled by the route's path, never the raw request path
	wildcard bool          // the path has "*" segments
	segments []string      // the path's segments, when wildcard
	proxy    http.Handler
	upstream prometheus.Observer
	// basePath is the upstream URL's path without its trailing slash: the
	// proxy forwards basePath + request path, and the internal context is
	// signed for that forwarded path.
	basePath string
}

func newRouteTable(routes []Route, upstreams map[string]string) (*routeTable, error) {
	t := &routeTable{}
	for i, r := range routes {
		if !strings.HasPrefix(r.Path, "/") {
			return nil, fmt.Errorf("route %d: path %q must start with /", i, r.Path)
		}
		if upstreams[r.Service] == "" {
			// The service is not deployed (no *_SERVICE_URL): its routes
			// are left out, so they answer 404 rather than 502.
			continue
		}
		r.Path = normalizePath(r.Path)
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
		}
		rt := &route{Route: r}
		rt.counters.label = r.Path
		if strings.Contains(r.Path, "*") {
			rt.wildcard = true
			rt.segments = strings.Split(strings.TrimPrefix(r.Path, "/"), "/")
		}
		t.routes = append(t.routes, rt)
	}
	slices.SortStableFunc(t.routes, func(a, b *route) int {
		if len(a.Path) != len(b.Path) {
			return len(b.Path) - len(a.Path)
		}
		if a.Public != b.Public {
			if a.Public {
				return -1
			}
			return 1
		}
		return 0
	})
	return t, nil
}

// match returns the route for method and a normalised path, or nil.
func (t *routeTable) match(method, path string) *route {
	for _, r := range t.routes {
		if r.Public {
			if (len(r.Methods) == 0 || slices.Contains(r.Methods, method)) && r.matches(path, false) {
				return r
			}
			continue
		}
		if r.matches(path, true) {
			return r
		}
	}
	return nil
}

// matches reports whether path matches the route's path: exactly, or as a
// prefix on segment boundaries when prefix is set. A "*" segment in the
// route matches any one non-empty segment (for routes such as
// /agents/*/did.json that another service owns beneath a shared prefix).
func (r *route) matches(path string, prefix bool) bool {
	if !r.wildcard {
		if !prefix {
			return path == r.Path
		}
		return strings.HasPrefix(path, r.Path) && (len(path) == len(r.Path) || path[len(r.Path)] == '/' || r.Path == "/")
	}
	rest := path
	for _, seg := range r.segments {
		if len(rest) == 0 || rest[0] != '/' {
			return false
		}
		rest = rest[1:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if end == 0 || (seg != "*" && rest[:end] != seg) {
			return false
		}
		rest = rest[end:]
	}
	return rest == "" || (prefix && rest[0] == '/')
}

// normalizePath drops trailing slashes ("/" stays "/").
func normalizePath(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}
