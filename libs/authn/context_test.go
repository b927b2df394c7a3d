package authn

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func testCodec(t *testing.T, now time.Time) *Codec {
	t.Helper()
	c, err := NewCodec([]byte(strings.Repeat("k", MinKeyLen)))
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c.WithClock(func() time.Time { return now })
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, now)
	id := Identity{Subject: "agent-1", OrgID: "org-1", Scopes: []string{"agents:read"}, JTI: "j1", ExpiresAt: now.Add(time.Hour).Unix(),
		Method: "GET", Path: "/api/v1/agents"}
	v, err := c.Sign(id)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	got, err := c.Verify(v, "GET", "/api/v1/agents")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "agent-1" || got.OrgID != "org-1" || !got.HasScope("agents:read") || got.HasScope("admin:orgs") {
		t.Errorf("Verify() = %+v; want the signed identity", got)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, now)
	good := Identity{Subject: "a", OrgID: "o", ExpiresAt: now.Add(time.Hour).Unix(), Method: "GET", Path: "/p"}
	signed, _ := c.Sign(good)
	other, _ := NewCodec([]byte(strings.Repeat("x", MinKeyLen)))
	foreign, _ := other.WithClock(func() time.Time { return now }).Sign(good)
	expiredTok, _ := c.Sign(Identity{Subject: "a", OrgID: "o", ExpiresAt: now.Add(-time.Second).Unix(), Method: "GET", Path: "/p"})
	stale, _ := c.WithClock(func() time.Time { return now.Add(-2 * MaxAge) }).Sign(good)
	noOrg, _ := c.Sign(Identity{Subject: "a", ExpiresAt: now.Add(time.Hour).Unix(), Method: "GET", Path: "/p"})
	payload, mac, _ := strings.Cut(signed, ".")
	tampered := strings.ToUpper(payload[:1]) + payload[1:] + "." + mac
	if tampered == signed {
		tampered = "A" + payload[1:] + "." + mac
	}
	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"empty", "", ErrMissing},
		{"no dot", "abc", ErrInvalid},
		{"foreign key", foreign, ErrInvalid},
		{"tampered payload", tampered, ErrInvalid},
		{"expired token", expiredTok, ErrExpired},
		{"stale signature", stale, ErrExpired},
		{"no organisation", noOrg, ErrInvalid},
		{"too long", strings.Repeat("a", 9000) + "." + mac, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Verify(tt.value, "GET", "/p")
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify(%.20q) error = %v; want %v", tt.value, err, tt.want)
			}
		})
	}
}

// TestAttackInternalContextReplayedOnAnotherRoute: a context captured from
// one call (say GET /api/v1/agents) is refused on any other method or path,
// including the same path with a trailing slash or another service's route.
func TestAttackInternalContextReplayedOnAnotherRoute(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, now)
	v, err := c.Sign(Identity{Subject: "a", OrgID: "o", Scopes: []string{"agents:write"}, ExpiresAt: now.Add(time.Hour).Unix(),
		Method: "GET", Path: "/api/v1/agents"})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := c.Verify(v, "GET", "/api/v1/agents"); err != nil {
		t.Fatalf("Verify(same route) error = %v; want nil", err)
	}
	for _, r := range []struct{ method, path string }{
		{"DELETE", "/api/v1/agents/x"},
		{"GET", "/api/v1/agents/x"},
		{"POST", "/api/v1/agents"},
		{"GET", "/api/v1/agents/"},
		{"get", "/api/v1/agents"},
		{"GET", "/api/v1/webhooks"},
		{"POST", "/api/v1/organizations"},
	} {
		if _, err := c.Verify(v, r.method, r.path); !errors.Is(err, ErrWrongRoute) {
			t.Errorf("Verify(%s %s) error = %v; want %v", r.method, r.path, err, ErrWrongRoute)
		}
	}
}

// TestSignRequiresRoute: a context that names no route cannot be made, so
// no caller can mint an unbound one by forgetting the fields.
func TestSignRequiresRoute(t *testing.T) {
	t.Parallel()
	c := testCodec(t, time.Unix(1_800_000_000, 0))
	for _, id := range []Identity{
		{Subject: "a", OrgID: "o", ExpiresAt: 1_900_000_000},
		{Subject: "a", OrgID: "o", ExpiresAt: 1_900_000_000, Method: "GET"},
		{Subject: "a", OrgID: "o", ExpiresAt: 1_900_000_000, Path: "/p"},
	} {
		if _, err := c.Sign(id); err == nil {
			t.Errorf("Sign(method %q, path %q) error = nil; want an error", id.Method, id.Path)
		}
	}
}

// TestClientAddrRejects: only a fresh address signed with the cluster key
// passes; a client cannot make one up or reuse another key's.
func TestClientAddrRejects(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, now)
	good := c.SignClientAddr("203.0.113.7")
	if got, err := c.VerifyClientAddr(good); err != nil || got != "203.0.113.7" {
		t.Fatalf("VerifyClientAddr(good) = %q, %v; want 203.0.113.7", got, err)
	}
	if got, err := c.VerifyClientAddr(c.SignClientAddr("2001:db8::1")); err != nil || got != "2001:db8::1" {
		t.Fatalf("VerifyClientAddr(IPv6) = %q, %v; want 2001:db8::1", got, err)
	}
	other, _ := NewCodec([]byte(strings.Repeat("x", MinKeyLen)))
	ctx, _ := c.Sign(Identity{Subject: "a", OrgID: "o", ExpiresAt: now.Add(time.Hour).Unix(), Method: "GET", Path: "/p"})
	for name, v := range map[string]string{
		"empty":       "",
		"unsigned":    "203.0.113.8",
		"foreign key": other.WithClock(func() time.Time { return now }).SignClientAddr("203.0.113.8"),
		"tampered":    strings.Replace(good, "203.0.113.7", "203.0.113.8", 1),
		"stale":       c.WithClock(func() time.Time { return now.Add(-2 * MaxAge) }).SignClientAddr("203.0.113.7"),
		"context mac": ctx,
		"too long":    strings.Repeat("a", 300),
	} {
		if got, err := c.VerifyClientAddr(v); err == nil {
			t.Errorf("VerifyClientAddr(%s) = %q, nil; want an error", name, got)
		}
	}
}

func TestShortKey(t *testing.T) {
	t.Parallel()
	if _, err := NewCodec([]byte("short")); !errors.Is(err, ErrShortKey) {
		t.Errorf("NewCodec(short) error = %v; want %v", err, ErrShortKey)
	}
}
