package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
)

// cutProxy is a TCP proxy to one address whose connections the test can
// cut (and refuse) and restore.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target}
	t.Cleanup(func() { _ = l.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
	return p
}

// setCut closes every proxied connection and refuses new ones (true), or
// accepts them again (false).
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// TestAttackGatewayCutFromNATSServesRevokedToken: separate processes, one
// gateway connected to NATS through a proxy the test cuts. A token revoked
// (through the other gateway) during the cut is refused at the cut gateway
// within GATEWAY_REVOCATION_MAX_STALENESS + 0.5 s of the revoke answer
// (asserted with 1 s of slack for polling and process scheduling); with
// the token service stopped too, it answers 503, never 200; it logs
// entering and leaving the stale state once each.
func TestAttackGatewayCutFromNATSServesRevokedToken(t *testing.T) {
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	bin := binaries(t)
	nats := natstest.Start(t)
	proxy := newCutProxy(t, strings.TrimPrefix(nats.URL(), "nats://"))

	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() { dropSchemas(t, pgURL, prefix) })
	issuer := "http://issuer.agentidp.test"
	common := []string{"AGENTIDP_INTERNAL_KEY=" + hexKey(testKey), "LOG_LEVEL=info"}
	adminID, adminSecret := bootstrapAdmin(t, bin, pgURL, prefix, issuer)

	tokenAddr, tokenInternal := freeAddr(t), freeAddr(t)
	tokenEnv := append(append([]string{"HTTP_ADDR=" + tokenAddr, "INTERNAL_ADDR=" + tokenInternal, "NATS_URL=" + nats.URL(),
		"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "token", "REDIS_URL=" + redisURL}, common...), tokenServiceEnv(issuer)...)
	tokenProc := start(t, "token", bin+"/token", tokenEnv)
	waitReady(t, tokenProc, "http://"+tokenInternal+"/health/ready")

	// The requests go to a stub tier service, so that stopping the token
	// service leaves the gateway's own answer visible.
	tier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(tier.Close)
	startGateway := func(name, natsURL string) (*proc, *client) {
		addr, internal := freeAddr(t), freeAddr(t)
		env := append([]string{"HTTP_ADDR=" + addr, "INTERNAL_ADDR=" + internal, "REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer,
			"TOKEN_SERVICE_URL=http://" + tokenAddr, "TIER_SERVICE_URL=" + tier.URL, "NATS_URL=" + natsURL}, common...)
		p := start(t, name, bin+"/gateway", env)
		waitReady(t, p, "http://"+internal+"/health/ready")
		return p, newClient(t, "http://"+addr)
	}
	_, ok := startGateway("gateway-ok", nats.URL())
	cutProc, cut := startGateway("gateway-cut", "nats://"+proxy.l.Addr().String())

	admin, r := ok.token(adminID, adminSecret, "agents:read agents:write tokens:read")
	ok.mustStatus(r, http.StatusOK, "admin token")
	victim, r := ok.token(adminID, adminSecret, "agents:read")
	ok.mustStatus(r, http.StatusOK, "victim token")
	for _, c := range []*client{ok, cut} {
		c.mustStatus(c.do(http.MethodGet, "/api/v1/tiers/status", victim, nil), http.StatusOK, "before the cut")
	}

	proxy.setCut(true)
	req := mustRequest(t, http.MethodPost, "http://"+strings.TrimPrefix(ok.base, "http://")+"/oauth2/revoke", map[string]string{
		"Authorization": "Bearer " + admin, "Content-Type": "application/x-www-form-urlencoded"})
	req.Body = ioNopCloser(url.Values{"token": {victim}}.Encode())
	r = ok.send(req)
	revokedAt := time.Now()
	ok.mustStatus(r, http.StatusOK, "revoke")

	bound := 2*time.Second + 500*time.Millisecond + time.Second
	for {
		st := cut.do(http.MethodGet, "/api/v1/tiers/status", victim, nil).Status
		if st == http.StatusUnauthorized {
			t.Logf("gateway cut from NATS refused the revoked token %v after the revoke answer", time.Since(revokedAt))
			break
		}
		if time.Since(revokedAt) > bound {
			t.Fatalf("gateway cut from NATS still answers %d for the revoked token %v after the revoke answer; want 401 within %v",
				st, time.Since(revokedAt), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Other tokens still work at the cut gateway (checked with the token service).
	cut.mustStatus(cut.do(http.MethodGet, "/api/v1/tiers/status", admin, nil), http.StatusOK, "cut gateway, valid token")

	// The token service stopped as well: nothing is accepted.
	tokenProc.stop()
	eventually(t, 10*time.Second, func() bool {
		r := cut.do(http.MethodGet, "/api/v1/tiers/status", admin, nil)
		if r.Status == http.StatusOK {
			return false
		}
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Fatalf("cut gateway, token service down = %d %s; want 503 with Retry-After", r.Status, r.Body)
		}
		return true
	}, func() string { return "cut gateway kept accepting with the token service down" })
	for range 5 {
		r := cut.do(http.MethodGet, "/api/v1/tiers/status", admin, nil)
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("cut gateway, token service down = %d; want 503", r.Status)
		}
	}
	cut.mustStatus(cut.do(http.MethodGet, "/api/v1/tiers/status", victim, nil), http.StatusUnauthorized, "cut gateway, revoked token, token service down")

	// NATS and the token service back: fresh again, logged once each way.
	tokenProc = start(t, "token-restarted", bin+"/token", tokenEnv)
	waitReady(t, tokenProc, "http://"+tokenInternal+"/health/ready")
	proxy.setCut(false)
	eventually(t, 15*time.Second, func() bool {
		return strings.Contains(cutProc.output(), "revocation state fresh again")
	}, func() string {
		return "cut gateway never logged leaving the stale state:\n" + tail(cutProc.output(), 20)
	})
	cut.mustStatus(cut.do(http.MethodGet, "/api/v1/tiers/status", victim, nil), http.StatusUnauthorized, "reconnected gateway, revoked token")
	out := cutProc.output()
	if n := strings.Count(out, `"msg":"revocation state stale`); n != 1 {
		t.Errorf("stale state logged %d times; want once:\n%s", n, tail(out, 30))
	}
	if n := strings.Count(out, `"msg":"revocation state fresh again`); n != 1 {
		t.Errorf("fresh state logged %d times; want once", n)
	}
}
