package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	testIssuer   = "http://localhost:8080"
	testAudience = "agentidp"
)

// issuer is the token service's signing side as the gateway sees it: a
// JWKS endpoint (counting fetches) and a key to sign with.
type issuer struct {
	key     *jose.PrivateKey
	signer  *jose.Signer
	jwk     jose.JWK
	srv     *httptest.Server
	fetches atomic.Int64

	mu   sync.Mutex
	jwks jose.JWKS
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	is := &issuer{}
	is.key, is.signer, is.jwk = newKey(t)
	is.jwks = jose.JWKS{Keys: []jose.JWK{is.jwk}}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(is.jwks)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func newKey(t testing.TB) (*jose.PrivateKey, *jose.Signer, jose.JWK) {
	t.Helper()
	k, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(k, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	j, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	return k, s, j
}

// claims returns valid access-token claims; tests edit them.
func claims(org, scope string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "agent-1", "client_id": "agent-1",
		"scope": scope, "organization_id": org, "jti": "jti-" + hex.EncodeToString(randBytes(4)),
		"iat": now, "exp": now + 600,
	}
}

func (is *issuer) token(t testing.TB, c map[string]any) string {
	t.Helper()
	tok, err := is.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// rawToken assembles a token with an arbitrary header and an HMAC-SHA256
// signature keyed with macKey (nil: empty signature).
func rawToken(header, payload map[string]any, macKey []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(payload)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	if macKey == nil {
		return input + "."
	}
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte(input))
	return input + "." + enc.EncodeToString(m.Sum(nil))
}

// upstream echoes what the gateway sent it.
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

type echoed struct {
	Service    string          `json:"service"`
	Path       string          `json:"path"`
	Identity   *authn.Identity `json:"identity"`
	VerifyErr  string          `json:"verifyErr"`
	Contexts   int             `json:"contexts"`
	Injected   []string        `json:"injected"`
	RequestID  string          `json:"requestId"`
	ForwardFor string          `json:"forwardedFor"`
	// ClientAddrs are the X-Agentidp-Client-Addr values received, and
	// ClientAddr the address in the one that verifies.
	ClientAddrs int    `json:"clientAddrs"`
	ClientAddr  string `json:"clientAddr"`
}

func newUpstream(t testing.TB, name string, codec *authn.Codec) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		out := echoed{Service: name, Path: r.URL.Path, Contexts: len(r.Header.Values(authn.Header)),
			Injected: r.Header.Values("X-User-Id"), RequestID: r.Header.Get("X-Request-Id"),
			ForwardFor: r.Header.Get("X-Forwarded-For"), ClientAddrs: len(r.Header.Values(authn.ClientAddrHeader))}
		if addr, err := codec.VerifyClientAddr(r.Header.Get(authn.ClientAddrHeader)); err == nil {
			out.ClientAddr = addr
		}
		if v := r.Header.Get(authn.Header); v != "" {
			id, err := codec.Verify(v, r.Method, r.URL.Path)
			if err != nil {
				out.VerifyErr = err.Error()
			} else {
				out.Identity = &id
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

type env struct {
	nc       *nats.Conn
	gw       *Gateway
	srv      *httptest.Server
	issuer   *issuer
	token    *upstream
	tier     *upstream
	codec    *authn.Codec
	kv       jetstream.KeyValue
	registry *prometheus.Registry
}

type envOptions struct {
	cache     cache.Cache // default: in-process
	configure func(*Config)
	logger    *slog.Logger // default: discarded
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	codec, err := authn.NewCodec(randBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{nc: nc, issuer: newIssuer(t), codec: codec, registry: prometheus.NewRegistry()}
	e.token = newUpstream(t, "token", codec)
	e.tier = newUpstream(t, "tier", codec)
	if e.kv, err = natsbus.EnsureKV(ctx, js, events.OrgsBucket, 1); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Upstreams = map[string]string{ServiceToken: e.token.srv.URL, ServiceTier: e.tier.srv.URL, ServiceAnalytics: e.tier.srv.URL}
	cfg.JWKSURL = e.issuer.srv.URL + "/.well-known/jwks.json"
	if o.configure != nil {
		o.configure(&cfg)
	}
	c := o.cache
	if c == nil {
		c = cache.NewMemory(cache.MemoryOptions{})
	}
	t.Cleanup(func() { _ = c.Close() })
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	deps := &svcrun.Deps{Service: "gateway", Logger: logger, Registry: e.registry,
		Cache: c, NATS: nc, JS: js, Codec: codec}
	if e.gw, err = New(ctx, cfg, deps); err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.srv = httptest.NewServer(e.gw.Handler())
	t.Cleanup(e.srv.Close)
	waitReady(t, e.gw)
	return e
}

func waitReady(t testing.TB, g *Gateway) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		failing := ""
		for name, check := range g.Checks() {
			if err := check(context.Background()); err != nil {
				failing += name + ": " + err.Error() + "; "
			}
		}
		if failing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %s", failing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// putOrg writes an organisation into the read model and waits until the
// gateway sees it.
func (e *env) putOrg(t testing.TB, id, status string, maxCalls int64) {
	t.Helper()
	b, _ := json.Marshal(events.OrgData{OrganizationID: id, Name: id, Slug: id, PlanTier: "pro", Status: status,
		Limits: events.Limits{MaxAgents: 10, MaxCallsPerDay: maxCalls, MaxTokensPerDay: 10}, UpdatedAt: time.Now().UTC()})
	if _, err := e.kv.Put(context.Background(), id, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if o, ok := e.gw.orgs.Get(id); ok && o.Status == status && o.MaxCallsPerDay == maxCalls {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("org %s not seen by the gateway", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   string
	echo   echoed
	prob   map[string]any
}

func (e *env) do(t testing.TB, method, path, token string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, &out.prob)
	} else {
		_ = json.Unmarshal(b, &out.echo)
	}
	return out
}

func configEnv(vars map[string]string) *config.Env {
	return config.New(func(k string) string { return vars[k] })
}
