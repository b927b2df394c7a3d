package webhook_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

func TestDeliveryEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), true)
	rc := newReceiver(t, nil)
	id, secret := e.create(t, h, rc.URL+"/hook", "agent.created")
	e.publish(t, events.TokenIssued) // not subscribed
	ev := e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(rc.requests()) >= 1 })
	req := rc.requests()[0]
	if !verifySignature(secret, req.header, req.body) {
		t.Errorf("signature %q does not verify", req.header.Get("webhook-signature"))
	}
	if verifySignature("whsec_"+strings.Repeat("A", 44), req.header, req.body) {
		t.Error("the signature verifies with another secret")
	}
	for name, want := range map[string]string{"webhook-id": ev.ID, "Content-Type": "application/json", "User-Agent": "AgentIdP-Webhooks"} {
		if got := req.header.Get(name); got != want {
			t.Errorf("header %s = %q; want %q", name, got, want)
		}
	}
	got, err := events.Decode(req.body)
	if err != nil || got.ID != ev.ID || got.Type != events.AgentCreated || got.OrgID != e.orgID || !bytes.Equal(got.Data, ev.Data) {
		t.Errorf("body = %s (%v); want the event envelope", req.body, err)
	}
	waitFor(t, 5*time.Second, "status delivered", func() bool {
		ds := e.deliveries(t, h, id)
		return len(ds) == 1 && ds[0]["status"] == "delivered"
	})
	d := e.deliveries(t, h, id)[0]
	if d["event_id"] != ev.ID || d["event_type"] != "agent.created" || d["attempts"] != float64(1) ||
		d["last_status_code"] != float64(200) || d["delivered_at"] == nil {
		t.Errorf("delivery = %v", d)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("receiver got %d requests; want 1 (token.issued is not subscribed)", n)
	}
}

func TestRetriesThenDeadLetterThenRedeliver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), true)
	failed := e.subscribe(t, events.WebhookDeliveryFailed)
	var healthy atomic.Bool
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if healthy.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	id, _ := e.create(t, h, rc.URL, "*")
	ev := e.publish(t, events.AgentUpdated)
	waitFor(t, 5*time.Second, "dead letter", func() bool {
		ds := e.deliveries(t, h, id)
		return len(ds) == 1 && ds[0]["status"] == "dead_letter"
	})
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Errorf("attempts = %d; want 3 (1 + a schedule of 2)", len(reqs))
	}
	for i, r := range reqs {
		if r.header.Get("webhook-id") != ev.ID {
			t.Errorf("attempt %d webhook-id = %q; want the event id %q on every retry", i, r.header.Get("webhook-id"), ev.ID)
		}
	}
	d := e.deliveries(t, h, id)[0]
	if d["attempts"] != float64(3) || d["last_status_code"] != float64(500) || d["last_error"] != "HTTP 500" {
		t.Errorf("dead letter = %v", d)
	}
	waitFor(t, 5*time.Second, "webhook.delivery.failed", func() bool { return len(failed()) == 1 })
	var data map[string]any
	_ = json.Unmarshal(failed()[0].Data, &data)
	if data["webhook_id"] != id || data["event_id"] != ev.ID || failed()[0].OrgID != e.orgID {
		t.Errorf("webhook.delivery.failed = %s", failed()[0].Data)
	}
	r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, "")
	if r.body["failure_count"] != float64(3) || r.body["active"] != true {
		t.Errorf("webhook after dead letter = %s; want failure_count 3, still active", r.raw)
	}

	healthy.Store(true)
	r = do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/deliveries/"+d["id"].(string)+"/redeliver", "")
	if r.status != http.StatusAccepted || r.body["status"] != "pending" {
		t.Fatalf("redeliver = %d %s; want 202 pending", r.status, r.raw)
	}
	waitFor(t, 5*time.Second, "redelivered", func() bool {
		ds := e.deliveries(t, h, id)
		return ds[0]["status"] == "delivered"
	})
	if last := rc.requests()[len(rc.requests())-1]; last.header.Get("webhook-id") != ev.ID {
		t.Errorf("redelivery webhook-id = %q; want %q", last.header.Get("webhook-id"), ev.ID)
	}
	if r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, ""); r.body["failure_count"] != float64(0) {
		t.Errorf("failure_count after success = %v; want 0", r.body["failure_count"])
	}
	r = do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/deliveries/"+d["id"].(string)+"/redeliver", "")
	if r.status != http.StatusConflict {
		t.Errorf("redeliver a delivered one = %d %s; want 409", r.status, r.raw)
	}
}

func TestFailureModes(t *testing.T) {
	t.Parallel()
	other := newReceiver(t, nil)
	var hugeChunks atomic.Int32
	hugeDone := make(chan struct{}, 1)
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, n int)
		status  string
		code    any
		errHas  string
	}{
		{"hanging endpoint times out", func(_ http.ResponseWriter, r *http.Request, _ int) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, "failed", nil, "timed out"},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}, "failed", float64(302), "redirect"},
		{"huge body is not read", func(w http.ResponseWriter, _ *http.Request, _ int) {
			w.WriteHeader(http.StatusOK)
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			defer func() { hugeDone <- struct{}{} }()
			for range 512 { // 32 MiB unless the client stops reading
				if _, err := w.Write(chunk); err != nil {
					return
				}
				hugeChunks.Add(1)
			}
		}, "delivered", float64(200), ""},
	}
	t.Run("modes", func(t *testing.T) { // returns when the parallel cases are done
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				cfg := testConfig()
				cfg.Timeout = 200 * time.Millisecond
				cfg.RetrySchedule = []time.Duration{time.Hour} // one attempt observed
				h := e.service(t, cfg, true)
				rc := newReceiver(t, tc.respond)
				id, _ := e.create(t, h, rc.URL, "*")
				start := time.Now()
				e.publish(t, events.CredentialRotated)
				var d map[string]any
				waitFor(t, 5*time.Second, "an attempt recorded", func() bool {
					ds := e.deliveries(t, h, id)
					if len(ds) == 1 && ds[0]["attempts"] == float64(1) {
						d = ds[0]
						return true
					}
					return false
				})
				if d["status"] != tc.status || d["last_status_code"] != tc.code || !strings.Contains(d["last_error"].(string), tc.errHas) {
					t.Errorf("delivery = %v; want status %s, code %v, error containing %q", d, tc.status, tc.code, tc.errHas)
				}
				if el := time.Since(start); el > 3*time.Second {
					t.Errorf("attempt took %v; want bounded by the timeout", el)
				}
			})
		}
	})
	select {
	case <-hugeDone:
		if n := hugeChunks.Load(); n >= 512 {
			t.Errorf("the huge body was read to the end (%d chunks); want the read capped", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("the huge-body handler never finished")
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("redirect target got %d requests; want 0", n)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), true)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	id, _ := e.create(t, h, rc.URL, "*")
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "delivered after 429", func() bool {
		ds := e.deliveries(t, h, id)
		return len(ds) == 1 && ds[0]["status"] == "delivered"
	})
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d; want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retry came %v after a 429 with Retry-After: 1; want about 1s (the schedule says 10ms)", gap)
	}
}

func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), true)
	disabled := e.subscribe(t, events.WebhookEndpointDisabled)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusGone) })
	id, _ := e.create(t, h, rc.URL, "*")
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "webhook.endpoint.disabled", func() bool { return len(disabled()) == 1 })
	if ev := disabled()[0]; ev.OrgID != e.orgID || !strings.Contains(string(ev.Data), id) || ev.Subject != id {
		t.Errorf("webhook.endpoint.disabled = %+v %s", ev, ev.Data)
	}
	r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, "")
	if r.body["active"] != false {
		t.Errorf("webhook after 410 = %s; want inactive", r.raw)
	}
	if ds := e.deliveries(t, h, id); ds[0]["status"] != "dead_letter" || ds[0]["attempts"] != float64(1) {
		t.Errorf("delivery after 410 = %v; want dead_letter after 1 attempt", ds[0])
	}
	e.publish(t, events.AgentUpdated)
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("disabled endpoint got %d requests; want 1", n)
	}
}

// TestEveryEventToADisabledEndpointIsRecorded stops the fault where, after
// a 410, the endpoint's queued deliveries stayed pending for ever and later
// events got no delivery record at all, and the disabling went unlogged:
// every event is accounted for as skipped_disabled, the disabling is
// published once and logged once with the endpoint and the reason.
func TestEveryEventToADisabledEndpointIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxConcurrencyPerEndpoint = 1 // the second event waits while the first is in flight
	logs := &logBuffer{}
	h := e.serviceWithLogger(t, cfg, true, slog.New(slog.NewJSONHandler(logs, nil)))
	disabled := e.subscribe(t, events.WebhookEndpointDisabled)
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		<-release
		w.WriteHeader(http.StatusGone)
	})
	id, _ := e.create(t, h, rc.URL, "*")
	first := e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "the first attempt in flight", func() bool { return len(rc.requests()) == 1 })
	queued := e.publish(t, events.AgentUpdated)
	waitFor(t, 5*time.Second, "the second delivery queued", func() bool { return len(e.deliveries(t, h, id)) == 2 })
	close(release)
	waitFor(t, 5*time.Second, "webhook.endpoint.disabled", func() bool { return len(disabled()) == 1 })
	later := e.publish(t, events.AgentDecommissioned)

	want := map[string]string{first.ID: "dead_letter", queued.ID: "skipped_disabled", later.ID: "skipped_disabled"}
	waitFor(t, 5*time.Second, "a record of every event", func() bool {
		ds := e.deliveries(t, h, id)
		if len(ds) != len(want) {
			return false
		}
		for _, d := range ds {
			if want[d["event_id"].(string)] != d["status"] {
				return false
			}
		}
		return true
	})
	for _, d := range e.deliveries(t, h, id) {
		if d["status"] == "skipped_disabled" && (d["attempts"] != float64(0) || d["last_error"] != "not sent: endpoint disabled") {
			t.Errorf("skipped delivery = %v; want 0 attempts, last_error saying why", d)
		}
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("disabled endpoint got %d requests; want 1", n)
	}
	var data map[string]any
	_ = json.Unmarshal(disabled()[0].Data, &data)
	if data["webhook_id"] != id || data["reason"] != "endpoint answered 410 Gone" {
		t.Errorf("webhook.endpoint.disabled = %s; want webhook_id %s, reason 410", disabled()[0].Data, id)
	}
	lines := logs.lines("webhook endpoint disabled")
	if len(lines) != 1 || lines[0]["webhook_id"] != id || lines[0]["reason"] != "endpoint answered 410 Gone" ||
		lines[0]["organization_id"] != e.orgID || lines[0]["level"] != "WARN" {
		t.Errorf("disabling log lines = %v; want one WARN with webhook_id %s and the reason", lines, id)
	}
	if n := len(disabled()); n != 1 {
		t.Errorf("webhook.endpoint.disabled published %d times; want 1", n)
	}
}

func TestRefusedAddressGetsNoConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The API side (allowed to register loopback) does not run; the
	// delivering side shares the database but has no allow-list.
	api := e.service(t, testConfig(), false)
	strict := testConfig()
	strict.AllowPrivate = nil
	strict.RetrySchedule = []time.Duration{time.Hour}
	e.service(t, strict, true)
	rc := newReceiver(t, nil)
	id, _ := e.create(t, api, rc.URL, "*")
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a refused attempt", func() bool {
		ds := e.deliveries(t, api, id)
		return len(ds) == 1 && ds[0]["attempts"] == float64(1)
	})
	d := e.deliveries(t, api, id)[0]
	if d["status"] != "failed" || !strings.Contains(d["last_error"].(string), "not allowed") {
		t.Errorf("delivery = %v; want failed, destination not allowed", d)
	}
	if n := rc.connections(); n != 0 {
		t.Errorf("receiver at a refused address got %d connections; want 0", n)
	}
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.service(t, testConfig(), true)
	rc := newReceiver(t, nil)
	id, oldSecret := e.create(t, h, rc.URL, "*")
	r := do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/rotate-secret", "")
	newSecret, _ := r.body["signingSecret"].(string)
	if r.status != http.StatusOK || newSecret == "" {
		t.Fatalf("rotate = %d %s", r.status, r.raw)
	}
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(rc.requests()) == 1 })
	req := rc.requests()[0]
	sigs := strings.Fields(req.header.Get("webhook-signature"))
	if len(sigs) != 2 {
		t.Errorf("webhook-signature = %q; want two signatures during the overlap", req.header.Get("webhook-signature"))
	}
	for name, s := range map[string]string{"old": oldSecret, "new": newSecret} {
		if !verifySignature(s, req.header, req.body) {
			t.Errorf("the %s secret does not verify %q", name, req.header.Get("webhook-signature"))
		}
	}
	for _, sig := range sigs {
		one := req.header.Clone()
		one.Set("webhook-signature", sig)
		if verifySignature(oldSecret, one, req.body) == verifySignature(newSecret, one, req.body) {
			t.Errorf("signature %q should verify with exactly one of the secrets", sig)
		}
	}
}

func TestRotationWithoutOverlapSignsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.RotationOverlap = 0
	h := e.service(t, cfg, true)
	rc := newReceiver(t, nil)
	id, oldSecret := e.create(t, h, rc.URL, "*")
	r := do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/rotate-secret", "")
	newSecret, _ := r.body["signingSecret"].(string)
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(rc.requests()) == 1 })
	req := rc.requests()[0]
	if verifySignature(oldSecret, req.header, req.body) || !verifySignature(newSecret, req.header, req.body) {
		t.Errorf("without overlap: old verifies %v, new verifies %v; want false, true",
			verifySignature(oldSecret, req.header, req.body), verifySignature(newSecret, req.header, req.body))
	}
}

func TestSlowEndpointDoesNotDelayFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxConcurrencyPerEndpoint = 2
	cfg.Workers = 4
	cfg.Timeout = 5 * time.Second
	h := e.service(t, cfg, true)
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	slow := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		w.WriteHeader(http.StatusOK)
	})
	defer close(release)
	fast := newReceiver(t, nil)
	slowID, _ := e.create(t, h, slow.URL, "agent.created")
	e.create(t, h, fast.URL, "token.issued")
	for range 6 {
		e.publish(t, events.AgentCreated)
	}
	waitFor(t, 5*time.Second, "the slow endpoint to be busy", func() bool { return inFlight.Load() == 2 })
	e.publish(t, events.TokenIssued)
	waitFor(t, 2*time.Second, "the fast endpoint to be served while the slow one hangs", func() bool { return len(fast.requests()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency at the slow endpoint = %d; want the cap, 2", p)
	}
	if ds := e.deliveries(t, h, slowID); len(ds) != 6 {
		t.Errorf("slow endpoint deliveries = %d; want 6", len(ds))
	}
}
