package policies_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/policies"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

func prepare(t testing.TB) (rego.PreparedEvalQuery, map[string][]string) {
	t.Helper()
	module, err := fs.ReadFile(policies.FS, policies.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fs.ReadFile(policies.FS, policies.ScopesPath)
	if err != nil {
		t.Fatal(err)
	}
	var scopes map[string][]string
	if err := json.Unmarshal(raw, &scopes); err != nil {
		t.Fatalf("scopes.json: %v", err)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(`{"scopes":`+string(raw)+`}`), &data); err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(
		rego.Query(policies.Query),
		rego.Module(policies.PolicyPath, string(module)),
		rego.Store(inmem.NewFromObject(data)),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return pq, scopes
}

type decision struct {
	Allow  bool
	Reason string
}

func eval(t testing.TB, pq rego.PreparedEvalQuery, input map[string]any) decision {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("eval %v: %d results; want exactly 1", input, len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T; want object", rs[0].Expressions[0].Value)
	}
	allow, _ := m["allow"].(bool)
	reason, _ := m["reason"].(string)
	return decision{allow, reason}
}

func input(method, path string, scopes ...string) map[string]any {
	sc := make([]any, len(scopes))
	for i, s := range scopes {
		sc[i] = s
	}
	return map[string]any{"method": method, "path": path, "scopes": sc,
		"subject": "agent-1", "organization_id": "org-1", "actors": []any{}}
}

// concretePath replaces every ":param" segment with a sample value.
func concretePath(pattern string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = "0195f1a2-" + s[1:]
		}
	}
	return strings.Join(segs, "/")
}

var allScopes = []string{"agents:read", "agents:write", "tokens:read", "audit:read",
	"webhooks:read", "webhooks:write", "analytics:read", "admin:orgs"}

func TestEveryRoute(t *testing.T) {
	t.Parallel()
	pq, routes := prepare(t)
	if len(routes) == 0 {
		t.Fatal("scopes.json is empty")
	}
	for key, want := range routes {
		method, pattern, ok := strings.Cut(key, " ")
		if !ok || len(want) == 0 {
			t.Fatalf("bad route entry %q: %v", key, want)
		}
		path := concretePath(pattern)
		t.Run(key, func(t *testing.T) {
			for _, s := range want {
				if got := eval(t, pq, input(method, path, "unrelated:scope", s)); !got.Allow {
					t.Errorf("Got(%s %s, [%s]) = %+v; want allow", method, path, s, got)
				}
				if got := eval(t, pq, input(method, path+"/", s)); !got.Allow {
					t.Errorf("Got(%s %s/, [%s]) = %+v; want allow (trailing slash)", method, path, s, got)
				}
			}
			var others []string
			for _, s := range allScopes {
				if !contains(want, s) {
					others = append(others, s)
				}
			}
			got := eval(t, pq, input(method, path, others...))
			if got.Allow || !strings.Contains(got.Reason, "missing scope") || !strings.Contains(got.Reason, want[0]) {
				t.Errorf("Got(%s %s, %v) = %+v; want deny naming %s", method, path, others, got, want[0])
			}
			if got := eval(t, pq, input(method, path)); got.Allow {
				t.Errorf("Got(%s %s, no scopes) = %+v; want deny", method, path, got)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDecisions(t *testing.T) {
	t.Parallel()
	pq, _ := prepare(t)
	noOrg := input("GET", "/api/v1/agents", "agents:read")
	noOrg["organization_id"] = ""
	tests := []struct {
		name   string
		in     map[string]any
		allow  bool
		reason string
	}{
		{"unknown route", input("GET", "/api/v1/nothing-here", allScopes...), false, "no policy for route"},
		{"unknown method", input("PUT", "/api/v1/agents", allScopes...), false, "no policy for route"},
		{"too many segments", input("GET", "/api/v1/agents/a/b/c/d", allScopes...), false, "no policy for route"},
		{"empty parameter segment", input("GET", "/api/v1/agents//credentials", allScopes...), false, "no policy for route"},
		{"lowercase method", input("get", "/api/v1/agents", "agents:read"), true, "allowed"},
		{"missing scope named", input("POST", "/api/v1/agents", "agents:read"), false, "missing scope agents:write"},
		{"any of several", input("GET", "/api/v1/tiers/status", "analytics:read"), true, "allowed"},
		{"several missing", input("GET", "/api/v1/tiers/status"), false, "missing scope: one of "},
		{"no organization", noOrg, false, "no organization in token"},
		{"root", input("GET", "/", allScopes...), false, "no policy for route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eval(t, pq, tc.in)
			if got.Allow != tc.allow || !strings.HasPrefix(got.Reason, tc.reason) {
				t.Errorf("Got(%v %v) = %+v; want allow=%v reason %q", tc.in["method"], tc.in["path"], got, tc.allow, tc.reason)
			}
		})
	}
}

func BenchmarkPolicyEval(b *testing.B) {
	pq, _ := prepare(b)
	for _, bc := range []struct{ name, method, path string }{
		{"static", "GET", "/api/v1/agents"},
		{"pattern", "POST", "/api/v1/agents/0195f1a2-7c1e-7000-8000-000000000001/credentials/0195f1a2-7c1e-7000-8000-000000000002/rotate"},
	} {
		in := input(bc.method, bc.path, "agents:read", "agents:write")
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pq.Eval(ctx, rego.EvalInput(in)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRegoTests runs authz_test.rego (what `opa test .` would run).
func TestRegoTests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{policies.PolicyPath, "authz_test.rego"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	results, err := tester.Run(context.Background(), dir)
	if err != nil {
		t.Fatalf("opa test: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no rego tests ran")
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("rego %s: %s", r.Name, r.String())
		}
	}
}
