package webhook_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// TestAttackWebhookURLInDisguise registers loopback, private and metadata
// addresses written so that a naive check sees no IP address: every one is
// a 400 VALIDATION_ERROR naming the rule, and nothing is stored or changed.
func TestAttackWebhookURLInDisguise(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	strict := testConfig()
	strict.AllowPrivate = nil
	h := e.service(t, strict, false)
	id, _ := e.create(t, h, "http://93.184.216.34/hook", "*") // a public literal is fine
	disguised := []string{
		"http://2130706433/",
		"http://0x7f000001/",
		"http://0177.0.0.1/",
		"http://127.1/",
		"http://localhost./",
		"http://127.0.0.1./",
		"http://0x7f.1/",
		"http://017700000001/",
		"http://10.1/",
		"http://0xa9.0xfe.0xa9.0xfe/latest/meta-data",
		"http://[::1]/",
		"http://[::ffff:127.0.0.1]/",
		"http://[::ffff:7f00:1]/",
		"http://[::127.0.0.1]/",
		"http://[fe80::1%25eth0]/",
		"http://evil.localhost/",
		"http://LOCALHOST:8080/",
		"http://evil@127.0.0.1/",
		"http://１２７.０.０.１/",
		"http://1.2.3.4.5/",
		"gopher://93.184.216.34:25/",
		"http://93.184.216.34:0/",
	}
	for _, u := range disguised {
		t.Run(u, func(t *testing.T) {
			b, _ := json.Marshal(map[string]any{"name": "disguised", "url": u, "events": []string{"*"}})
			r := do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks", string(b))
			details, _ := r.body["details"].(map[string]any)
			msg, _ := details["url"].(string)
			if r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" || msg == "" {
				t.Errorf("POST url %q = %d %s; want 400 VALIDATION_ERROR with a url message", u, r.status, r.raw)
			}
			b, _ = json.Marshal(map[string]any{"url": u})
			if r := do(t, h, e.codec, e.rw(), http.MethodPatch, "/api/v1/webhooks/"+id, string(b)); r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" {
				t.Errorf("PATCH url %q = %d %s; want 400 VALIDATION_ERROR", u, r.status, r.raw)
			}
		})
	}
	r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks", "")
	if r.body["total"] != float64(1) {
		t.Errorf("Got(webhooks after disguised creates) = %v; want 1", r.body["total"])
	}
	if r := do(t, h, e.codec, e.rw(), http.MethodGet, "/api/v1/webhooks/"+id, ""); r.body["url"] != "http://93.184.216.34/hook" {
		t.Errorf("Got(url after disguised PATCHes) = %v; want it unchanged", r.body["url"])
	}
}

// addressOrPort matches an IPv4 address, an IPv6 address or a ":port".
var addressOrPort = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|[0-9a-fA-F]*::?[0-9a-fA-F:]*[0-9a-fA-F]|:\d+`)

// TestAttackDeliveryErrorRevealsNoInternalAddress makes deliveries fail on
// a DNS lookup (whose raw error names our resolver, "lookup x on
// 10.96.0.10:53") and on a refused address (whose raw error names the
// address): tenants see a phrase from a fixed vocabulary in the deliveries
// list and in webhook.delivery.failed, and no address or port.
func TestAttackDeliveryErrorRevealsNoInternalAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The API side may register loopback; the delivering side may not, so
	// its dialer refuses the receiver, as after a DNS change.
	api := e.service(t, testConfig(), false)
	strict := testConfig()
	strict.AllowPrivate = nil
	e.service(t, strict, true)
	failed := e.subscribe(t, events.WebhookDeliveryFailed)
	rc := newReceiver(t, nil)
	refusedID, _ := e.create(t, api, rc.URL, "agent.created")
	dnsID, _ := e.create(t, api, "http://no-such-host.invalid:8080/hook", "agent.created")
	e.publish(t, events.AgentCreated)
	waitFor(t, 10*time.Second, "both deliveries dead-lettered", func() bool {
		a, b := e.deliveries(t, api, refusedID), e.deliveries(t, api, dnsID)
		return len(a) == 1 && len(b) == 1 && a[0]["status"] == "dead_letter" && b[0]["status"] == "dead_letter"
	})
	wants := map[string]string{refusedID: "address not allowed", dnsID: "DNS lookup failed"}
	for id, want := range wants {
		d := e.deliveries(t, api, id)[0]
		got, _ := d["last_error"].(string)
		if !strings.HasPrefix(got, want) {
			t.Errorf("Got(last_error of %s) = %q; want %q", id, got, want)
		}
		if m := addressOrPort.FindString(got); m != "" {
			t.Errorf("Got(last_error of %s) = %q; it names %q", id, got, m)
		}
	}
	waitFor(t, 5*time.Second, "two webhook.delivery.failed events", func() bool { return len(failed()) == 2 })
	for _, ev := range failed() {
		var data struct {
			WebhookID string `json:"webhook_id"`
			LastError string `json:"last_error"`
		}
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(data.LastError, wants[data.WebhookID]) {
			t.Errorf("Got(webhook.delivery.failed last_error of %s) = %q; want %q", data.WebhookID, data.LastError, wants[data.WebhookID])
		}
		if m := addressOrPort.FindString(data.LastError); m != "" {
			t.Errorf("Got(webhook.delivery.failed last_error) = %q; it names %q", data.LastError, m)
		}
	}
	if n := rc.connections(); n != 0 {
		t.Errorf("refused receiver got %d connections; want 0", n)
	}
}
