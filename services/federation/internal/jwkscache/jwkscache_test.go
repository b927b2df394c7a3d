package jwkscache_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/agentidp/agentidp/services/federation/internal/jwkscache"
	"github.com/agentidp/agentidp/services/federation/internal/partnertest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newCache(allow []netip.Prefix, clk *clock) *jwkscache.Cache {
	return jwkscache.New(jwkscache.Options{
		Client:      safehttp.NewClient(safehttp.Options{Allow: allow, Timeout: 5 * time.Second}),
		Refresh:     10 * time.Minute,
		MinInterval: 30 * time.Second,
		MaxBytes:    256 << 10,
		Now:         clk.Now,
	})
}

func TestLoadAndLookup(t *testing.T) {
	t.Parallel()
	idp := partnertest.Start(t)
	clk := &clock{now: time.Now()}
	c := newCache(loopback, clk)
	if err := c.Load(context.Background(), "p1", idp.JWKSURI); err != nil {
		t.Fatalf("Load = %v", err)
	}
	ks := c.KeySet(context.Background(), "p1", idp.JWKSURI)
	if k, ok := ks.Key(idp.Key(0).KID); !ok || k.Alg != jose.ES256 {
		t.Errorf("Key(known) = %v, %v; want the ES256 key", k, ok)
	}
	if got := idp.Requests(); got != 1 {
		t.Errorf("Got(requests) = %d; want 1 (lookups served from the cache)", got)
	}
}

func TestLoadRejectsUnusableSets(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{partnertest.ModeGarbage, partnertest.ModeEmpty, partnertest.ModeDown} {
		t.Run(mode, func(t *testing.T) {
			idp := partnertest.Start(t)
			idp.SetMode(mode)
			if err := newCache(loopback, &clock{now: time.Now()}).Load(context.Background(), "p", idp.JWKSURI); err == nil {
				t.Errorf("Load(%s) = nil; want an error", mode)
			}
		})
	}
}

func TestUnknownKidRefetchesOncePerInterval(t *testing.T) {
	t.Parallel()
	idp := partnertest.Start(t)
	clk := &clock{now: time.Now()}
	c := newCache(loopback, clk)
	ctx := context.Background()
	if err := c.Load(ctx, "p", idp.JWKSURI); err != nil {
		t.Fatal(err)
	}
	clk.now = clk.now.Add(31 * time.Second)
	rotated := idp.AddKey(t, jose.RS256)
	ks := c.KeySet(ctx, "p", idp.JWKSURI)
	if _, ok := ks.Key(rotated.KID); !ok {
		t.Fatalf("Key(rotated kid) = missing; want one refetch to pick it up")
	}
	if got := idp.Requests(); got != 2 {
		t.Errorf("Got(requests after rotation) = %d; want 2", got)
	}
	// A flood of random kids within the interval: no further fetch.
	for i := range 100 {
		if _, ok := ks.Key(fmt.Sprintf("random-%d", i)); ok {
			t.Fatalf("Key(random) = found; want unknown")
		}
	}
	if got := idp.Requests(); got != 2 {
		t.Errorf("Got(requests after 100 random kids) = %d; want 2 (at most one fetch per interval)", got)
	}
	// Next interval: exactly one more fetch for the whole flood.
	clk.now = clk.now.Add(31 * time.Second)
	for i := range 100 {
		ks.Key(fmt.Sprintf("again-%d", i))
	}
	if got := idp.Requests(); got != 3 {
		t.Errorf("Got(requests in the next interval) = %d; want 3", got)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	t.Parallel()
	idp := partnertest.Start(t)
	clk := &clock{now: time.Now()}
	c := newCache(loopback, clk)
	ks := c.KeySet(context.Background(), "p", idp.JWKSURI)
	done := make(chan struct{})
	for i := range 50 {
		go func() {
			ks.Key(fmt.Sprintf("k%d", i))
			done <- struct{}{}
		}()
	}
	for range 50 {
		<-done
	}
	if got := idp.Requests(); got != 1 {
		t.Errorf("Got(requests for 50 concurrent misses) = %d; want 1", got)
	}
}

func TestKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{partnertest.ModeDown, partnertest.ModeEmpty, partnertest.ModeGarbage} {
		t.Run(mode, func(t *testing.T) {
			idp := partnertest.Start(t)
			clk := &clock{now: time.Now()}
			c := newCache(loopback, clk)
			ctx := context.Background()
			if err := c.Load(ctx, "p", idp.JWKSURI); err != nil {
				t.Fatal(err)
			}
			idp.SetMode(mode)
			ks := c.KeySet(ctx, "p", idp.JWKSURI)
			clk.now = clk.now.Add(31 * time.Second)
			ks.Key("unknown") // forces a (failing) refetch
			clk.now = clk.now.Add(11 * time.Minute)
			if _, ok := ks.Key(idp.Key(0).KID); !ok {
				t.Errorf("Key(known) after %s refetches = missing; want the last good set kept", mode)
			}
			time.Sleep(50 * time.Millisecond) // let the background refresh finish
			if _, ok := ks.Key(idp.Key(0).KID); !ok {
				t.Errorf("Key(known) after background %s refresh = missing; want kept", mode)
			}
			if idp.Requests() < 2 {
				t.Errorf("Got(requests) = %d; want the refetch attempted", idp.Requests())
			}
		})
	}
}

func TestPrivateAddressRefusedWithoutConnecting(t *testing.T) {
	t.Parallel()
	idp := partnertest.Start(t)
	c := newCache(nil, &clock{now: time.Now()})
	if err := c.Load(context.Background(), "p", idp.JWKSURI); err == nil {
		t.Errorf("Load(loopback without allow-list) = nil; want refused")
	}
	if _, ok := c.KeySet(context.Background(), "p", idp.JWKSURI).Key(idp.Key(0).KID); ok {
		t.Errorf("Key = found; want nothing fetched")
	}
	if got := idp.Conns(); got != 0 {
		t.Errorf("Got(connections) = %d; want 0", got)
	}
}

func TestURIChangeStartsFresh(t *testing.T) {
	t.Parallel()
	a, b := partnertest.Start(t), partnertest.Start(t)
	c := newCache(loopback, &clock{now: time.Now()})
	ctx := context.Background()
	if err := c.Load(ctx, "p", a.JWKSURI); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.KeySet(ctx, "p", b.JWKSURI).Key(a.Key(0).KID); ok {
		t.Errorf("Key(old partner key) under the new URI = found; want the old set dropped")
	}
	c.Forget("p")
	if _, ok := c.KeySet(ctx, "p", a.JWKSURI).Key(a.Key(0).KID); !ok {
		t.Errorf("Key after Forget = missing; want a fresh fetch")
	}
}

// The fetch counter and the age gauge tell an operator that a partner's
// refreshes fail while its last good set is still served.
func TestFetchMetrics(t *testing.T) {
	t.Parallel()
	idp := partnertest.Start(t)
	clk := &clock{now: time.Now()}
	reg := prometheus.NewRegistry()
	c := jwkscache.New(jwkscache.Options{
		Client: safehttp.NewClient(safehttp.Options{Allow: loopback, Timeout: 5 * time.Second}),
		Now:    clk.Now, Registerer: reg,
	})
	ctx := context.Background()
	if err := c.Load(ctx, "p1", idp.JWKSURI); err != nil {
		t.Fatal(err)
	}
	idp.SetMode(partnertest.ModeDown)
	clk.now = clk.now.Add(31 * time.Second)
	if _, ok := c.KeySet(ctx, "p1", idp.JWKSURI).Key("unknown"); ok {
		t.Fatal("unknown kid found")
	}
	clk.now = clk.now.Add(time.Hour)
	want := `
# HELP agentidp_federation_jwks_age_seconds Age of the oldest partner JWK set held (0 with none): a partner whose refreshes keep failing makes it grow past the refresh interval.
# TYPE agentidp_federation_jwks_age_seconds gauge
agentidp_federation_jwks_age_seconds 3631
# HELP agentidp_federation_jwks_fetches_total Partner JWK set fetches by partner and outcome (ok, error: the last good set is kept, shared: taken from another replica's fetch).
# TYPE agentidp_federation_jwks_fetches_total counter
agentidp_federation_jwks_fetches_total{outcome="error",partner="p1"} 1
agentidp_federation_jwks_fetches_total{outcome="ok",partner="p1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// A deleted partner's series go away with it.
	c.Forget("p1")
	want = `
# HELP agentidp_federation_jwks_age_seconds Age of the oldest partner JWK set held (0 with none): a partner whose refreshes keep failing makes it grow past the refresh interval.
# TYPE agentidp_federation_jwks_age_seconds gauge
agentidp_federation_jwks_age_seconds 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
