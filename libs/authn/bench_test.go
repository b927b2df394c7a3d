package authn

import (
	"testing"
	"time"
)

// benchIdentity is what the gateway signs for a typical call.
var benchIdentity = Identity{
	Subject: "0195f3c4-6a7b-7c8d-9e0f-1a2b3c4d5e6f", OrgID: "0195f3c4-0000-7000-8000-000000000001",
	ClientID: "0195f3c4-6a7b-7c8d-9e0f-1a2b3c4d5e6f", Scopes: []string{"agents:read", "agents:write", "tokens:read"},
	JTI: "0195f3c4-1111-7222-8333-444455556666", RequestID: "0195f3c4-aaaa-7bbb-8ccc-dddd00001111",
	Method: "GET", Path: "/api/v1/agents",
}

// BenchmarkSign is the gateway's per-request cost of the internal context.
func BenchmarkSign(b *testing.B) {
	c := benchCodec(b)
	id := benchIdentity
	id.ExpiresAt = time.Now().Add(time.Hour).Unix()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Sign(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is every service's per-request cost of the internal context.
func BenchmarkVerify(b *testing.B) {
	c := benchCodec(b)
	id := benchIdentity
	id.ExpiresAt = time.Now().Add(time.Hour).Unix()
	v, err := c.Sign(id)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(v, "GET", "/api/v1/agents"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCodec(b *testing.B) *Codec {
	b.Helper()
	c, err := NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	return c
}
