package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the client's goroutines.
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

// go-redis printed its own messages ("redis: connection pool: failed to
// dial ...") to stderr as plain text, breaking log pipelines that parse
// every line as JSON. Through SetRedisLogger they are JSON lines.
func TestRedisClientMessagesAreJSON(t *testing.T) {
	var buf lockedBuffer
	SetRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { SetRedisLogger(slog.New(slog.NewJSONHandler(discard{}, nil))) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := NewRedis(RedisOptions{URL: "redis://" + addr + "/0", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(context.Background()); err == nil {
		t.Fatal("Got(Ping to a closed port) = nil; want an error")
	}
	out := buf.String()
	if !strings.Contains(out, "failed to dial") {
		t.Fatalf("Got(log) = %q; want go-redis's dial failure", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("Got(log line) = %q; want JSON: %v", line, err)
			continue
		}
		if rec["component"] != "go-redis" || rec["level"] != "WARN" {
			t.Errorf("Got(log line) = %v; want component go-redis at WARN", rec)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
