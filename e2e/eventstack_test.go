package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/jackc/pgx/v5"
)

// This file is the harness shared by the kill test and the event
// benchmarks: a nats-server run as its own process (so it can be stopped and
// restarted on the same port and storage), the five services of the event
// pipeline (token, tier, analytics, webhook, gateway), a webhook receiver
// that verifies Standard Webhooks signatures independently of the webhook
// service's code, and a token load generator.

// natsServerVersion is the nats-server the tests install under CI.
const natsServerVersion = "github.com/nats-io/nats-server/v2@v2.15.2"

// natsServerBinary returns the nats-server binary in $(go env GOPATH)/bin,
// installing it when it is missing (scripts/test.sh does so before the
// tests). Only when that fails is the test skipped, with the command to
// run; under CI (CI=true) it fails.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	goEnv := func(name string) string {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	dir := goEnv("GOBIN")
	if dir == "" {
		dir = filepath.Join(strings.Split(goEnv("GOPATH"), string(os.PathListSeparator))[0], "bin")
	}
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", natsServerVersion)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("nats-server not found at %s and `go install %s` failed (%v): install it to run this test", bin, natsServerVersion, err)
		}
		t.Fatalf("go install %s: %v\n%s", natsServerVersion, err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("go install %s did not produce %s: %v", natsServerVersion, bin, err)
	}
	return bin
}

var (
	webhookBuildOnce sync.Once
	webhookBuildErr  error
)

// webhookBinary builds the webhook service into the directory binaries()
// built the others into (binaries() does not build it).
func webhookBinary(t *testing.T) string {
	t.Helper()
	dir := binaries(t)
	webhookBuildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "webhook"), ".")
		cmd.Dir = filepath.Join(repoRoot(t), "services/webhook/cmd/webhook")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			webhookBuildErr = fmt.Errorf("build webhook: %v\n%s", err, out)
		}
	})
	if webhookBuildErr != nil {
		t.Fatal(webhookBuildErr)
	}
	return filepath.Join(dir, "webhook")
}

// natsProcess is a nats-server with JetStream on a fixed loopback port and
// file storage in a test directory, both kept across restarts.
type natsProcess struct {
	t     *testing.T
	bin   string
	port  string
	store string
	runs  int
	p     *proc
}

func startNATSProcess(t *testing.T) *natsProcess {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n := &natsProcess{t: t, bin: natsServerBinary(t), port: port, store: t.TempDir()}
	n.start()
	return n
}

// URL is the client URL (the same after every restart).
func (n *natsProcess) URL() string { return "nats://127.0.0.1:" + n.port }

func (n *natsProcess) start() {
	n.t.Helper()
	n.runs++
	n.p = start(n.t, fmt.Sprintf("nats-server#%d", n.runs), n.bin, nil,
		"-a", "127.0.0.1", "-p", n.port, "-js", "-sd", n.store, "-n", "agentidp-e2e")
	waitOutput(n.t, n.p, regexp.MustCompile(`Server is ready`))
}

// restart stops the server with SIGTERM (a clean shutdown), keeps it down
// for down, and starts it again on the same port and storage.
func (n *natsProcess) restart(down time.Duration) {
	n.t.Helper()
	_ = n.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.p.done:
	case <-time.After(15 * time.Second):
		n.t.Errorf("nats-server did not exit 15s after SIGTERM; killing it")
		_ = n.p.cmd.Process.Kill()
		<-n.p.done
	}
	time.Sleep(down)
	n.start()
}

// dropWebhookSchema drops the webhook service's schema (dropSchemas knows
// only token, tier and analytics).
func dropWebhookSchema(t *testing.T, url, schema string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Logf("drop schema %s: %v", schema, err)
	}
}

// service is one service binary of the stack with its fixed addresses.
type service struct {
	name, bin      string
	http, internal string
	env            []string
	runs           int
	p              *proc
}

// eventStack is token, tier, analytics, webhook and gateway as separate
// processes over PostgreSQL (one schema each), Redis and a nats-server
// process, with the bootstrap admin's credentials.
type eventStack struct {
	t           *testing.T
	nats        *natsProcess
	svcs        map[string]*service
	gateway     string // base URL
	adminID     string
	adminSecret string
}

// startEventStack bootstraps and starts the stack. extra adds environment
// per service name.
func startEventStack(t *testing.T, extra map[string][]string) *eventStack {
	t.Helper()
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	nats := startNATSProcess(t)
	bin := binaries(t)
	webhookBin := webhookBinary(t)

	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() {
		dropSchemas(t, pgURL, prefix) // token, tier, analytics
		dropWebhookSchema(t, pgURL, prefix+"webhook")
	})
	common := []string{"NATS_URL=" + nats.URL(), "AGENTIDP_INTERNAL_KEY=" + hexKey(testKey), "LOG_LEVEL=warn"}
	gatewayAddr := freeAddr(t)
	issuer := "http://" + gatewayAddr
	tokenEnv := tokenServiceEnv(issuer)
	s := &eventStack{t: t, nats: nats, svcs: map[string]*service{}, gateway: issuer}
	s.adminID, s.adminSecret = bootstrapAdmin(t, bin, pgURL, prefix, issuer)

	for _, name := range []string{"token", "tier", "analytics", "webhook"} {
		s.svcs[name] = &service{name: name, bin: bin + "/" + name, http: freeAddr(t), internal: freeAddr(t)}
	}
	s.svcs["webhook"].bin = webhookBin
	s.svcs["gateway"] = &service{name: "gateway", bin: bin + "/gateway", http: gatewayAddr, internal: freeAddr(t)}
	db := func(name string) []string {
		return []string{"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + name}
	}
	own := map[string][]string{
		"token":     append(append(db("token"), "REDIS_URL="+redisURL), tokenEnv...),
		"tier":      append(db("tier"), "REDIS_URL="+redisURL),
		"analytics": append(db("analytics"), "REDIS_URL="+redisURL, "ANALYTICS_CHECKPOINT_KEY="+hexKey("checkpoint-key")),
		"webhook":   append(db("webhook"), "WEBHOOK_SECRET_KEY="+hexKey("webhook-secret-key"), "WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8"),
		"gateway": {"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer,
			"TOKEN_SERVICE_URL=http://" + s.svcs["token"].http,
			"TIER_SERVICE_URL=http://" + s.svcs["tier"].http,
			"ANALYTICS_SERVICE_URL=http://" + s.svcs["analytics"].http,
			"WEBHOOK_SERVICE_URL=http://" + s.svcs["webhook"].http},
	}
	for _, name := range []string{"token", "tier", "analytics", "webhook", "gateway"} {
		sv := s.svcs[name]
		sv.env = append(append(append([]string{"HTTP_ADDR=" + sv.http, "INTERNAL_ADDR=" + sv.internal}, common...), own[name]...), extra[name]...)
		s.start(name)
	}
	return s
}

// start (re)starts a service on its addresses and waits until it is ready.
func (s *eventStack) start(name string) {
	s.t.Helper()
	sv := s.svcs[name]
	sv.runs++
	sv.p = start(s.t, fmt.Sprintf("%s#%d", name, sv.runs), sv.bin, sv.env)
	waitReady(s.t, sv.p, "http://"+sv.internal+"/health/ready")
}

// kill sends SIGKILL to a service and waits for it to die: no shutdown
// hook runs, in-flight transactions and unacknowledged messages are lost
// with the process.
func (s *eventStack) kill(name string) {
	s.t.Helper()
	p := s.svcs[name].p
	if err := p.cmd.Process.Kill(); err != nil {
		s.t.Errorf("kill %s: %v", name, err)
	}
	<-p.done
}

// metric sums the samples of a Prometheus metric (name plus optional label
// filter such as `outcome="issued"`) on a service's internal /metrics; a
// metric that is not exposed is an error, not zero.
func (s *eventStack) metric(name, metricName, label string) (float64, error) {
	v, err := scrapeMetric(s.svcs[name].internal, metricName, label)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// scrapeMetric sums the samples of a Prometheus metric (name plus optional
// label filter) on the /metrics of the internal address addr; a metric that
// is not exposed is an error, not zero.
func scrapeMetric(addr, metricName, label string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metricName) || (len(line) > len(metricName) && line[len(metricName)] != '{' && line[len(metricName)] != ' ') {
			continue
		}
		if label != "" && !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no metric %s{%s} at %s", metricName, label, addr)
	}
	return sum, nil
}

// tokensIssued is the token service's own count of tokens it issued
// (agentidp_tokens_issued_total{outcome="issued"}); the token service is
// never killed, so it covers every token of the test.
func (s *eventStack) tokensIssued() int {
	s.t.Helper()
	v, err := s.metric("token", "agentidp_tokens_issued_total", `outcome="issued"`)
	if err != nil {
		s.t.Fatalf("token metrics: %v", err)
	}
	return int(v)
}

// apiClient is a keep-alive HTTP client sized for the load.
func apiClient(conns int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: 30 * time.Second,
	}}
}

// getJSON GETs base+path with a bearer token and decodes a 200 answer.
func getJSON(c *http.Client, base, path, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// analyticsTokens sums the caller organisation's daily token counts. It
// asks for two days so that a run crossing midnight UTC still adds up.
func analyticsTokens(c *http.Client, base, token string) (int, error) {
	var series struct {
		Data []struct {
			Count int `json:"count"`
		} `json:"data"`
	}
	if err := getJSON(c, base, "/api/v1/analytics/tokens?days=2", token, &series); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range series.Data {
		n += d.Count
	}
	return n, nil
}

// issuedToken is one token the load generator obtained.
type issuedToken struct {
	JTI string
	At  time.Time // when the 200 answer arrived
}

// loadOptions describe a token load.
type loadOptions struct {
	Base, ClientID, Secret string
	N, Concurrency         int
	Rate                   float64 // tokens per second; 0 = closed loop
	// OnIssued runs after each token, with the number issued so far.
	OnIssued func(issued int)
}

// loadResult is what a load produced.
type loadResult struct {
	Tokens   []issuedToken
	Failures int // failed attempts (each retried)
	Errors   []string
	Elapsed  time.Duration
}

// issueTokens obtains N tokens with client_secret_basic through the
// gateway. A failed attempt (transport error or non-200) is retried for up
// to 30 s; the failures are counted, since a request that failed in transit
// may still have issued a token.
func issueTokens(t *testing.T, o loadOptions) loadResult {
	t.Helper()
	hc := apiClient(o.Concurrency)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"agents:read"}}.Encode()
	var (
		next    atomic.Int64
		issued  atomic.Int64
		mu      sync.Mutex
		res     loadResult
		wg      sync.WaitGroup
		started = time.Now()
	)
	res.Tokens = make([]issuedToken, 0, o.N)
	once := func() (string, error) {
		req, _ := http.NewRequest(http.MethodPost, o.Base+"/oauth2/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.Secret))
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %d %s", resp.StatusCode, tail(string(b), 200))
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &tok); err != nil {
			return "", err
		}
		return jwtID(tok.AccessToken)
	}
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.N) {
					return
				}
				if o.Rate > 0 {
					time.Sleep(time.Until(started.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))))
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					jti, err := once()
					if err == nil {
						mu.Lock()
						res.Tokens = append(res.Tokens, issuedToken{JTI: jti, At: time.Now()})
						mu.Unlock()
						if o.OnIssued != nil {
							o.OnIssued(int(issued.Add(1)))
						}
						break
					}
					mu.Lock()
					res.Failures++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, err.Error())
					}
					mu.Unlock()
					if time.Now().After(deadline) {
						t.Errorf("token %d: still failing after 30s: %v", i, err)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(started)
	return res
}

// jwtID returns the jti claim of a compact JWS.
func jwtID(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("access token is not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("access token payload: %w", err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || claims.JTI == "" {
		return "", fmt.Errorf("access token has no jti: %s", b)
	}
	return claims.JTI, nil
}

// swReceiver is a webhook endpoint that verifies Standard Webhooks
// signatures with its own implementation of the specification
// (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
// the signed content is "<webhook-id>.<webhook-timestamp>.<body>", the key
// is the base64 part of the "whsec_" secret, the signature HMAC-SHA256 in
// base64, listed as space-separated "v1,<sig>" entries of which one must
// match, and the timestamp must be within five minutes of now.
type swReceiver struct {
	srv    *httptest.Server
	secret atomic.Pointer[[]byte]

	mu         sync.Mutex
	requests   int
	badSig     int
	mismatched int // webhook-id differs from the body's event id
	firstSeen  map[string]time.Time
	eventTime  map[string]time.Time
	jtiOf      map[string]string // event id -> jti
	errs       []string
}

func newSWReceiver(t *testing.T) *swReceiver {
	t.Helper()
	r := &swReceiver{firstSeen: map[string]time.Time{}, eventTime: map[string]time.Time{}, jtiOf: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// setSecret installs the endpoint's whsec_ signing secret.
func (r *swReceiver) setSecret(secret string) error {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return fmt.Errorf("signing secret %q... lacks the whsec_ prefix", secret[:min(6, len(secret))])
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return fmt.Errorf("signing secret is not base64: %w", err)
	}
	r.secret.Store(&key)
	return nil
}

// verify checks the three Standard Webhooks headers against body.
func (r *swReceiver) verify(h http.Header, body []byte, now time.Time) error {
	key := r.secret.Load()
	if key == nil {
		return errors.New("no secret yet")
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not an integer", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); math.Abs(d.Seconds()) > 300 {
		return fmt.Errorf("webhook-timestamp %s is %v away from now", ts, d)
	}
	mac := hmac.New(sha256.New, *key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if ok && version == "v1" && subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature in %q matches", sigs)
}

func (r *swReceiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if r.secret.Load() == nil {
		// The first delivery can race the create response that carries the
		// secret: ask for a retry.
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	verr := r.verify(req.Header, body, now)
	var ev struct {
		ID   string    `json:"id"`
		Type string    `json:"type"`
		Time time.Time `json:"time"`
		Data struct {
			JTI string `json:"jti"`
		} `json:"data"`
	}
	jerr := json.Unmarshal(body, &ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if verr != nil {
		r.badSig++
		if len(r.errs) < 10 {
			r.errs = append(r.errs, verr.Error())
		}
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := req.Header.Get("webhook-id")
	if jerr != nil || ev.ID != id || ev.Type != "token.issued" {
		r.mismatched++
		if len(r.errs) < 10 {
			r.errs = append(r.errs, fmt.Sprintf("webhook-id %s, body id %s type %s err %v", id, ev.ID, ev.Type, jerr))
		}
	}
	if _, ok := r.firstSeen[id]; !ok {
		r.firstSeen[id] = now
		r.eventTime[id] = ev.Time
		r.jtiOf[id] = ev.Data.JTI
	}
	w.WriteHeader(http.StatusNoContent)
}

// receiverStats is a snapshot of what the receiver saw.
type receiverStats struct {
	Requests, BadSignatures, Mismatched, Distinct int
	JTIs                                          map[string]string // jti -> event id
	Lags                                          []time.Duration   // first attempt - event time, per event
	Errors                                        []string
}

func (r *swReceiver) stats() receiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := receiverStats{Requests: r.requests, BadSignatures: r.badSig, Mismatched: r.mismatched, Distinct: len(r.firstSeen),
		JTIs: make(map[string]string, len(r.jtiOf)), Errors: slices.Clone(r.errs)}
	for id, jti := range r.jtiOf {
		s.JTIs[jti] = id
		s.Lags = append(s.Lags, r.firstSeen[id].Sub(r.eventTime[id]))
	}
	return s
}

// registerWebhook creates a token.issued subscription pointing at the
// receiver and hands its secret to the receiver; it returns the webhook id.
func registerWebhook(t *testing.T, c *client, admin string, r *swReceiver) string {
	t.Helper()
	resp := c.do(http.MethodPost, "/api/v1/webhooks", admin, map[string]any{
		"name": "receiver", "url": r.srv.URL + "/hook", "events": []string{"token.issued"}})
	c.mustStatus(resp, http.StatusCreated, "create webhook")
	var hook struct {
		ID            string `json:"id"`
		SigningSecret string `json:"signingSecret"`
	}
	resp.decode(t, &hook)
	if err := r.setSecret(hook.SigningSecret); err != nil {
		t.Fatal(err)
	}
	return hook.ID
}

// percentile returns the p-th percentile (0..100) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// poll calls cond every interval until it reports true or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(interval):
		}
	}
}
