package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/authn"
)

// memoryUpstream answers every proxied request in memory, so the benchmark
// measures the gateway and not the loopback network.
type memoryUpstream struct{}

func (memoryUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get(authn.Header) == "" && !strings.HasPrefix(r.URL.Path, "/oauth2/token") {
		return &http.Response{StatusCode: 500, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	}
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: r, ContentLength: 2,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader("{}")),
	}, nil
}

func benchEnv(b *testing.B) *env {
	e := newEnv(b, envOptions{})
	for _, rt := range e.gw.routes.routes {
		rt.proxy.(*httputil.ReverseProxy).Transport = memoryUpstream{}
	}
	e.putOrg(b, "org-bench", "active", -1)
	return e
}

func BenchmarkGatewayAuthenticatedRequest(b *testing.B) {
	e := benchEnv(b)
	tok := e.issuer.token(b, claims("org-bench", "agents:read agents:write"))
	tokens := e.gw.tokens
	for _, bc := range []struct {
		name, method, path, auth string
		verifyEachTime           bool
	}{
		{"authenticated", "GET", "/api/v1/agents/0195f1a2-7c1e-7000-8000-000000000001", "Bearer " + tok, false},
		{"authenticated-verify-each-time", "GET", "/api/v1/agents/0195f1a2-7c1e-7000-8000-000000000001", "Bearer " + tok, true},
		{"public", "POST", "/oauth2/token", "", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e.gw.tokens = tokens
			if bc.verifyEachTime {
				e.gw.tokens = nil
			}
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(bc.method, bc.path, nil)
				if bc.auth != "" {
					req.Header.Set("Authorization", bc.auth)
				}
				w := httptest.NewRecorder()
				e.gw.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("Got(status) = %d %s; want 200", w.Code, w.Body)
				}
			}
		})
	}
}
