package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/webhook"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// testConfig is a configuration with short timings, endpoints on loopback
// allowed.
func testConfig() webhook.Config {
	cfg := webhook.DefaultConfig()
	cfg.AllowPrivate = loopback
	cfg.Timeout = 2 * time.Second
	cfg.RetrySchedule = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}
	cfg.PollInterval = 10 * time.Millisecond
	cfg.SecretKey = bytes.Repeat([]byte{9}, 32)
	return cfg
}

type env struct {
	nats  *natstest.Server
	db    *sqlstore.DB
	nc    *nats.Conn
	js    jetstream.JetStream
	codec *authn.Codec
	orgID string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "webhook.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	return &env{nats: srv, db: db, nc: nc, js: js, codec: codec, orgID: uuid.NewString()}
}

// service builds a service over the env; run starts its background work.
func (e *env) service(t *testing.T, cfg webhook.Config, run bool) http.Handler {
	t.Helper()
	return e.serviceWithLogger(t, cfg, run, nil)
}

// serviceWithLogger is service with the service's logger (nil: discarded).
func (e *env) serviceWithLogger(t *testing.T, cfg webhook.Config, run bool, logger *slog.Logger) http.Handler {
	t.Helper()
	svc, err := webhook.New(context.Background(), cfg, &svcrun.Deps{Service: "webhook", Registry: prometheus.NewRegistry(),
		DB: e.db, NATS: e.nc, JS: e.js, Codec: e.codec, Logger: logger})
	if err != nil {
		t.Fatalf("webhook.New = %v", err)
	}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := svc.Run(ctx); err != nil {
				t.Errorf("Run = %v", err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	return svc.Handler()
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func identity(orgID string, scopes ...string) *authn.Identity {
	return &authn.Identity{Subject: uuid.NewString(), OrgID: orgID, Scopes: scopes}
}

func (e *env) rw() *authn.Identity { return identity(e.orgID, "webhooks:read", "webhooks:write") }

func do(t *testing.T, h http.Handler, codec *authn.Codec, id *authn.Identity, method, path, body string) response {
	t.Helper()
	req := authntest.Request(t, codec, id, method, path, body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	r := response{status: rec.Code, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// create registers an endpoint and returns its id and signing secret.
func (e *env) create(t *testing.T, h http.Handler, url string, evs ...string) (string, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"name": "test hook", "url": url, "events": evs})
	r := do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks", string(b))
	if r.status != http.StatusCreated {
		t.Fatalf("POST /webhooks = %d %s; want 201", r.status, r.raw)
	}
	return r.body["id"].(string), r.body["signingSecret"].(string)
}

// publish sends an event of the env's organisation to the stream.
func (e *env) publish(t *testing.T, typ events.Type) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, "test", e.orgID, "subject-1", map[string]string{"hello": "world"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := natsbus.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ev
}

// deliveries lists the deliveries of a webhook through the API.
func (e *env) deliveries(t *testing.T, h http.Handler, id string) []map[string]any {
	t.Helper()
	r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id+"/deliveries", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET deliveries = %d %s", r.status, r.raw)
	}
	var out []map[string]any
	for _, d := range r.body["data"].([]any) {
		out = append(out, d.(map[string]any))
	}
	return out
}

// waitFor polls cond until it holds. A bound of 5 s or more only ends a
// failing test, so it is tripled: the race detector on a loaded 2-core
// machine makes every step several times slower. Shorter bounds are part
// of what a test asserts and stay as given.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if timeout >= 5*time.Second {
		timeout *= 3
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// request is what a receiver saw.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is an httptest endpoint that records requests and answers with
// respond (200 when nil).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	conns   int
	respond func(w http.ResponseWriter, r *http.Request, n int)
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{header: r.Header.Clone(), body: body, at: time.Now()})
		n := len(rc.reqs)
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(w, r, n)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.mu.Lock()
			rc.conns++
			rc.mu.Unlock()
		}
	}
	rc.Start()
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

func (rc *receiver) connections() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conns
}

// verifySignature checks a request against secret following the Standard
// Webhooks specification, independently of the service's signer: the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>", the key is
// the base64 part of the whsec_ secret, and webhook-signature holds one or
// more space-separated "v1,<base64 HMAC-SHA256>" values.
func verifySignature(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return false
	}
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := mac.Sum(nil)
	for _, part := range strings.Split(h.Get("webhook-signature"), " ") {
		version, sig, ok := strings.Cut(part, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// logBuffer collects JSON log lines, safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the decoded log lines whose msg starts with prefix.
func (b *logBuffer) lines(prefix string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
				out = append(out, m)
			}
		}
	}
	return out
}

// subscribe collects the events published on a subject.
func (e *env) subscribe(t *testing.T, typ events.Type) func() []events.Envelope {
	t.Helper()
	var mu sync.Mutex
	var got []events.Envelope
	sub, err := e.nc.Subscribe(typ.Subject(), func(m *nats.Msg) {
		ev, err := events.Decode(m.Data)
		if err == nil {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() []events.Envelope {
		mu.Lock()
		defer mu.Unlock()
		return append([]events.Envelope(nil), got...)
	}
}

// tryService is service without the test failing on a New error.
func (e *env) tryService(cfg webhook.Config) (*webhook.Service, error) {
	return webhook.New(context.Background(), cfg, &svcrun.Deps{Service: "webhook", Registry: prometheus.NewRegistry(),
		DB: e.db, NATS: e.nc, JS: e.js, Codec: e.codec})
}
