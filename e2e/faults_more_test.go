package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// More scenarios of the fault suite (issue 13; docs/operations.md, "What
// happens when…"): Redis cut under three gateways, a gateway cut from every
// NATS server, readiness through Redis and NATS outages. The harness is in
// faults_cluster_test.go.

// proxiedRedis returns a tcpProxy to the test Redis and the Redis URL
// through it.
func proxiedRedis(t *testing.T) (*tcpProxy, string) {
	t.Helper()
	u, err := url.Parse(testkit.RedisURL(t))
	if err != nil {
		t.Fatalf("Redis URL: %v", err)
	}
	p := newTCPProxy(t, u.Host)
	u.Host = p.Addr()
	return p, u.String()
}

// proxiedNATS returns one tcpProxy per server of the cluster and the
// NATS_URL through them.
func proxiedNATS(t *testing.T, c *natsCluster) ([]*tcpProxy, string) {
	t.Helper()
	var ps []*tcpProxy
	var urls []string
	for _, n := range c.nodes {
		p := newTCPProxy(t, "127.0.0.1:"+n.port)
		ps = append(ps, p)
		urls = append(urls, "nats://"+p.Addr())
	}
	return ps, strings.Join(urls, ",")
}

// TestFaultGatewayCutFromNATSRefusesRevokedToken: in the cluster suite,
// gateway-1 reaches each of the three NATS servers through its own proxy;
// the proxies are cut (every NATS path of that gateway); a token is revoked
// through gateway-0. It requires: gateway-1 refuses the revoked token (401)
// within GATEWAY_REVOCATION_MAX_STALENESS (2 s) + 1 s of the revoke answer,
// and still serves a valid token (checked with the token service); with the
// token service unreachable too (its load balancer cut) it answers 503, never
// 200.
func TestFaultGatewayCutFromNATSRefusesRevokedToken(t *testing.T) {
	cluster := startNATSCluster(t, 3)
	proxies, natsURL := proxiedNATS(t, cluster)
	fs := startFaultStack(t, faultOptions{NATS: cluster, ReplicaExtra: map[string][]string{"gateway-1": {"NATS_URL=" + natsURL}}})
	ok := newClient(t, "http://"+fs.svcs["gateway"][0].http)
	cut := newClient(t, "http://"+fs.svcs["gateway"][1].http)

	admin, r := ok.token(fs.adminID, fs.adminSecret, "agents:read agents:write tokens:read")
	ok.mustStatus(r, http.StatusOK, "admin token")
	victim, r := ok.token(fs.adminID, fs.adminSecret, "agents:read")
	ok.mustStatus(r, http.StatusOK, "victim token")
	for _, c := range []*client{ok, cut} {
		c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", victim, nil), http.StatusOK, "before the cut")
	}

	var accepted int64
	for _, p := range proxies {
		accepted += p.Accepted()
		p.Cut()
	}
	if accepted == 0 {
		t.Fatal("gateway-1 made no NATS connection through the proxies: the cut would cut nothing")
	}
	req := mustRequest(t, http.MethodPost, ok.base+"/oauth2/revoke", map[string]string{
		"Authorization": "Bearer " + admin, "Content-Type": "application/x-www-form-urlencoded"})
	req.Body = ioNopCloser(url.Values{"token": {victim}}.Encode())
	r = ok.send(req)
	revokedAt := time.Now()
	ok.mustStatus(r, http.StatusOK, "revoke")

	const bound = 2*time.Second + time.Second
	var refusedAfter time.Duration
	for {
		st := cut.do(http.MethodGet, "/api/v1/agents", victim, nil).Status
		if st == http.StatusUnauthorized {
			refusedAfter = time.Since(revokedAt)
			break
		}
		if time.Since(revokedAt) > bound {
			t.Fatalf("gateway cut from every NATS server still answers %d for the revoked token %v after the revoke answer; want 401 within %v",
				st, time.Since(revokedAt), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("gateway cut from NATS refused the revoked token %v after the revoke answer (bound %v)", refusedAfter.Round(time.Millisecond), bound)
	ok.mustStatus(ok.do(http.MethodGet, "/api/v1/agents", victim, nil), http.StatusUnauthorized, "connected gateway, revoked token")
	cut.mustStatus(cut.do(http.MethodGet, "/api/v1/agents", admin, nil), http.StatusOK, "cut gateway, valid token")

	// The token service unreachable too: nothing is accepted at the cut
	// gateway.
	fs.lb["token"].Cut()
	var statuses []int
	eventually(t, 10*time.Second, func() bool {
		r := cut.do(http.MethodGet, "/api/v1/agents", admin, nil)
		if r.Status == http.StatusOK {
			return false
		}
		statuses = append(statuses, r.Status)
		return r.Status == http.StatusServiceUnavailable
	}, func() string {
		return fmt.Sprintf("cut gateway, token service unreachable: answers %v; want 503", statuses)
	})
	for range 5 {
		r := cut.do(http.MethodGet, "/api/v1/agents", admin, nil)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("cut gateway, token service unreachable = %d (Retry-After %q); want 503 with Retry-After", r.Status, r.Header.Get("Retry-After"))
		}
	}
	fs.lb["token"].Restore()
	for _, p := range proxies {
		p.Restore()
	}
}

// healthReport is the part of /health/detailed the scenarios read.
type healthReport struct {
	Status       string `json:"status"`
	Dependencies map[string]struct {
		State string `json:"state"`
	} `json:"dependencies"`
}

// health returns the /health/ready status and the /health/detailed report
// of a replica.
func health(hc *http.Client, sv *service) (ready int, rep healthReport, err error) {
	resp, err := hc.Get("http://" + sv.internal + "/health/ready")
	if err != nil {
		return 0, rep, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	ready = resp.StatusCode
	resp, err = hc.Get("http://" + sv.internal + "/health/detailed")
	if err != nil {
		return ready, rep, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&rep)
	return ready, rep, err
}

// TestFaultReadinessThroughNATSAndRedisOutages: every service reaches Redis
// and the three NATS servers through the suite's proxies. While Redis is
// cut, and then while every NATS path is cut, every replica's /health/ready
// stays 200 and its /health/detailed says "degraded" with the dependency
// ("cache", "nats") unreachable (Redis only for the services that use it);
// token issuance keeps working; after each restore every /health/detailed
// is "ok" again.
func TestFaultReadinessThroughNATSAndRedisOutages(t *testing.T) {
	cluster := startNATSCluster(t, 3)
	natsProxies, natsURL := proxiedNATS(t, cluster)
	redisProxy, redisURL := proxiedRedis(t)
	viaProxy := []string{"REDIS_URL=" + redisURL, "NATS_URL=" + natsURL}
	fs := startFaultStack(t, faultOptions{NATS: cluster,
		Extra: map[string][]string{"token": viaProxy, "tier": viaProxy, "analytics": viaProxy, "gateway": viaProxy}})
	c := newClient(t, fs.gateway)
	hc := &http.Client{Timeout: 5 * time.Second}

	// every requires each replica of every service to be ready and, once
	// the probes have seen the fault, its detailed report to satisfy want.
	every := func(what string, want func(name string, rep healthReport) bool) {
		t.Helper()
		for _, name := range faultServices {
			for _, sv := range fs.svcs[name] {
				var (
					ready int
					rep   healthReport
					err   error
				)
				eventually(t, 20*time.Second, func() bool {
					ready, rep, err = health(hc, sv)
					if err == nil && ready != http.StatusOK {
						t.Fatalf("%s: %s: /health/ready = %d; want 200", what, sv.name, ready)
					}
					return err == nil && want(name, rep)
				}, func() string {
					return fmt.Sprintf("%s: %s: ready %d, detailed %+v (err %v)", what, sv.name, ready, rep, err)
				})
			}
		}
		t.Logf("%s: every replica ready (200), /health/detailed as required", what)
	}
	every("before", func(_ string, rep healthReport) bool { return rep.Status == "ok" })

	redisProxy.Cut()
	every("Redis cut", func(_ string, rep healthReport) bool {
		d, uses := rep.Dependencies["cache"]
		return uses && rep.Status == "degraded" && d.State == "unreachable"
	})
	_, r := c.token(fs.adminID, fs.adminSecret, "agents:read")
	c.mustStatus(r, http.StatusOK, "token while Redis is cut")
	redisProxy.Restore()
	every("Redis back", func(_ string, rep healthReport) bool { return rep.Status == "ok" })

	for _, p := range natsProxies {
		p.Cut()
	}
	every("NATS cut", func(_ string, rep healthReport) bool {
		return rep.Status == "degraded" && rep.Dependencies["nats"].State == "unreachable"
	})
	_, r = c.token(fs.adminID, fs.adminSecret, "agents:read")
	c.mustStatus(r, http.StatusOK, "token while NATS is cut (outbox)")
	for _, p := range natsProxies {
		p.Restore()
	}
	every("NATS back", func(_ string, rep healthReport) bool { return rep.Status == "ok" })
}

// TestFaultRedisCutWithThreeGateways: three gateway replicas, every
// service reaching Redis through the suite's proxy; a free organisation
// (1,000 calls a day) calls the three gateways round robin; Redis is cut
// after 500 admitted calls and the calls go on until every gateway refuses
// (429) its last calls; then Redis is restored. It requires: total
// admitted ≤ limit + the documented bound (limit / 10); no answer other
// than 200 or 429; after Redis returns the shared counter equals the
// calls admitted exactly, and every gateway refuses the next call.
func TestFaultRedisCutWithThreeGateways(t *testing.T) {
	redisProxy, redisURL := proxiedRedis(t)
	viaProxy := []string{"REDIS_URL=" + redisURL}
	fs := startFaultStack(t, faultOptions{
		Replicas: map[string]int{"gateway": 3},
		Extra:    map[string][]string{"token": viaProxy, "tier": viaProxy, "analytics": viaProxy, "gateway": viaProxy},
	})
	c := newClient(t, fs.gateway)
	orgID, tok := freeOrgAgent(t, c, fs.adminID, fs.adminSecret)
	var gateways []string
	for _, sv := range fs.svcs["gateway"] {
		gateways = append(gateways, "http://"+sv.http)
	}

	// Each gateway counts the live replicas at its heartbeat: before the
	// cut, every one must have beaten once since all three were there
	// (docs: a replica started less than one heartbeat ago is not counted
	// by the others yet).
	waitGatewaysCounted(t, fs.nats, len(gateways))

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var (
		admitted, refused, other atomic.Int64
		next                     atomic.Int64
		mu                       sync.Mutex
		lastStatus               = make([][]int, len(gateways)) // each gateway's recent answers
		otherSeen                []int
	)
	call := func() int {
		i := int(next.Add(1) - 1)
		g := i % len(gateways)
		st := callStatus(hc, gateways[g], tok)
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StatusOK:
			admitted.Add(1)
		case http.StatusTooManyRequests:
			refused.Add(1)
		default:
			other.Add(1)
			if len(otherSeen) < 5 {
				otherSeen = append(otherSeen, st)
			}
		}
		lastStatus[g] = append(lastStatus[g], st)
		return st
	}
	// run calls with 8 workers until stop says so (checked after each
	// call) or max calls were made.
	run := func(max int, stop func() bool) {
		var wg sync.WaitGroup
		var done atomic.Bool
		var made atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !done.Load() && made.Add(1) <= int64(max) {
					call()
					if stop() {
						done.Store(true)
					}
				}
			}()
		}
		wg.Wait()
	}

	const before = freeCallsPerDay / 2
	run(before, func() bool { return false })
	if admitted.Load() != before || other.Load() != 0 {
		t.Fatalf("before the cut: %d admitted, %d refused, %d other %v; want all %d admitted", admitted.Load(), refused.Load(), other.Load(), otherSeen, before)
	}

	redisProxy.Cut()
	cutAt := time.Now()
	allRefuse := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range lastStatus {
			n := len(s)
			if n < 5 {
				return false
			}
			for _, st := range s[n-5:] {
				if st != http.StatusTooManyRequests {
					return false
				}
			}
		}
		return true
	}
	run(5*freeCallsPerDay, allRefuse)
	cutFor := time.Since(cutAt)
	for i, g := range gateways {
		if st := callStatus(hc, g, tok); st != http.StatusTooManyRequests {
			t.Fatalf("gateway-%d during the cut, after %d calls = %d; want 429 (its share used up)", i, next.Load()-before, st)
		}
	}
	total := admitted.Load()
	t.Logf("Redis cut for %v: %d calls admitted in all (%d during the cut), %d refused, %d other answers %v",
		cutFor.Round(time.Millisecond), total, total-before, refused.Load(), other.Load(), otherSeen)
	if other.Load() != 0 {
		t.Errorf("%d answers neither 200 nor 429 (first %v); want 0", other.Load(), otherSeen)
	}
	if total > freeCallsPerDay+redisOutageBound {
		t.Errorf("admitted %d calls; want at most %d (limit %d + documented bound %d)", total, freeCallsPerDay+redisOutageBound, freeCallsPerDay, redisOutageBound)
	}
	redisProxy.Restore()

	u, err := url.Parse(testkit.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(u.String())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	// The shared counter settles (flushes every 250 ms give back unused
	// reservations and add back what the outage admitted). It holds every
	// call admitted, never fewer; it may hold a few more: a reservation or
	// give-back in flight when the connection was cut may have been
	// applied, so it stays counted (libs/cache/quota, Release).
	var shared, prev int64 = -1, -2
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		prev = shared
		shared, err = sharedCalls(ctx, rdb, orgID)
		return err == nil && shared >= total && shared == prev
	}, func() string {
		return fmt.Sprintf("shared call counter = %d (err %v); want at least the %d calls admitted, settled", shared, err, total)
	})
	if shared > freeCallsPerDay+redisOutageBound {
		t.Errorf("shared call counter = %d after Redis returned; want at most %d", shared, freeCallsPerDay+redisOutageBound)
	}
	t.Logf("after Redis returned the shared counter is %d: the %d calls admitted + %d counted but not admitted", shared, total, shared-total)
	for i, g := range gateways {
		if st := callStatus(hc, g, tok); st != http.StatusTooManyRequests {
			t.Errorf("gateway-%d after Redis returned = %d; want 429 (limit reached)", i, st)
		}
	}
}

// freeCallsPerDay is the free tier's daily call limit.
const freeCallsPerDay = 1000

// redisOutageBound is the documented worst case of over-admission while
// Redis is away (docs/operations.md, "Redis outages: limits and their
// bound"): limit / 10.
const redisOutageBound = freeCallsPerDay / 10

// freeOrgAgent creates a free organisation with the admin, an agent in it
// with a credential, and returns the organisation's id and a token of the
// agent (scope agents:read).
func freeOrgAgent(t *testing.T, c *client, adminID, adminSecret string) (orgID, token string) {
	t.Helper()
	admin, r := c.token(adminID, adminSecret, "admin:orgs agents:read agents:write")
	c.mustStatus(r, http.StatusOK, "admin token")
	r = c.do(http.MethodPost, "/api/v1/organizations", admin, map[string]any{"name": "Free Org", "slug": fmt.Sprintf("free-%d", time.Now().UnixNano())})
	c.mustStatus(r, http.StatusCreated, "create organization")
	var org struct {
		OrganizationID string `json:"organizationId"`
	}
	r.decode(t, &org)
	body := map[string]any{
		"email": "caller@free.example", "agentType": "custom", "version": "1.0.0",
		"capabilities": []string{"agents:read"}, "owner": "team", "deploymentEnv": "production",
		"organizationId": org.OrganizationID, "scopes": []string{"agents:read"},
	}
	eventually(t, 10*time.Second, func() bool {
		r = c.do(http.MethodPost, "/api/v1/agents", admin, body)
		return r.Status == http.StatusCreated
	}, func() string { return fmt.Sprintf("create agent in the new org = %d %s", r.Status, r.Body) })
	var agent struct {
		AgentID string `json:"agentId"`
	}
	r.decode(t, &agent)
	r = c.do(http.MethodPost, "/api/v1/agents/"+agent.AgentID+"/credentials", admin, map[string]any{})
	c.mustStatus(r, http.StatusCreated, "create credential")
	var cred struct {
		ClientSecret string `json:"clientSecret"`
	}
	r.decode(t, &cred)
	tok, r := c.token(agent.AgentID, cred.ClientSecret, "agents:read")
	c.mustStatus(r, http.StatusOK, "agent token")
	return org.OrganizationID, tok
}

// callStatus makes one GET /api/v1/agents at base with token and returns
// the status (0 when no answer).
func callStatus(hc *http.Client, base, token string) int {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/agents", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// sharedCalls reads the organisation's daily call counter(s) in Redis
// directly (whatever key prefix the services use).
func sharedCalls(ctx context.Context, rdb *redis.Client, orgID string) (int64, error) {
	var sum int64
	iter := rdb.Scan(ctx, 0, "*usage:calls:"+orgID+":*", 100).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.Get(ctx, iter.Val()).Int64()
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, iter.Err()
}

// waitGatewaysCounted waits (at most 20 s) until n gateway heartbeats are in
// the replicas bucket and each was rewritten after all n were there: a
// heartbeat is written just before its replica recounts, so each replica
// has then counted n.
func waitGatewaysCounted(t *testing.T, c *natsCluster, n int) {
	t.Helper()
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, natsbus.ReplicasBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", natsbus.ReplicasBucket, err)
	}
	var allThere time.Time
	var seen int
	if !poll(ctx, 100*time.Millisecond, func() bool {
		keys, err := kv.ListKeysFiltered(ctx, "gateway.*")
		if err != nil {
			return false
		}
		var created []time.Time
		for k := range keys.Keys() {
			if e, err := kv.Get(ctx, k); err == nil && time.Since(e.Created()) < 6*time.Second {
				created = append(created, e.Created())
			}
		}
		seen = len(created)
		if seen < n {
			allThere = time.Time{}
			return false
		}
		if allThere.IsZero() {
			allThere = time.Now()
			return false
		}
		for _, at := range created {
			if !at.After(allThere) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the gateways' heartbeats: %d live; want %d, each rewritten after all were there", seen, n)
	}
}
