package authn

import "testing"

func TestMayManage(t *testing.T) {
	t.Parallel()
	id := func(scopes ...string) Identity { return Identity{Subject: "s", OrgID: "o", Scopes: scopes} }
	cases := []struct {
		name   string
		caller Identity
		target []string
		want   bool
	}{
		{"equal", id("agents:read", "agents:write"), []string{"agents:write", "agents:read"}, true},
		{"subset", id("agents:read", "agents:write"), []string{"agents:read"}, true},
		{"target holds more", id("agents:write"), []string{"agents:write", "tokens:read"}, false},
		{"target is operator", id("agents:read", "agents:write"), []string{"agents:read", "admin:orgs"}, false},
		{"operator manages everyone", id("admin:orgs"), []string{"agents:write", "billing:write", "admin:orgs"}, true},
		{"no scopes manage nothing", id(), []string{"agents:read"}, false},
	}
	for _, tc := range cases {
		if got := MayManage(tc.caller, tc.target); got != tc.want {
			t.Errorf("%s: MayManage(%v, %v) = %v; want %v", tc.name, tc.caller.Scopes, tc.target, got, tc.want)
		}
	}
}
