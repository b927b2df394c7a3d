package billing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/billing"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stripe/stripe-go/v82/webhook"
)

const whsec = "whsec_test_secret"

var (
	mockOnce sync.Once
	mockURL  string
	mockErr  error
	mockCmd  *exec.Cmd
)

// TestMain stops the stripe-mock the tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	if mockCmd != nil && mockCmd.Process != nil {
		_ = mockCmd.Process.Kill()
	}
	os.Exit(code)
}

// stripeMock starts one stripe-mock for the test binary on a free port.
// Without the binary the test fails in CI and is skipped elsewhere.
func stripeMock(t *testing.T) string {
	t.Helper()
	mockOnce.Do(func() {
		bin, err := exec.LookPath("stripe-mock")
		if err != nil {
			gopath := os.Getenv("GOPATH")
			if gopath == "" {
				home, _ := os.UserHomeDir()
				gopath = filepath.Join(home, "go")
			}
			bin = filepath.Join(gopath, "bin", "stripe-mock")
			if _, err := os.Stat(bin); err != nil {
				mockErr = fmt.Errorf("stripe-mock not found (go install github.com/stripe/stripe-mock@latest)")
				return
			}
		}
		port, sport := freePort(), freePort()
		cmd := exec.Command(bin, "-http-port", fmt.Sprint(port), "-https-port", fmt.Sprint(sport))
		if err := cmd.Start(); err != nil {
			mockErr = fmt.Errorf("start stripe-mock: %w", err)
			return
		}
		mockCmd = cmd
		go func() { _ = cmd.Wait() }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				mockURL = "http://" + addr
				return
			}
		}
		_ = cmd.Process.Kill()
		mockErr = fmt.Errorf("stripe-mock did not listen on %s", addr)
	})
	if mockErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("stripe-mock: %v", mockErr)
		}
		t.Skipf("skipping: %v", mockErr)
	}
	return mockURL
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type harness struct {
	handler http.Handler
	codec   *authn.Codec
	js      jetstream.JetStream
	cache   cache.Cache
	db      *sqlstore.DB
	svc     *billing.Service
	nats    *natstest.Server
}

func openSQLite(t *testing.T, name string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func enabledConfig(t *testing.T) billing.Config {
	t.Helper()
	cfg := billing.DefaultConfig()
	cfg.StripeSecretKey = "sk_test_123"
	cfg.StripeAPIBase = stripeMock(t)
	cfg.WebhookSecret = whsec
	cfg.PricePro, cfg.PriceEnterprise = "price_pro", "price_ent"
	return cfg
}

// newHarness starts billing (Run included) on SQLite and embedded NATS; srv
// may be shared with a tier service.
func newHarness(t *testing.T, cfg billing.Config, srv *natstest.Server, c cache.Cache) *harness {
	t.Helper()
	ctx := context.Background()
	if srv == nil {
		srv = natstest.Start(t)
	}
	if c == nil {
		c = cache.NewMemory(cache.MemoryOptions{})
		t.Cleanup(func() { c.Close() })
	}
	nc, js := srv.Connect(t)
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	db := openSQLite(t, "billing.db")
	svc, err := billing.New(ctx, cfg, &svcrun.Deps{Service: "billing", Registry: prometheus.NewRegistry(), DB: db, Cache: c, NATS: nc, JS: js, Codec: codec})
	if err != nil {
		t.Fatalf("billing.New = %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := svc.Run(runCtx); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &harness{handler: svc.Handler(), codec: codec, js: js, cache: c, db: db, svc: svc, nats: srv}
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func (h *harness) do(t *testing.T, id *authn.Identity, method, path, body string) response {
	t.Helper()
	req := authntest.Request(t, h.codec, id, method, path, body)
	return serve(h.handler, req)
}

func serve(handler http.Handler, req *http.Request) response {
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	r := response{status: rec.Code, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// webhook posts payload signed at ts with secret (no signature when secret
// is empty).
func (h *harness) webhook(t *testing.T, payload []byte, secret string, ts time.Time) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/billing/webhook", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: ts})
		req.Header.Set("Stripe-Signature", sp.Header)
	}
	return serve(h.handler, req)
}

func expect(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.body["code"] != code) {
		t.Errorf("Got(status, code) = %d, %v (%s); want %d, %s", r.status, r.body["code"], r.raw, status, code)
	}
}

func member(org string, scopes ...string) *authn.Identity {
	return &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: scopes}
}

// stripeEvent builds a Stripe event JSON.
func stripeEvent(id, typ string, created int64, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": created, "api_version": "2025-03-31.basil",
		"data": map[string]any{"object": object}})
	return b
}

func subscriptionObject(org, sub, cus, status, price string, periodEnd int64, cancel bool) map[string]any {
	return map[string]any{"id": sub, "object": "subscription", "customer": cus, "status": status, "cancel_at_period_end": cancel,
		"metadata": map[string]string{"organizationId": org},
		"items":    map[string]any{"object": "list", "data": []any{map[string]any{"id": "si_1", "current_period_end": periodEnd, "price": map[string]any{"id": price}}}}}
}

func checkoutObject(org, sub, cus, tier string) map[string]any {
	return map[string]any{"id": "cs_" + uuid.NewString(), "object": "checkout.session", "client_reference_id": org, "customer": cus,
		"subscription": sub, "payment_status": "paid", "mode": "subscription", "metadata": map[string]string{"organizationId": org, "tier": tier}}
}

func (h *harness) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := h.db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (h *harness) subscription(t *testing.T, org string) map[string]any {
	t.Helper()
	r := h.do(t, member(org, "billing:read"), http.MethodGet, "/api/v1/billing/subscription", "")
	expect(t, r, http.StatusOK, "")
	return r.body
}

func TestWebhookRejectsAndIgnores(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	now := time.Now()
	good := stripeEvent("evt_"+uuid.NewString(), "customer.subscription.created", now.Unix(),
		subscriptionObject(org, "sub_1", "cus_1", "active", "price_pro", now.Add(720*time.Hour).Unix(), false))
	modified := bytes.Replace(good, []byte(`"active"`), []byte(`"trialing"`), 1)
	tests := []struct {
		name    string
		payload []byte
		secret  string
		ts      time.Time
		tamper  bool
		status  int
	}{
		{"no signature", good, "", now, false, 400},
		{"wrong secret", good, "whsec_other", now, false, 400},
		{"stale timestamp", good, whsec, now.Add(-10 * time.Minute), false, 400},
		{"modified body", good, whsec, now, true, 400},
		{"not json", []byte("{"), whsec, now, false, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.tamper {
				sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: tc.payload, Secret: tc.secret, Timestamp: tc.ts})
				req := httptest.NewRequest(http.MethodPost, "/api/v1/billing/webhook", bytes.NewReader(modified))
				req.Header.Set("Stripe-Signature", sp.Header)
				r = serve(h.handler, req)
			} else {
				r = h.webhook(t, tc.payload, tc.secret, tc.ts)
			}
			expect(t, r, tc.status, "VALIDATION_ERROR")
		})
	}
	if n := h.count(t, "SELECT COUNT(*) FROM stripe_events"); n != 0 {
		t.Errorf("Got(stripe_events after rejected webhooks) = %d; want 0", n)
	}
	if s := h.subscription(t, org); s["status"] != "none" || s["tier"] != "free" {
		t.Errorf("Got(subscription after rejected webhooks) = %v; want free/none", s)
	}
	big := append([]byte(`{"id":"evt_big","x":"`), bytes.Repeat([]byte("a"), 70<<10)...)
	expect(t, h.webhook(t, append(big, '"', '}'), whsec, now), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")

	unknown := stripeEvent("evt_unknown", "charge.refunded", now.Unix(), map[string]any{"id": "ch_1", "object": "charge", "metadata": map[string]string{"organizationId": org}})
	expect(t, h.webhook(t, unknown, whsec, now), http.StatusOK, "")
	if n := h.count(t, "SELECT COUNT(*) FROM stripe_events WHERE event_id = 'evt_unknown'"); n != 1 {
		t.Errorf("Got(unknown event recorded) = %d; want 1", n)
	}
	if n := h.count(t, "SELECT COUNT(*) FROM tenant_subscriptions") + h.count(t, "SELECT COUNT(*) FROM outbox"); n != 0 {
		t.Errorf("Got(rows after unknown event) = %d; want 0", n)
	}
	// The good payload, properly signed, applies.
	expect(t, h.webhook(t, good, whsec, now), http.StatusOK, "")
	if s := h.subscription(t, org); s["tier"] != "pro" || s["status"] != "active" || s["stripeSubscriptionId"] != "sub_1" {
		t.Errorf("Got(subscription) = %v; want pro active sub_1", s)
	}
}

func TestWebhookConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	now := time.Now()
	payload := stripeEvent("evt_dup", "customer.subscription.created", now.Unix(),
		subscriptionObject(org, "sub_d", "cus_d", "active", "price_ent", now.Add(720*time.Hour).Unix(), false))
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = h.webhook(t, payload, whsec, now).status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("Got(delivery %d status) = %d; want 200", i, s)
		}
	}
	if n := h.count(t, "SELECT COUNT(*) FROM stripe_events"); n != 1 {
		t.Errorf("Got(stripe_events) = %d; want 1", n)
	}
	if n := h.count(t, "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.BillingSubscriptionUpdated.Subject()); n != 1 {
		t.Errorf("Got(billing.subscription.updated in outbox) = %d; want 1", n)
	}
	if s := h.subscription(t, org); s["tier"] != "enterprise" || s["effectiveTier"] != "enterprise" {
		t.Errorf("Got(subscription) = %v; want enterprise", s)
	}
}

func TestWebhookOutOfOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	now := time.Now()
	t0 := now.Unix() - 100
	end := now.Add(720 * time.Hour).Unix()
	steps := []struct {
		id, typ string
		created int64
		obj     map[string]any
	}{
		// Delivered out of order: updated (cancel at period end, t0+20)
		// arrives before created (t0) and before an older update (t0+10).
		{"evt_o2", "customer.subscription.updated", t0 + 20, subscriptionObject(org, "sub_o", "cus_o", "active", "price_pro", end, true)},
		{"evt_o0", "customer.subscription.created", t0, subscriptionObject(org, "sub_o", "cus_o", "incomplete", "price_pro", end, false)},
		{"evt_o1", "customer.subscription.updated", t0 + 10, subscriptionObject(org, "sub_o", "cus_o", "past_due", "price_pro", end, false)},
		{"evt_i0", "invoice.payment_failed", t0 + 5, map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_o", "subscription": "sub_o"}},
		{"evt_cs", "checkout.session.completed", t0 + 1, checkoutObject(org, "sub_o", "cus_o", "pro")},
	}
	for _, s := range steps {
		expect(t, h.webhook(t, stripeEvent(s.id, s.typ, s.created, s.obj), whsec, now), http.StatusOK, "")
	}
	s := h.subscription(t, org)
	if s["tier"] != "pro" || s["status"] != "active" || s["cancelAtPeriodEnd"] != true || s["stripeCustomerId"] != "cus_o" {
		t.Errorf("Got(subscription) = %v; want pro, active, cancelAtPeriodEnd, cus_o", s)
	}
	if s["currentPeriodEnd"] != time.Unix(end, 0).UTC().Format(time.RFC3339) {
		t.Errorf("Got(currentPeriodEnd) = %v; want %s", s["currentPeriodEnd"], time.Unix(end, 0).UTC().Format(time.RFC3339))
	}
	// Deleted, then a late update: stays canceled and free.
	expect(t, h.webhook(t, stripeEvent("evt_o3", "customer.subscription.deleted", t0+30, subscriptionObject(org, "sub_o", "cus_o", "canceled", "price_pro", end, false)), whsec, now), http.StatusOK, "")
	expect(t, h.webhook(t, stripeEvent("evt_o4", "customer.subscription.updated", t0+30, subscriptionObject(org, "sub_o", "cus_o", "active", "price_pro", end, false)), whsec, now), http.StatusOK, "")
	expect(t, h.webhook(t, stripeEvent("evt_i1", "invoice.paid", t0+40, map[string]any{"id": "in_2", "object": "invoice", "customer": "cus_o",
		"parent": map[string]any{"subscription_details": map[string]any{"subscription": "sub_o"}}}), whsec, now), http.StatusOK, "")
	if s := h.subscription(t, org); s["status"] != "canceled" || s["effectiveTier"] != "free" {
		t.Errorf("Got(subscription after delete) = %v; want canceled, effective free", s)
	}
	// Published: free→pro (active), then pro→free (canceled); the
	// incomplete/past_due steps were skipped as older.
	rows, err := h.db.QueryContext(context.Background(), "SELECT payload FROM outbox ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		e, _ := events.Decode(raw)
		var d billing.SubscriptionUpdatedData
		_ = e.DecodeData(&d)
		got = append(got, d.PreviousTier+">"+d.Tier+"/"+d.Status)
	}
	if fmt.Sprint(got) != "[free>pro/active pro>free/canceled]" {
		t.Errorf("Got(published plan changes) = %v; want [free>pro/active pro>free/canceled]", got)
	}
}

func TestCheckoutAndPortal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	writer := member(org, "billing:write")
	for _, path := range []string{"/api/v1/billing/checkout", "/api/v1/tiers/upgrade"} {
		r := h.do(t, writer, http.MethodPost, path, `{"tier":"pro","successUrl":"https://app.example.com/ok","cancelUrl":"http://localhost:3000/no"}`)
		expect(t, r, http.StatusCreated, "")
		if u, _ := r.body["url"].(string); u == "" || r.body["sessionId"] == "" || r.body["sessionId"] == nil {
			t.Errorf("POST %s = %s; want url and sessionId", path, r.raw)
		}
	}
	expect(t, h.do(t, member(org, "admin:orgs"), http.MethodPost, "/api/v1/billing/checkout", `{"tier":"enterprise"}`), http.StatusCreated, "")
	expect(t, h.do(t, writer, http.MethodPost, "/api/v1/billing/portal", ""), http.StatusNotFound, "BILLING_CUSTOMER_NOT_FOUND")

	now := time.Now()
	expect(t, h.webhook(t, stripeEvent("evt_c1", "checkout.session.completed", now.Unix(), checkoutObject(org, "sub_c", "cus_c", "pro")), whsec, now), http.StatusOK, "")
	r := h.do(t, writer, http.MethodPost, "/api/v1/billing/portal", "")
	expect(t, r, http.StatusCreated, "")
	if u, _ := r.body["url"].(string); u == "" {
		t.Errorf("POST /billing/portal = %s; want a url", r.raw)
	}
	expect(t, h.do(t, writer, http.MethodPost, "/api/v1/billing/checkout", `{"tier":"enterprise"}`), http.StatusConflict, "SUBSCRIPTION_EXISTS")
}

func TestValidationAndAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org := uuid.NewString()
	writer := member(org, "billing:write")
	for _, tc := range []struct{ name, body string }{
		{"missing tier", `{}`},
		{"free tier", `{"tier":"free"}`},
		{"unknown tier", `{"tier":"gold"}`},
		{"ftp success url", `{"tier":"pro","successUrl":"ftp://x.example/ok"}`},
		{"relative cancel url", `{"tier":"pro","cancelUrl":"/cancel"}`},
		{"javascript url", `{"tier":"pro","successUrl":"javascript:alert(1)"}`},
		{"unknown field", `{"tier":"pro","price":"price_x"}`},
		{"malformed", `{"tier":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.do(t, writer, http.MethodPost, "/api/v1/billing/checkout", tc.body), http.StatusBadRequest, "VALIDATION_ERROR")
		})
	}
	reader := member(org, "billing:read")
	none := member(org, "agents:read")
	for _, rt := range []struct {
		method, path, body string
		readerOK           bool
	}{
		{"POST", "/api/v1/billing/checkout", `{"tier":"pro"}`, false},
		{"POST", "/api/v1/tiers/upgrade", `{"tier":"pro"}`, false},
		{"POST", "/api/v1/billing/portal", ``, false},
		{"GET", "/api/v1/billing/subscription", ``, true},
		{"GET", "/api/v1/billing/usage", ``, true},
	} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			expect(t, h.do(t, nil, rt.method, rt.path, rt.body), http.StatusUnauthorized, "UNAUTHORIZED")
			expect(t, h.do(t, none, rt.method, rt.path, rt.body), http.StatusForbidden, "FORBIDDEN")
			if !rt.readerOK {
				expect(t, h.do(t, reader, rt.method, rt.path, rt.body), http.StatusForbidden, "FORBIDDEN")
			} else {
				expect(t, h.do(t, reader, rt.method, rt.path, rt.body), http.StatusOK, "")
			}
		})
	}
	if n := h.count(t, "SELECT COUNT(*) FROM tenant_subscriptions"); n != 0 {
		t.Errorf("Got(subscriptions after refused requests) = %d; want 0", n)
	}
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, billing.DefaultConfig(), nil, nil)
	if h.svc.Enabled() {
		t.Fatal("Enabled() = true without STRIPE_SECRET_KEY; want false")
	}
	org := uuid.NewString()
	writer := member(org, "billing:write")
	for _, rt := range []struct{ method, path, body string }{
		{"POST", "/api/v1/billing/checkout", `{"tier":"pro"}`},
		{"POST", "/api/v1/tiers/upgrade", `{"tier":"enterprise"}`},
		{"POST", "/api/v1/billing/portal", ``},
	} {
		r := h.do(t, writer, rt.method, rt.path, rt.body)
		expect(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if !strings.Contains(r.raw, billing.DisabledMessage) {
			t.Errorf("%s %s = %s; want message %q", rt.method, rt.path, r.raw, billing.DisabledMessage)
		}
	}
	now := time.Now()
	r := h.webhook(t, stripeEvent("evt_1", "invoice.paid", now.Unix(), map[string]any{"id": "in_1", "object": "invoice"}), "whsec_any", now)
	expect(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	expect(t, h.do(t, writer, "GET", "/api/v1/billing/subscription", ""), http.StatusOK, "")
	expect(t, h.do(t, writer, "GET", "/api/v1/billing/usage", ""), http.StatusOK, "")
	if len(h.svc.Checks()) != 0 {
		t.Errorf("Got(checks) = %v; want none (ready while disabled)", h.svc.Checks())
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, enabledConfig(t), nil, nil)
	org, other := uuid.NewString(), uuid.NewString()
	ctx := context.Background()
	now := time.Now().UTC()
	var msgs []natsbus.RawMessage
	add := func(typ events.Type, orgID string, at time.Time) events.Envelope {
		e, err := events.New(typ, "token", orgID, "", map[string]string{})
		if err != nil {
			t.Fatal(err)
		}
		e.Time = at
		b, _ := e.Encode()
		msgs = append(msgs, natsbus.RawMessage{ID: e.ID, Subject: typ.Subject(), Data: b})
		return e
	}
	for range 3 {
		add(events.TokenIssued, org, now)
	}
	add(events.AgentCreated, org, now)
	add(events.TokenIssued, other, now)
	if now.Day() > 1 {
		add(events.TokenIssued, org, now.AddDate(0, 0, -1))
	}
	if err := natsbus.PublishRaw(ctx, h.js, msgs); err != nil {
		t.Fatal(err)
	}
	// The same event published again (a redelivery) counts once.
	dup := msgs[0]
	e, _ := events.Decode(dup.Data)
	e2 := e
	b, _ := e2.Encode()
	if _, err := h.js.Publish(ctx, dup.Subject, b); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cache.IncrBy(ctx, events.CallsCounterKey(org, events.DayStamp(now)), 42, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantMonth := 3.0
	if now.Day() > 1 {
		wantMonth = 4
	}
	var r response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		r = h.do(t, member(org, "billing:read"), "GET", "/api/v1/billing/usage", "")
		if r.body["tokensThisMonth"] == wantMonth && r.body["agentsRegisteredToday"] == 1.0 {
			break
		}
	}
	if r.body["tokensToday"] != 3.0 || r.body["tokensThisMonth"] != wantMonth || r.body["agentsRegisteredToday"] != 1.0 ||
		r.body["callsToday"] != 42.0 || r.body["date"] != now.Format(time.DateOnly) {
		t.Errorf("GET /billing/usage = %s; want 3 tokens today, %v this month, 1 agent, 42 calls", r.raw, wantMonth)
	}

	// Metered reporting: the org needs a Stripe customer.
	expect(t, h.webhook(t, stripeEvent("evt_u", "checkout.session.completed", now.Unix(), checkoutObject(org, "sub_u", "cus_u", "pro")), whsec, now), http.StatusOK, "")
	n, err := h.svc.ReportUsage(ctx)
	if err != nil || n < 1 {
		t.Fatalf("ReportUsage = %d, %v; want at least 1 counter reported", n, err)
	}
	if n, err := h.svc.ReportUsage(ctx); err != nil || n != 0 {
		t.Errorf("ReportUsage(again) = %d, %v; want 0 (all marked reported)", n, err)
	}
}
