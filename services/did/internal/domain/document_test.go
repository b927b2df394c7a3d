package domain

import (
	"fmt"
	"testing"
	"time"
)

func TestDocumentRetiredKeyTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recent, old := now.Add(-time.Hour), now.Add(-25*time.Hour)
	keys := []Key{
		{KID: "gone", Status: KeyRetired, RetiredAt: &old},
		{KID: "recent", Status: KeyRetired, RetiredAt: &recent},
		{KID: "active", Status: KeyActive},
	}
	d := document("did:web:h:agents:a", "did:web:h", keys, nil, nil, now, 24*time.Hour)
	var listed []string
	for _, vm := range d.VerificationMethod {
		listed = append(listed, vm.ID)
	}
	want := []string{"did:web:h:agents:a#recent", "did:web:h:agents:a#active"}
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Errorf("Got(verificationMethod ids) = %v; want %v", listed, want)
	}
	if fmt.Sprint(d.Authentication) != "[did:web:h:agents:a#active]" || fmt.Sprint(d.AssertionMethod) != "[did:web:h:agents:a#active]" {
		t.Errorf("Got(authentication, assertionMethod) = %v, %v; want only the active key", d.Authentication, d.AssertionMethod)
	}
}

func TestWebHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base, want string
		valid            bool
	}{
		{"port encoded", "http://localhost:8080", "localhost%3A8080", true},
		{"plain host", "https://IdP.Example.com/", "idp.example.com", true},
	}
	for _, tc := range tests {
		got, err := WebHost(tc.base)
		if err != nil || got != tc.want || ValidWebHost(got) != tc.valid {
			t.Errorf("%s: WebHost(%q) = %q, %v; want %q", tc.name, tc.base, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a/b", "host%3A", "host%3Aabc", "bad host", "h..x"} {
		if ValidWebHost(bad) {
			t.Errorf("ValidWebHost(%q) = true; want false", bad)
		}
	}
}

func TestDocCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newDocCache(3, time.Minute, func() time.Time { return now })
	for i := range 10 {
		c.put(fmt.Sprint(i), View{})
	}
	if c.len() != 3 {
		t.Errorf("Got(len) = %d; want 3 (bounded)", c.len())
	}
	c.put("x", View{})
	now = now.Add(2 * time.Minute)
	if _, ok := c.get("x"); ok {
		t.Errorf("get(expired) = ok; want a miss after the TTL")
	}
}

func TestDocumentAgentHeldKeys(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keys := []Key{{KID: "idp", Status: KeyActive}}
	held := []AgentHeldKey{{KID: "mine"}, {KID: "idp"}} // "idp" collides with the custodial kid
	d := document("did:web:h:agents:a", "did:web:h", keys, held, nil, now, time.Hour)
	var listed []string
	for _, vm := range d.VerificationMethod {
		listed = append(listed, vm.ID+"|"+vm.Controller)
	}
	if want := "[did:web:h:agents:a#idp|did:web:h:agents:a did:web:h:agents:a#mine|did:web:h:agents:a]"; fmt.Sprint(listed) != want {
		t.Errorf("Got(verificationMethod) = %v; want %s (custodial kept on a kid collision)", listed, want)
	}
	if fmt.Sprint(d.Authentication) != "[did:web:h:agents:a#idp did:web:h:agents:a#mine]" || fmt.Sprint(d.AssertionMethod) != "[did:web:h:agents:a#idp]" {
		t.Errorf("Got(authentication, assertionMethod) = %v, %v; want the held key in authentication only", d.Authentication, d.AssertionMethod)
	}
}
