package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/testkit"
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
