package analytics_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/analytics"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// cutProxy forwards TCP to target until cut: then it drops every open
// connection and refuses new ones (accepts and closes them), as a stopped
// PostgreSQL would, until restored.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
		go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestAnalyticsWaitsOutDatabaseOutage: token.issued events arriving while
// PostgreSQL is unreachable, for far more failed attempts than the old 10
// deliveries, are all counted once it returns; none is dead-lettered.
func TestAnalyticsWaitsOutDatabaseOutage(t *testing.T) {
	t.Parallel()
	pgURL, schema := testkit.PostgresSchema(t)
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.Postgres, URL: u.String(), Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := newHarness(t)
	h.deps.DB = db
	health := httpx.NewHealth(prometheus.NewRegistry())
	h.deps.Health = health
	cfg := analytics.DefaultConfig()
	cfg.BatchSize = 16
	cfg.RetryBackoff, cfg.RetryMaxBackoff = 2*time.Millisecond, 20*time.Millisecond
	svc, _ := h.start(t, cfg)
	health.AddDetail("consumer:"+analytics.Durable, natsbus.StateDetail(svc.ConsumerState)) // as svcrun.Serve does

	org := uuid.NewString()
	now := time.Now().UTC()
	const before, during = 10, 100
	for range before {
		e := tokenIssued(t, org, now)
		publish(t, h.js, e, e.ID)
	}
	waitFor(t, 20*time.Second, func() bool { return h.pending(t) == 0 })

	proxy.setCut(true)
	for range during {
		e := tokenIssued(t, org, now)
		publish(t, h.js, e, e.ID)
	}
	waitFor(t, 20*time.Second, func() bool {
		st := svc.ConsumerState()
		return st.Retrying && st.ConsecutiveFailures >= 25
	})
	if st := svc.ConsumerState(); st.LastErrorCategory == "" || st.Since.IsZero() {
		t.Errorf("consumer state during the outage = %+v; want a category and a start", st)
	}
	// /health/detailed shows it: degraded, the consumer retrying.
	if rep := health.Detailed(context.Background()); rep.Status != httpx.StatusDegraded || rep.Details["consumer:"+analytics.Durable].Error == "" {
		t.Errorf("Got(/health/detailed during the outage) = %+v; want degraded with the consumer retrying", rep)
	}
	proxy.setCut(false)

	waitFor(t, 30*time.Second, func() bool { return h.pending(t) == 0 })
	if n := h.today(t, svc, org); n != before+during {
		t.Errorf("count after the outage = %d; want %d (every event, once)", n, before+during)
	}
	if n := streamMsgs(t, h, events.DeadLetterPrefix+"."+analytics.Durable); n != 0 {
		t.Errorf("%d events dead-lettered by a database outage; want 0", n)
	}
	if st := svc.ConsumerState(); st.Retrying {
		t.Errorf("consumer state after recovery = %+v; want healthy", st)
	}
	if d := health.Detailed(context.Background()).Details["consumer:"+analytics.Durable]; d.Error != "" {
		t.Errorf("Got(/health/detailed consumer after recovery) = %+v; want no error", d)
	}
}

// streamMsgs counts the dead-letter stream's messages on subject.
func streamMsgs(t *testing.T, h *harness, subject string) uint64 {
	t.Helper()
	st, err := h.js.Stream(context.Background(), events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
