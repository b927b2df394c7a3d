package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// throttleClock is a fixed instant 10 s into a minute, so that a one-minute
// window ends 50 s later: Retry-After is exactly 50.
func throttleClock(e *env) *time.Time {
	now := time.Now().UTC().Truncate(time.Minute).Add(time.Minute + 10*time.Second)
	e.svc.SetClock(func() time.Time { return now })
	return &now
}

// tokenFrom posts a client_secret_post request from remote (the TCP peer)
// with extra headers.
func (e *env) tokenFrom(t testing.TB, remote, id, secret string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = remote
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func wantThrottled(t testing.TB, what string, rec *httptest.ResponseRecorder, retryAfter string) {
	t.Helper()
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusTooManyRequests || body["error"] != "slow_down" || rec.Header().Get("Retry-After") != retryAfter {
		t.Fatalf("Got(%s) = %d %s Retry-After %q; want 429 slow_down Retry-After %s", what, rec.Code, rec.Body, rec.Header().Get("Retry-After"), retryAfter)
	}
}

// TestAttackClientSecretBruteForceThrottled: 150 wrong secrets in a burst
// get 401 for the first 10 (the default limit per client id and minute)
// and 429 with Retry-After for the rest; during the window the right
// secret is refused too (else the block would not slow guessing); once the
// window has passed it works again.
func TestAttackClientSecretBruteForceThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := throttleClock(e)
	a := e.createAgent(t, "org-1", "victim@x.io", "")
	cred := e.createCredential(t, "org-1", a.AgentID, "")
	var unauthorized, throttled int
	for i := range 150 {
		// Blocked attempts are not counted: the address (100 a minute) never reaches its limit.
		rec := e.token(t, tokenReq{id: a.AgentID, secret: "ais_wrong-" + uuid.NewString(), basic: i%2 == 0})
		switch rec.Code {
		case http.StatusUnauthorized:
			unauthorized++
			if throttled > 0 {
				t.Fatalf("attempt %d = 401 after a 429; want 429 until the window ends", i+1)
			}
		case http.StatusTooManyRequests:
			throttled++
			wantThrottled(t, "wrong secret past the limit", rec, "50")
		default:
			t.Fatalf("attempt %d = %d %s; want 401 or 429", i+1, rec.Code, rec.Body)
		}
	}
	if unauthorized != domain.DefaultAuthFailClientLimit || throttled != 150-domain.DefaultAuthFailClientLimit {
		t.Errorf("Got(401s, 429s) = %d, %d; want %d, %d", unauthorized, throttled, domain.DefaultAuthFailClientLimit, 150-domain.DefaultAuthFailClientLimit)
	}
	wantThrottled(t, "right secret during the window", e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}), "50")
	*now = now.Add(50 * time.Second) // the next window
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != http.StatusOK {
		t.Errorf("Got(right secret after the window) = %d %s; want 200", rec.Code, rec.Body)
	}
}

// TestAttackPerAddressThrottleAcrossClientIDs: an attacker spreading
// guesses over many client ids is stopped by the per-address limit, for
// every client id from that address; other addresses are not affected.
// A client-sent X-Forwarded-For, or an X-Agentidp-Client-Addr not signed
// with the cluster key, does not change the address that is counted.
func TestAttackPerAddressThrottleAcrossClientIDs(t *testing.T) {
	t.Parallel()
	e := newEnvFull(t, envOptions{tune: func(s *domain.Settings) {
		s.AuthThrottle = domain.AuthThrottleSettings{ClientLimit: 100, AddrLimit: 5, Window: time.Minute}
	}})
	throttleClock(e)
	a := e.createAgent(t, "org-1", "bystander@x.io", "")
	cred := e.createCredential(t, "org-1", a.AgentID, "")
	other, _ := authn.NewCodec([]byte(strings.Repeat("x", 32)))
	const attacker = "203.0.113.9:4444"
	for i := range 5 {
		h := map[string]string{"X-Forwarded-For": "198.51.100." + string(rune('1'+i)), "X-Real-Ip": "198.51.100.99",
			authn.ClientAddrHeader: other.SignClientAddr("198.51.100.7")}
		if rec := e.tokenFrom(t, attacker, uuid.NewString(), "ais_guess", h); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d = %d %s; want 401", i+1, rec.Code, rec.Body)
		}
	}
	wantThrottled(t, "unknown client from the attacker's address", e.tokenFrom(t, attacker, uuid.NewString(), "ais_guess", nil), "50")
	wantThrottled(t, "real client, right secret, attacker's address", e.tokenFrom(t, attacker, a.AgentID, cred.ClientSecret,
		map[string]string{"X-Forwarded-For": "192.0.2.200"}), "50")
	if rec := e.tokenFrom(t, "192.0.2.200:1", a.AgentID, cred.ClientSecret, nil); rec.Code != http.StatusOK {
		t.Errorf("Got(right secret from another address) = %d %s; want 200", rec.Code, rec.Body)
	}
	// The gateway's signed address is the one that counts.
	gw := "10.0.0.5:8080" // the gateway as the token service's TCP peer
	signed := func(addr string) map[string]string {
		return map[string]string{authn.ClientAddrHeader: e.codec.SignClientAddr(addr)}
	}
	wantThrottled(t, "attacker's address signed by the gateway", e.tokenFrom(t, gw, uuid.NewString(), "ais_guess", signed("203.0.113.9")), "50")
	if rec := e.tokenFrom(t, gw, a.AgentID, cred.ClientSecret, signed("192.0.2.201")); rec.Code != http.StatusOK {
		t.Errorf("Got(right secret, another signed address) = %d %s; want 200", rec.Code, rec.Body)
	}
}

// TestAttackMalformedClientAuthCounted: broken Authorization headers count
// as failed authentications too, so they cannot be used to probe for free.
func TestAttackMalformedClientAuthCounted(t *testing.T) {
	t.Parallel()
	e := newEnvFull(t, envOptions{tune: func(s *domain.Settings) {
		s.AuthThrottle = domain.AuthThrottleSettings{ClientLimit: 100, AddrLimit: 3, Window: time.Minute}
	}})
	throttleClock(e)
	for i := range 4 {
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic !!!not-base64")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		want := http.StatusUnauthorized
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if rec.Code != want {
			t.Fatalf("malformed attempt %d = %d %s; want %d", i+1, rec.Code, rec.Body, want)
		}
	}
}

// TestAttackAuthFailedAuditedInClientOrg: a wrong secret for a known agent
// emits auth.failed in the agent's organisation, naming the agent, the
// method, the reason and the source address, and never the secret; an
// unknown client id's failure belongs to no organisation.
func TestAttackAuthFailedAuditedInClientOrg(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-7", "audited@x.io", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.AuthFailed.Subject()}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "ais_this-guess-must-never-be-logged"
	if rec := e.tokenFrom(t, "203.0.113.44:5555", a.AgentID, secret, nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong secret = %d; want 401", rec.Code)
	}
	unknown := uuid.NewString()
	if rec := e.tokenFrom(t, "203.0.113.44:5555", unknown, secret, nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("unknown client = %d; want 401", rec.Code)
	}
	got := map[string]events.Envelope{}
	raws := map[string]string{}
	for len(got) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("auth.failed events: got %d, then %v; want 2", len(got), err)
		}
		ev, err := events.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		var d events.AuthFailedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		got[d.ClientID], raws[d.ClientID] = ev, string(msg.Data())
	}
	ev := got[a.AgentID]
	var d events.AuthFailedData
	_ = json.Unmarshal(ev.Data, &d)
	if ev.OrgID != "org-7" || ev.Subject != a.AgentID || d.Reason != "invalid_secret" || d.Method != "client_secret_post" || d.SourceAddress != "203.0.113.44" {
		t.Errorf("Got(auth.failed of a known agent) = org %q subject %q %+v; want org-7, the agent, invalid_secret, client_secret_post, 203.0.113.44", ev.OrgID, ev.Subject, d)
	}
	if ev := got[unknown]; ev.OrgID != "" || ev.Subject != "" {
		t.Errorf("Got(auth.failed of an unknown client) = org %q subject %q; want none", ev.OrgID, ev.Subject)
	}
	for id, raw := range raws {
		if strings.Contains(raw, secret) || strings.Contains(raw, "must-never") {
			t.Errorf("Got(auth.failed for %s) = %s; want no secret", id, raw)
		}
	}
}

// TestAttackAssertionGuessingThrottled: private_key_jwt failures count
// against the client id named in the assertion, and once it is blocked a
// valid assertion is refused too.
func TestAttackAssertionGuessingThrottled(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, keyEnvOptions{tune: func(s *domain.Settings) {
		s.AuthThrottle = domain.AuthThrottleSettings{ClientLimit: 2, AddrLimit: 100, Window: time.Minute}
	}})
	now := time.Now() // fixed: both failures fall in one window
	e.svc.SetClock(func() time.Time { return now })
	a := e.createAgent(t, "org-1", "keyed@x.io", "")
	k, j := genKey(t, jose.ES256)
	e.registerKey(t, "org-1", a.AgentID, j)
	forged, _ := genKey(t, jose.ES256)
	for i := range 2 {
		if rec := e.tokenForm(t, assertionForm(assertion(t, forged, a.AgentID, nil)), ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("forged assertion %d = %d %s; want 401", i+1, rec.Code, rec.Body)
		}
	}
	rec := e.tokenForm(t, assertionForm(assertion(t, k, a.AgentID, nil)), "")
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusTooManyRequests || body["error"] != "slow_down" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("Got(valid assertion of a blocked client) = %d %s Retry-After %q; want 429 slow_down with Retry-After", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
}
