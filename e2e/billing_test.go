package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	billingWebhookSecret = "whsec_test"
	billingGrace         = 2 * time.Second
)

// TestBillingJourney runs token, tier, analytics, billing and gateway as
// separate processes over PostgreSQL, Redis, NATS (TCP) and stripe-mock and
// walks a paid plan's life through the gateway only: a free organisation
// hits its 10-agent limit, checks out, Stripe's signed webhooks make it pro
// (the 11th agent registers), the subscription is deleted, the organisation
// keeps pro for the grace period and is then free again (registration is
// refused). Bad signatures change nothing; a duplicated event applies once.
func TestBillingJourney(t *testing.T) {
	mock := startStripeMock(t)
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	bin := binaries(t)
	nats := natstest.Start(t)
	_, js := nats.Connect(t)

	prefix := "e2e_bill_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() { dropBillingSchemas(t, pgURL, prefix) })

	gatewayAddr := freeAddr(t)
	issuer := "http://" + gatewayAddr
	common := []string{
		"NATS_URL=" + nats.URL(),
		"AGENTIDP_INTERNAL_KEY=" + hexKey(testKey),
		"LOG_LEVEL=info",
	}
	tokenSecrets := tokenServiceEnv(issuer)
	adminID, adminSecret := bootstrapAdmin(t, bin, pgURL, prefix, issuer)

	names := []string{"token", "tier", "analytics", "billing", "gateway"}
	httpAddr, internalAddr := map[string]string{}, map[string]string{}
	for _, n := range names {
		httpAddr[n], internalAddr[n] = freeAddr(t), freeAddr(t)
	}
	httpAddr["gateway"] = gatewayAddr
	db := func(svc string) []string {
		return []string{"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + svc, "REDIS_URL=" + redisURL}
	}
	envFor := map[string][]string{
		"token": append(db("token"), tokenSecrets...),
		"tier": append(db("tier"),
			"TIER_DOWNGRADE_GRACE="+billingGrace.String(),
			"TIER_DOWNGRADE_CHECK_INTERVAL=1s"), // the smallest the tier service accepts
		"analytics": append(db("analytics"), "ANALYTICS_CHECKPOINT_KEY="+hexKey("checkpoint-key")),
		"billing": append(db("billing"),
			"STRIPE_SECRET_KEY=sk_test_123",
			"STRIPE_API_BASE="+mock,
			"BILLING_STRIPE_WEBHOOK_SECRET="+billingWebhookSecret,
			"BILLING_PRICE_PRO=price_pro",
			"BILLING_PRICE_ENTERPRISE=price_ent"),
		"gateway": {"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer,
			"TOKEN_SERVICE_URL=http://" + httpAddr["token"],
			"TIER_SERVICE_URL=http://" + httpAddr["tier"],
			"ANALYTICS_SERVICE_URL=http://" + httpAddr["analytics"],
			"BILLING_SERVICE_URL=http://" + httpAddr["billing"]},
	}
	procs := map[string]*proc{}
	for _, n := range names {
		env := append(append([]string{"HTTP_ADDR=" + httpAddr[n], "INTERNAL_ADDR=" + internalAddr[n]}, common...), envFor[n]...)
		procs[n] = start(t, n, bin+"/"+n, env)
	}
	for _, n := range names {
		waitReady(t, procs[n], "http://"+internalAddr[n]+"/health/ready")
	}

	c := newClient(t, issuer)
	// The operator grants the org's billing agent billing scopes, so it
	// must hold them itself (no agent grants what it lacks).
	admin, r := c.token(adminID, adminSecret, "admin:orgs agents:read agents:write billing:read billing:write")
	c.mustStatus(r, http.StatusOK, "admin token")

	r = c.do(http.MethodPost, "/api/v1/organizations", admin, map[string]any{
		"name": "Billing Co", "slug": fmt.Sprintf("billing-%d", time.Now().UnixNano()), "planTier": "free"})
	c.mustStatus(r, http.StatusCreated, "create free organization")
	var org struct {
		OrganizationID string `json:"organizationId"`
	}
	r.decode(t, &org)
	orgID := org.OrganizationID

	// The org's billing caller: billing:write is what checkout asks of a
	// member of the organisation (no platform-wide scope needed).
	billingScopes := []string{"agents:read", "billing:read", "billing:write"}
	// The token service learns of the new organisation through NATS KV.
	var agent struct {
		AgentID string `json:"agentId"`
	}
	eventually(t, 10*time.Second, func() bool {
		r = c.do(http.MethodPost, "/api/v1/agents", admin, agentBody(orgID, "billing-0", billingScopes))
		return r.Status == http.StatusCreated
	}, func() string { return fmt.Sprintf("create the org's first agent = %d %s", r.Status, r.Body) })
	r.decode(t, &agent)
	r = c.do(http.MethodPost, "/api/v1/agents/"+agent.AgentID+"/credentials", admin, map[string]any{})
	c.mustStatus(r, http.StatusCreated, "create credential for the billing agent")
	var cred struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	r.decode(t, &cred)
	member, r := c.token(cred.ClientID, cred.ClientSecret, strings.Join(billingScopes, " "))
	c.mustStatus(r, http.StatusOK, "billing agent token")

	for i := 1; i < 10; i++ {
		c.mustStatus(c.do(http.MethodPost, "/api/v1/agents", admin, agentBody(orgID, fmt.Sprintf("agent-%d", i), nil)),
			http.StatusCreated, fmt.Sprintf("create agent %d of 10", i+1))
	}
	eleventh := agentBody(orgID, "agent-10", nil)
	r = c.do(http.MethodPost, "/api/v1/agents", admin, eleventh)
	expectProblem(t, r, http.StatusTooManyRequests, "TIER_LIMIT_EXCEEDED", "11th agent on free")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("Got(Retry-After of the 11th agent's 429) = %q; want a value", r.Header.Get("Retry-After"))
	}
	expectTier(t, c, member, "free", 10)

	// A bad signature is a 400 and changes nothing.
	updated := events.BillingSubscriptionUpdated.Subject()
	before := billingSubscription(t, c, member)
	if before.Tier != "free" || before.Status != "none" {
		t.Errorf("Got(subscription before checkout) = %+v; want free/none", before)
	}
	now := time.Now()
	checkout := stripeEventJSON(t, "evt_cs_"+orgID, "checkout.session.completed", now.Unix(), map[string]any{
		"id": "cs_" + orgID, "object": "checkout.session", "client_reference_id": orgID, "customer": "cus_e2e",
		"subscription": "sub_e2e", "payment_status": "paid", "mode": "subscription",
		"metadata": map[string]string{"organizationId": orgID, "tier": "pro"}})
	for _, tc := range []struct {
		name   string
		secret string
	}{
		{name: "wrong secret", secret: "whsec_wrong"},
		{name: "no signature", secret: ""},
	} {
		st, body, err := deliverWebhook(c.http, issuer, checkout, tc.secret, now)
		if err != nil || st != http.StatusBadRequest {
			t.Errorf("Got(webhook with %s) = %d %s %v; want 400", tc.name, st, body, err)
		}
	}
	if after := billingSubscription(t, c, member); after != before {
		t.Errorf("Got(subscription after bad signatures) = %+v; want unchanged %+v", after, before)
	}
	if n := streamCount(t, js, updated); n != 0 {
		t.Errorf("Got(%s after bad signatures) = %d; want 0", updated, n)
	}

	// Checkout through stripe-mock.
	r = c.do(http.MethodPost, "/api/v1/billing/checkout", member, map[string]any{"tier": "pro"})
	c.mustStatus(r, http.StatusCreated, "POST /api/v1/billing/checkout")
	var session struct {
		URL string `json:"url"`
	}
	r.decode(t, &session)
	if session.URL == "" {
		t.Errorf("Got(checkout url) = %q; want a Stripe URL (%s)", session.URL, r.Body)
	}

	// Stripe delivers checkout.session.completed five times at once: one
	// effect.
	var wg sync.WaitGroup
	statuses := make([]string, 5)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, body, err := deliverWebhook(c.http, issuer, checkout, billingWebhookSecret, now)
			statuses[i] = fmt.Sprintf("%d %s %v", st, bytes.TrimSpace(body), err)
			if err == nil && st == http.StatusOK {
				statuses[i] = "200"
			}
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != "200" {
			t.Errorf("Got(concurrent checkout.session.completed delivery %d) = %s; want 200", i, s)
		}
	}
	end := now.Add(30 * 24 * time.Hour).Unix()
	subEvent := func(id, typ, status string, created int64) []byte {
		return stripeEventJSON(t, id, typ, created, map[string]any{
			"id": "sub_e2e", "object": "subscription", "customer": "cus_e2e", "status": status, "cancel_at_period_end": false,
			"metadata": map[string]string{"organizationId": orgID},
			"items": map[string]any{"object": "list", "data": []any{map[string]any{
				"id": "si_e2e", "current_period_end": end, "price": map[string]any{"id": "price_pro"}}}}})
	}
	mustDeliver(t, c, issuer, subEvent("evt_sub_created_"+orgID, "customer.subscription.created", "active", now.Unix()), "customer.subscription.created")

	awaitTier(t, c, member, "pro", 100, 10*time.Second)
	if s := billingSubscription(t, c, member); s.Tier != "pro" || s.EffectiveTier != "pro" || s.Status != "active" || s.StripeSubscriptionID != "sub_e2e" {
		t.Errorf("Got(subscription after checkout) = %+v; want pro/pro/active sub_e2e", s)
	}
	// Tier has applied the plan, so its one event is in the stream; the
	// duplicates and the same-plan subscription.created published nothing.
	if n := streamCount(t, js, updated); n != 1 {
		t.Errorf("Got(%s after 5 duplicate checkouts + created) = %d; want 1", updated, n)
	}

	// The token service learns the pro limits through KV.
	eventually(t, 10*time.Second, func() bool {
		r = c.do(http.MethodPost, "/api/v1/agents", admin, eleventh)
		return r.Status == http.StatusCreated
	}, func() string { return fmt.Sprintf("11th agent on pro = %d %s; want 201", r.Status, r.Body) })

	// Deleted: pro for the grace period, then free.
	deleted := time.Now()
	mustDeliver(t, c, issuer, subEvent("evt_sub_deleted_"+orgID, "customer.subscription.deleted", "canceled", now.Unix()+1), "customer.subscription.deleted")
	if s := billingSubscription(t, c, member); s.Status != "canceled" || s.EffectiveTier != "free" {
		t.Errorf("Got(subscription after deletion) = %+v; want canceled, effective free", s)
	}
	// A quarter of the grace: far longer than the event takes to reach
	// tier, so an immediate downgrade would show.
	time.Sleep(billingGrace / 4)
	st := tierStatus(t, c, member)
	if time.Since(deleted) < billingGrace && (st.Tier != "pro" || st.Limits.MaxAgents != 100) {
		t.Errorf("Got(tiers/status within the grace after the deletion) = %+v; want pro with maxAgents 100", st)
	}
	awaitTier(t, c, member, "free", 10, 15*time.Second)
	if since := time.Since(deleted); since < billingGrace {
		t.Errorf("Got(downgrade after) = %v; want at least the grace %v", since, billingGrace)
	}

	// 11 agents on a 10-agent plan: registration is refused again (polled:
	// the token service learns the free limits through KV).
	attempt := 0
	eventually(t, 10*time.Second, func() bool {
		attempt++
		r = c.do(http.MethodPost, "/api/v1/agents", admin, agentBody(orgID, fmt.Sprintf("late-%d", attempt), nil))
		return r.Status == http.StatusTooManyRequests
	}, func() string { return fmt.Sprintf("agent after the downgrade = %d %s; want 429", r.Status, r.Body) })
	expectProblem(t, r, http.StatusTooManyRequests, "TIER_LIMIT_EXCEEDED", "agent after the downgrade")
	if n := streamCount(t, js, updated); n != 2 {
		t.Errorf("Got(%s at the end) = %d; want 2 (free→pro, pro→free)", updated, n)
	}
}

// startStripeMock runs stripe-mock on free ports until the test ends and
// returns its HTTP base URL. Without the binary the test fails in CI and is
// skipped elsewhere.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		gopath, gerr := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "stripe-mock")
		if _, serr := os.Stat(bin); gerr != nil || serr != nil {
			msg := "stripe-mock not on PATH nor in $(go env GOPATH)/bin (go install github.com/stripe/stripe-mock@latest)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip("skipping: " + msg)
		}
	}
	addr, tlsAddr := freeAddr(t), freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	tlsPort := tlsAddr[strings.LastIndex(tlsAddr, ":")+1:]
	p := start(t, "stripe-mock", bin, nil, "-http-port", port, "-https-port", tlsPort)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return "http://" + addr
		}
		select {
		case <-p.done:
			t.Fatalf("stripe-mock exited:\n%s", tail(p.output(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not listen on %s:\n%s", addr, tail(p.output(), 4000))
		}
	}
}

func dropBillingSchemas(t *testing.T, url, prefix string) {
	dropSchemas(t, url, prefix)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("drop billing schema: %v", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{prefix + "billing"}.Sanitize()+" CASCADE"); err != nil {
		t.Logf("drop schema %s: %v", prefix+"billing", err)
	}
}

// agentBody is a registration in org by the operator (nil scopes: default).
func agentBody(org, name string, scopes []string) map[string]any {
	b := map[string]any{
		"email": name + "@billing.example", "agentType": "custom", "version": "1.0.0",
		"capabilities": []string{"agents:read"}, "owner": "platform-team", "deploymentEnv": "production",
		"organizationId": org,
	}
	if scopes != nil {
		b["scopes"] = scopes
	}
	return b
}

func expectProblem(t *testing.T, r response, status int, code, what string) {
	t.Helper()
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.Body, &p)
	if r.Status != status || p.Code != code {
		t.Fatalf("Got(%s) = %d %s; want %d %s", what, r.Status, r.Body, status, code)
	}
}

type tierStatusBody struct {
	Tier   string `json:"tier"`
	Limits struct {
		MaxAgents int64 `json:"maxAgents"`
	} `json:"limits"`
}

func tierStatus(t *testing.T, c *client, token string) tierStatusBody {
	t.Helper()
	r := c.do(http.MethodGet, "/api/v1/tiers/status", token, nil)
	c.mustStatus(r, http.StatusOK, "GET /api/v1/tiers/status")
	var s tierStatusBody
	r.decode(t, &s)
	return s
}

func expectTier(t *testing.T, c *client, token, tier string, maxAgents int64) {
	t.Helper()
	if s := tierStatus(t, c, token); s.Tier != tier || s.Limits.MaxAgents != maxAgents {
		t.Errorf("Got(tiers/status) = %+v; want %s with maxAgents %d", s, tier, maxAgents)
	}
}

func awaitTier(t *testing.T, c *client, token, tier string, maxAgents int64, d time.Duration) {
	t.Helper()
	var s tierStatusBody
	eventually(t, d, func() bool {
		s = tierStatus(t, c, token)
		return s.Tier == tier && s.Limits.MaxAgents == maxAgents
	}, func() string {
		return fmt.Sprintf("Got(tiers/status) = %+v after %v; want %s with maxAgents %d", s, d, tier, maxAgents)
	})
}

type subscriptionBody struct {
	Tier                 string `json:"tier"`
	EffectiveTier        string `json:"effectiveTier"`
	Status               string `json:"status"`
	StripeSubscriptionID string `json:"stripeSubscriptionId"`
}

func billingSubscription(t *testing.T, c *client, token string) subscriptionBody {
	t.Helper()
	r := c.do(http.MethodGet, "/api/v1/billing/subscription", token, nil)
	c.mustStatus(r, http.StatusOK, "GET /api/v1/billing/subscription")
	var s subscriptionBody
	r.decode(t, &s)
	return s
}

// stripeEventJSON builds a Stripe event as Stripe sends it.
func stripeEventJSON(t *testing.T, id, typ string, created int64, object map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": created,
		"api_version": "2025-03-31.basil", "data": map[string]any{"object": object}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stripeSignature is the Stripe-Signature header stripe-go's
// webhook.GenerateTestSignedPayload produces (v1 = HMAC-SHA256 of
// "t.payload" keyed with the whole secret); written out here so the e2e
// module needs no Stripe SDK.
func stripeSignature(payload []byte, secret string, ts time.Time) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts.Unix())
	mac.Write(payload)
	return fmt.Sprintf("t=%d,v1=%s", ts.Unix(), hex.EncodeToString(mac.Sum(nil)))
}

// deliverWebhook posts payload to the gateway's public Stripe webhook,
// signed with secret at ts (unsigned when secret is empty). It does not
// touch t, so goroutines may call it.
func deliverWebhook(hc *http.Client, base string, payload []byte, secret string, ts time.Time) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/billing/webhook", bytes.NewReader(payload))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Stripe-Signature", stripeSignature(payload, secret, ts))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), nil
}

func mustDeliver(t *testing.T, c *client, base string, payload []byte, what string) {
	t.Helper()
	st, body, err := deliverWebhook(c.http, base, payload, billingWebhookSecret, time.Now())
	if err != nil || st != http.StatusOK {
		t.Fatalf("Got(webhook %s) = %d %s %v; want 200", what, st, body, err)
	}
}

// streamCount is how many messages on subject the event stream holds
// (JetStream drops re-published duplicates by event id).
func streamCount(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("open stream %s: %v", events.StreamName, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Subjects[subject]
}
