package analytics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
	"github.com/agentidp/agentidp/services/analytics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type harness struct {
	deps  *svcrun.Deps
	codec *authn.Codec
	js    jetstream.JetStream
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "analytics.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{deps: &svcrun.Deps{Service: "analytics", DB: db, NATS: nc, JS: js, Codec: codec}, codec: codec, js: js}
}

// start builds a service (a fresh registry, as a restarted process would
// have) and runs it until the returned stop is called.
func (h *harness) start(t *testing.T, cfg analytics.Config) (*analytics.Service, func()) {
	t.Helper()
	d := *h.deps
	d.Registry = prometheus.NewRegistry()
	svc, err := analytics.New(context.Background(), cfg, &d)
	if err != nil {
		t.Fatalf("analytics.New = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := svc.Run(ctx); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return svc, stop
}

type series struct {
	OrganizationID string `json:"organizationId"`
	Days           int    `json:"days"`
	Data           []struct {
		Date  string `json:"date"`
		Count int64  `json:"count"`
	} `json:"data"`
}

func (h *harness) get(t *testing.T, svc *analytics.Service, id *authn.Identity, query string) (int, series, string) {
	t.Helper()
	req := authntest.Request(t, h.codec, id, http.MethodGet, "/api/v1/analytics/tokens"+query, "")
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	var s series
	_ = json.Unmarshal(raw, &s)
	return rec.Code, s, string(raw)
}

func (h *harness) today(t *testing.T, svc *analytics.Service, org string) int64 {
	t.Helper()
	code, s, raw := h.get(t, svc, reader(org), "?days=1")
	if code != http.StatusOK || len(s.Data) != 1 {
		t.Fatalf("GET ?days=1 = %d %s; want one day", code, raw)
	}
	return s.Data[0].Count
}

func reader(org string) *authn.Identity {
	return &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"analytics:read"}}
}

func tokenIssued(t *testing.T, org string, at time.Time) events.Envelope {
	t.Helper()
	e, err := events.New(events.TokenIssued, "token", org, uuid.NewString(), events.TokenIssuedData{JTI: uuid.NewString(), IssuedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	e.Time = at
	return e
}

func publish(t *testing.T, js jetstream.JetStream, e events.Envelope, msgID string) {
	t.Helper()
	m, err := natsbus.Message(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// TestExactlyOnceAcrossRedeliveryAndRestart publishes 300 token.issued
// events, some twice with the same Nats-Msg-Id (JetStream drops those) and
// some twice with a different one (outside the de-duplication window, as
// after a relay crash: the consumer sees them twice), kills the consumer
// mid-way and restarts it: the count is exactly 300.
func TestExactlyOnceAcrossRedeliveryAndRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	now := time.Now().UTC()
	var evs []events.Envelope
	for range 300 {
		evs = append(evs, tokenIssued(t, org, now))
	}
	cfg := analytics.DefaultConfig()
	cfg.BatchSize = 7
	cfg.AckWait = 2 * time.Second

	for i, e := range evs[:150] {
		publish(t, h.js, e, e.ID)
		if i%10 == 0 {
			publish(t, h.js, e, e.ID) // dropped by JetStream
		}
	}
	// Noise that must not count: no organisation, another organisation,
	// another event type.
	noOrg := tokenIssued(t, "", now)
	publish(t, h.js, noOrg, noOrg.ID)
	publish(t, h.js, tokenIssued(t, uuid.NewString(), now), uuid.NewString())
	failed, _ := events.New(events.AuthFailed, "token", org, "", events.AuthFailedData{Reason: "bad secret", At: now})
	publish(t, h.js, failed, failed.ID)

	svc, stop := h.start(t, cfg)
	waitFor(t, 10*time.Second, func() bool { return h.today(t, svc, org) > 0 })
	stop() // killed mid-way
	if n := h.today(t, svc, org); n >= 300 {
		t.Fatalf("Got(count at kill) = %d; want the consumer stopped mid-way", n)
	}

	for i, e := range evs[150:] {
		publish(t, h.js, e, e.ID)
		if i%10 == 0 {
			publish(t, h.js, e, e.ID)
		}
	}
	for i, e := range evs {
		if i%4 == 0 { // a quarter, published again under a new msg id
			publish(t, h.js, e, "republished-"+e.ID)
		}
	}

	svc, _ = h.start(t, cfg)
	waitFor(t, 20*time.Second, func() bool { return h.pending(t) == 0 && h.today(t, svc, org) >= 300 })
	time.Sleep(cfg.AckWait + 500*time.Millisecond) // let any redelivery land
	if n := h.today(t, svc, org); n != 300 {
		t.Errorf("Got(count) = %d; want 300", n)
	}
}

// pending is how many events the durable consumer has not yet acknowledged.
func (h *harness) pending(t *testing.T) uint64 {
	t.Helper()
	c, err := h.js.Consumer(context.Background(), events.StreamName, analytics.Durable)
	if err != nil {
		return 1
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	// Everything in the stream must have been acknowledged: the consumer's
	// own pending counts can read 0 before its first fetch.
	st, err := h.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	sinfo, err := st.Info(context.Background())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if last := sinfo.State.LastSeq; info.AckFloor.Stream < last {
		return last - info.AckFloor.Stream
	}
	return info.NumPending + uint64(info.NumAckPending)
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("condition not met within %s", d)
}

func TestTokenSeries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	today := time.Now().UTC()
	for _, back := range []int{0, 0, 2, 40} {
		e := tokenIssued(t, org, today.AddDate(0, 0, -back))
		publish(t, h.js, e, e.ID)
	}
	svc, _ := h.start(t, analytics.DefaultConfig())
	// Wait for the three recent events to be counted (the consumer's
	// pending count can read 0 before its first fetch is acknowledged).
	waitFor(t, 10*time.Second, func() bool {
		_, s, _ := h.get(t, svc, reader(org), "?days=3")
		var n int64
		for _, d := range s.Data {
			n += d.Count
		}
		return n == 3 && h.pending(t) == 0
	})

	code, s, raw := h.get(t, svc, reader(org), "?days=3")
	if code != http.StatusOK {
		t.Fatalf("GET ?days=3 = %d %s; want 200", code, raw)
	}
	day := func(back int) string { return today.AddDate(0, 0, -back).Format("2006-01-02") }
	want := fmt.Sprintf(`{"organizationId":%q,"days":3,"data":[{"date":%q,"count":1},{"date":%q,"count":0},{"date":%q,"count":2}]}`,
		org, day(2), day(1), day(0))
	if got := string(bytes.TrimSpace([]byte(raw))); got != want {
		t.Errorf("GET ?days=3 = %s; want %s", got, want)
	}

	code, s, raw = h.get(t, svc, reader(org), "")
	if code != http.StatusOK || s.Days != 30 || len(s.Data) != 30 || s.Data[29].Date != day(0) || s.Data[0].Date != day(29) {
		t.Errorf("GET default = %d, days %d, %d points; want 30 days ending today (%s)", code, s.Days, len(s.Data), raw)
	}
	var total int64
	for _, d := range s.Data {
		total += d.Count
	}
	if total != 3 {
		t.Errorf("Got(total over 30 days) = %d; want 3 (the 40-day-old event is outside)", total)
	}
	if _, s, _ := h.get(t, svc, reader(uuid.NewString()), "?days=3"); len(s.Data) != 3 || s.Data[0].Count+s.Data[1].Count+s.Data[2].Count != 0 {
		t.Errorf("Got(other org series) = %+v; want zeros", s.Data)
	}

	tests := []struct {
		name  string
		id    *authn.Identity
		query string
		want  int
	}{
		{"days=0", reader(org), "?days=0", 400},
		{"days=91", reader(org), "?days=91", 400},
		{"days=abc", reader(org), "?days=abc", 400},
		{"days=-1", reader(org), "?days=-1", 400},
		{"days=90", reader(org), "?days=90", 200},
		{"no context", nil, "?days=3", 401},
		{"missing scope", &authn.Identity{Subject: "a", OrgID: org, Scopes: []string{"agents:read"}}, "?days=3", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, raw := h.get(t, svc, tc.id, tc.query); code != tc.want {
				t.Errorf("GET %s = %d %s; want %d", tc.query, code, raw, tc.want)
			}
		})
	}
}
