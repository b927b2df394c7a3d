package policies_test

import (
	"context"
	"io/fs"
	"testing"

	"github.com/agentidp/agentidp/policies"
	"github.com/open-policy-agent/opa/v1/rego"
)

func prepareDelegation(t testing.TB) rego.PreparedEvalQuery {
	t.Helper()
	module, err := fs.ReadFile(policies.FS, policies.DelegationPath)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query(policies.DelegationQuery), rego.Module(policies.DelegationPath, string(module))).
		PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return pq
}

func TestDelegationDecisions(t *testing.T) {
	t.Parallel()
	pq := prepareDelegation(t)
	base := func(mod func(in map[string]any)) map[string]any {
		in := map[string]any{
			"subject":          map[string]any{"sub": "a", "organization_id": "org-1", "scopes": []string{"agents:read", "tokens:read"}, "chain_ids": []string{}},
			"actor":            map[string]any{"sub": "b", "organization_id": "org-1"},
			"chain":            []string{"a", "b"},
			"scopes":           []string{"agents:read", "tokens:read"},
			"requested_scopes": []string{"agents:read"},
			"audience":         []string{"agentidp"},
			"depth":            1,
			"max_depth":        3,
		}
		mod(in)
		return in
	}
	tests := []struct {
		name       string
		input      map[string]any
		wantAllow  bool
		wantReason string
	}{
		{"first hop", base(func(map[string]any) {}), true, "allowed"},
		{"at the maximum depth", base(func(in map[string]any) { in["depth"] = 3 }), true, "allowed"},
		{"beyond the maximum depth", base(func(in map[string]any) { in["depth"] = 4 }), false, "delegation depth 4 exceeds the maximum of 3"},
		{"other organisation", base(func(in map[string]any) {
			in["actor"] = map[string]any{"sub": "b", "organization_id": "org-2"}
		}), false, "subject and actor are in different organizations"},
		{"widening scope", base(func(in map[string]any) { in["requested_scopes"] = []string{"agents:write"} }), false, "scope agents:write is not held by the subject token"},
		{"no scope", base(func(in map[string]any) { in["requested_scopes"] = []string{} }), false, "no scope requested"},
		{"self", base(func(in map[string]any) {
			in["actor"] = map[string]any{"sub": "a", "organization_id": "org-1"}
			in["chain"] = []string{"a", "a"}
		}), false, "an agent cannot delegate to itself; the actor is already in the delegation chain"},
		{"cycle", base(func(in map[string]any) {
			in["subject"] = map[string]any{"sub": "b", "organization_id": "org-1", "scopes": []string{"agents:read"}}
			in["actor"] = map[string]any{"sub": "a", "organization_id": "org-1"}
			in["chain"] = []string{"a", "b", "a"}
			in["depth"] = 2
		}), false, "the actor is already in the delegation chain"},
		{"admin:orgs", base(func(in map[string]any) {
			in["scopes"] = []string{"admin:orgs"}
			in["requested_scopes"] = []string{"admin:orgs"}
		}), false, "admin:orgs cannot be delegated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eval(t, pq, tc.input)
			if got.Allow != tc.wantAllow || got.Reason != tc.wantReason {
				t.Errorf("Got(decision) = %+v; want allow=%v reason=%q", got, tc.wantAllow, tc.wantReason)
			}
		})
	}
}
