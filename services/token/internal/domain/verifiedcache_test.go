package domain

import (
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

func TestVerifiedCache(t *testing.T) {
	t.Parallel()
	k, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	withKey, err := jose.NewStaticKeySet(jose.JWKS{Keys: []jose.JWK{pub}})
	if err != nil {
		t.Fatal(err)
	}
	withoutKey, err := jose.NewStaticKeySet(jose.JWKS{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	c := newVerifiedCache(32)
	var claims AccessClaims
	claims.Subject, claims.ExpiresAt = "agent-1", now.Add(time.Minute).Unix()
	c.put("tok", k.KID, claims)
	tests := []struct {
		name string
		keys jose.KeySet
		at   time.Time
		want bool
	}{
		{"fresh, key published", withKey, now, true},
		{"key withdrawn", withoutKey, now, false},
		{"expired", withKey, now.Add(2 * time.Minute), false},
	}
	for _, tt := range tests {
		got, ok := c.get("tok", tt.keys, tt.at)
		if ok != tt.want || (ok && got.Subject != "agent-1") {
			t.Errorf("%s: get = %+v, %v; want hit=%v", tt.name, got.Subject, ok, tt.want)
		}
	}
	if _, ok := c.get("other", withKey, now); ok {
		t.Error("get(unknown token) hit; want a miss")
	}
	for i := range 1000 { // bounded: filling it never grows past its size
		c.put(string(rune('a'+i%26))+time.Duration(i).String(), k.KID, claims)
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].m)
	}
	if total > 32 {
		t.Errorf("cache holds %d entries; want at most 32", total)
	}
}
