// Package e2e runs the suite as users do — as separate service binaries
// over PostgreSQL, Redis and NATS, and as `agentidp dev` — and drives it
// only through HTTP.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/jackc/pgx/v5"
)

const testKey = "e2e-internal-key-0123456789abcdef0123456789abcdef"

var (
	clientIDRe     = regexp.MustCompile(`client_id:\s+(\S+)`)
	clientSecretRe = regexp.MustCompile(`client_secret:\s+(\S+)`)
)

func hexKey(seed string) string {
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	for i := range 64 {
		b.WriteByte(hexdigits[(int(seed[i%len(seed)])+i)%16])
	}
	return b.String()
}

// tokenServiceEnv is what the token service and the bootstrap command
// share: the secret pepper, the key-encryption key and the issuer.
func tokenServiceEnv(issuer string) []string {
	return []string{
		"TOKEN_SECRET_PEPPER=" + hexKey("pepper-pepper-pepper"),
		"TOKEN_KEY_ENCRYPTION_KEY=" + hexKey("kek-kek-kek-kek"),
		"TOKEN_ISSUER=" + issuer,
	}
}

// bootstrap runs `agentidp bootstrap` straight into the token and tier
// schemas of prefix (before the services start) and returns the process,
// finished; its output holds the admin's client id and secret.
func bootstrap(t *testing.T, name, bin, pgURL, prefix, issuer string) *proc {
	t.Helper()
	p := start(t, name, bin+"/agentidp", append([]string{
		"DATABASE_URL=" + pgURL, "TOKEN_DATABASE_SCHEMA=" + prefix + "token", "TIER_DATABASE_SCHEMA=" + prefix + "tier",
	}, tokenServiceEnv(issuer)...), "bootstrap")
	<-p.done
	return p
}

// bootstrapAdmin bootstraps and returns the admin's client id and secret.
func bootstrapAdmin(t *testing.T, bin, pgURL, prefix, issuer string) (id, secret string) {
	t.Helper()
	p := bootstrap(t, "bootstrap", bin, pgURL, prefix, issuer)
	return waitOutput(t, p, clientIDRe)[1], waitOutput(t, p, clientSecretRe)[1]
}

// TestProductionWiring runs gateway, token, tier and analytics as separate
// processes over PostgreSQL (one schema each), Redis and a NATS server
// reached over TCP, bootstraps with the CLI, and walks the journey.
func TestProductionWiring(t *testing.T) {
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	bin := binaries(t)
	nats := natstest.Start(t)

	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() { dropSchemas(t, pgURL, prefix) })

	gatewayAddr := freeAddr(t)
	issuer := "http://" + gatewayAddr
	common := []string{
		"NATS_URL=" + nats.URL(),
		"AGENTIDP_INTERNAL_KEY=" + hexKey(testKey),
		"LOG_LEVEL=info",
	}
	tokenSecrets := tokenServiceEnv(issuer)

	adminID, adminSecret := bootstrapAdmin(t, bin, pgURL, prefix, issuer)
	again := bootstrap(t, "bootstrap-again", bin, pgURL, prefix, issuer)
	if out := again.output(); strings.Contains(out, "client_secret:") || again.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("second bootstrap printed a secret or failed:\n%s", out)
	}

	type svc struct{ name, httpAddr, internalAddr string }
	services := map[string]*svc{}
	for _, name := range []string{"token", "tier", "analytics"} {
		services[name] = &svc{name: name, httpAddr: freeAddr(t), internalAddr: freeAddr(t)}
	}
	services["gateway"] = &svc{name: "gateway", httpAddr: gatewayAddr, internalAddr: freeAddr(t)}
	envFor := map[string][]string{
		"token":     append([]string{"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "token", "REDIS_URL=" + redisURL}, tokenSecrets...),
		"tier":      {"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "tier", "REDIS_URL=" + redisURL},
		"analytics": {"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "analytics", "REDIS_URL=" + redisURL, "ANALYTICS_CHECKPOINT_KEY=" + hexKey("checkpoint-key")},
		"gateway": {"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer,
			"TOKEN_SERVICE_URL=http://" + services["token"].httpAddr,
			"TIER_SERVICE_URL=http://" + services["tier"].httpAddr,
			"ANALYTICS_SERVICE_URL=http://" + services["analytics"].httpAddr},
	}
	for _, name := range []string{"token", "tier", "analytics", "gateway"} {
		s := services[name]
		env := append(append([]string{"HTTP_ADDR=" + s.httpAddr, "INTERNAL_ADDR=" + s.internalAddr}, common...), envFor[name]...)
		p := start(t, name, bin+"/"+name, env)
		waitReady(t, p, "http://"+s.internalAddr+"/health/ready")
	}

	c := newClient(t, issuer)
	journey(t, c, adminID, adminSecret)

	// A request straight to a service, around the gateway, gets nothing.
	direct := newClient(t, "http://"+services["token"].httpAddr)
	r := direct.do(http.MethodGet, "/api/v1/agents", "", nil)
	direct.mustStatus(r, http.StatusUnauthorized, "GET token service directly without the gateway's context")
	r = direct.send(mustRequest(t, http.MethodGet, "http://"+services["token"].httpAddr+"/api/v1/agents", map[string]string{
		"X-Agentidp-Context": "eyJzdWIiOiJhIiwib3JnIjoiYiJ9.forged",
	}))
	direct.mustStatus(r, http.StatusUnauthorized, "GET token service directly with a forged context")
}

// TestDevMode runs `agentidp dev` on embedded defaults, walks the journey,
// restarts it on the same data directory and checks that state survived.
func TestDevMode(t *testing.T) {
	bin := binaries(t)
	data := t.TempDir()
	addr := freeAddr(t)
	dev := start(t, "agentidp-dev", bin+"/agentidp", nil, "dev", "--data", data, "--addr", addr, "--internal-addr", freeAddr(t))
	adminID := waitOutput(t, dev, clientIDRe)[1]
	adminSecret := waitOutput(t, dev, clientSecretRe)[1]
	waitOutput(t, dev, regexp.MustCompile(`AgentIdP is running at`))
	c := newClient(t, "http://"+addr)
	journey(t, c, adminID, adminSecret)
	identityServices(t, c, adminID, adminSecret)
	dev.stop()

	restarted := start(t, "agentidp-dev-restart", bin+"/agentidp", nil, "dev", "--data", data, "--addr", addr, "--internal-addr", freeAddr(t))
	waitOutput(t, restarted, regexp.MustCompile(`AgentIdP is running at`))
	if strings.Contains(restarted.output(), "client_secret:") {
		t.Errorf("restart printed admin credentials again:\n%s", restarted.output())
	}
	admin, r := c.token(adminID, adminSecret, "agents:read")
	c.mustStatus(r, http.StatusOK, "admin token after restart")
	r = c.do(http.MethodGet, "/api/v1/agents", admin, nil)
	c.mustStatus(r, http.StatusOK, "list agents after restart")
}

func mustRequest(t *testing.T, method, url string, headers map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}

func dropSchemas(t *testing.T, url, prefix string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("drop schemas: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, s := range []string{"token", "tier", "analytics"} {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{prefix + s}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", prefix+s, err)
		}
	}
}

// identityServices checks that the services beyond the spine answer through
// the gateway in dev mode: the admin agent's did:web document (created from
// its agent.created event), a webhook subscription, the federation registry.
func identityServices(t *testing.T, c *client, adminID, adminSecret string) {
	t.Helper()
	admin, r := c.token(adminID, adminSecret, "admin:orgs webhooks:read webhooks:write agents:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	var doc struct {
		ID string `json:"id"`
	}
	eventually(t, 10*time.Second, func() bool {
		r = c.do(http.MethodGet, "/agents/"+adminID+"/did.json", "", nil)
		return r.Status == http.StatusOK
	}, func() string { return fmt.Sprintf("GET did.json = %d %s", r.Status, r.Body) })
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.ID, "did:web:") || !strings.HasSuffix(doc.ID, ":agents:"+adminID) {
		t.Errorf("DID document id = %q; want did:web:<host>:agents:%s", doc.ID, adminID)
	}
	r = c.do(http.MethodPost, "/api/v1/webhooks", admin, map[string]any{"name": "hook", "url": "https://example.com/hook", "events": []string{"agent.created"}})
	c.mustStatus(r, http.StatusCreated, "create webhook")
	r = c.do(http.MethodPost, "/api/v1/webhooks", admin, map[string]any{"name": "ssrf", "url": "http://169.254.169.254/latest", "events": []string{"agent.created"}})
	c.mustStatus(r, http.StatusBadRequest, "webhook to the metadata address")
	c.mustStatus(c.do(http.MethodGet, "/api/v1/federation/partners", admin, nil), http.StatusOK, "list federation partners")
}

// devSuite is a running `agentidp dev` and a client of its gateway.
type devSuite struct {
	proc                 *proc
	c                    *client
	adminID, adminSecret string
}

var runningRe = regexp.MustCompile(`AgentIdP is running at`)

// startDev runs `agentidp dev` on a fresh data directory (env adds
// variables) and waits until it serves, with the admin credentials it
// printed.
func startDev(t *testing.T, env []string) devSuite {
	t.Helper()
	bin := binaries(t)
	addr := freeAddr(t)
	dev := start(t, "agentidp-dev", bin+"/agentidp", env, "dev", "--data", t.TempDir(), "--addr", addr, "--internal-addr", freeAddr(t))
	s := devSuite{proc: dev, adminID: waitOutput(t, dev, clientIDRe)[1], adminSecret: waitOutput(t, dev, clientSecretRe)[1]}
	waitOutput(t, dev, runningRe)
	s.c = newClient(t, "http://"+addr)
	return s
}
