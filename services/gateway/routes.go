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
	ServiceToken     = "token"
	ServiceTier      = "tier"
	ServiceAnalytics = "analytics"
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
		{Path: "/api/v1/token", Service: ServiceToken}, // introspect, revoke
		{Path: "/agent-info", Service: ServiceToken},
		{Path: "/api/v1/organizations", Service: ServiceTier},
		{Path: "/api/v1/tiers", Service: ServiceTier},
		{Path: "/api/v1/analytics", Service: ServiceAnalytics},
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
	proxy    http.Handler
	upstream prometheus.Observer
}

func newRouteTable(routes []Route, upstreams map[string]string) (*routeTable, error) {
	t := &routeTable{}
	for i, r := range routes {
		if !strings.HasPrefix(r.Path, "/") {
			return nil, fmt.Errorf("route %d: path %q must start with /", i, r.Path)
		}
		if upstreams[r.Service] == "" {
			return nil, fmt.Errorf("route %d (%s): no URL for service %q", i, r.Path, r.Service)
		}
		r.Path = normalizePath(r.Path)
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
		}
		rt := &route{Route: r}
		rt.counters.label = r.Path
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
			if path == r.Path && (len(r.Methods) == 0 || slices.Contains(r.Methods, method)) {
				return r
			}
			continue
		}
		if strings.HasPrefix(path, r.Path) && (len(path) == len(r.Path) || path[len(r.Path)] == '/' || r.Path == "/") {
			return r
		}
	}
	return nil
}

// normalizePath drops trailing slashes ("/" stays "/").
func normalizePath(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}
