package natsbus_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/nats-io/nats.go"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// nats.go writes asynchronous errors (here a slow consumer) to stderr as
// plain text unless the connection has an error handler; the connections
// natsbus opens log them as JSON through slog.
func TestNATSClientErrorsAreJSON(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	var buf lockedBuffer
	nc, err := natsbus.Connect(srv.URL(), "log-test", slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	block := make(chan struct{})
	defer close(block)
	sub, err := nc.Subscribe("slow.subject", func(*nats.Msg) { <-block })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(1, 1<<20); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := nc.Publish("slow.subject", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "slow consumer") {
		if time.Now().After(deadline) {
			t.Fatalf("Got(log) = %q; want the slow-consumer error", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("Got(log line) = %q; want JSON: %v", line, err)
			continue
		}
		if rec["msg"] == "nats async error" && rec["subject"] != "slow.subject" {
			t.Errorf("Got(log line) = %v; want the subject", rec)
		}
	}
}
