package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
)

// TestEventsReplayCommand: events dead-lettered by a consumer (a permanent
// failure), replayed with `agentidp events replay` after the fix, are
// handled exactly once; a second replay republishes nothing; the output
// says what happened.
func TestEventsReplayCommand(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var ids []string
	for range 3 {
		e, err := events.New(events.TokenIssued, "test", "org-1", "agent-1", events.TokenIssuedData{JTI: "j"})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := natsbus.Raw(e)
		if err := natsbus.PublishRaw(ctx, js, []natsbus.RawMessage{raw}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	var mu sync.Mutex
	broken, handled := true, map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = natsbus.Consume(ctx, js, natsbus.ConsumerOptions{Durable: "cli", Subjects: []string{events.TokenIssued.Subject()}, MaxWait: 50 * time.Millisecond},
			func(_ context.Context, b []natsbus.Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				if broken {
					return natsbus.Permanent(errors.New("bad handler"))
				}
				for _, d := range b {
					handled[d.Event.ID]++
				}
				return nil
			})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		dlq, err := js.Stream(ctx, events.DeadLetterStream)
		if err == nil {
			if info, err := dlq.Info(ctx); err == nil && info.State.Msgs == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the events never reached the dead letter")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	broken = false
	mu.Unlock()

	replay := func(extra ...string) string {
		t.Helper()
		var out bytes.Buffer
		args := append([]string{"agentidp", "events", "replay", "--nats", srv.URL(), "--consumer", "cli"}, extra...)
		if err := run(ctx, args, noEnv, &out, &out); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, &out)
		}
		return out.String()
	}
	if out := replay("--dry-run", "--since", "1h"); !strings.Contains(out, "would replay 3, already replayed (dropped as duplicates) 0, not selected 0, of 3 dead letters") {
		t.Errorf("dry run printed:\n%s", out)
	}
	if out := replay("--id", ids[1]); !strings.Contains(out, "replayed 1, already replayed (dropped as duplicates) 0, not selected 2, of 3") {
		t.Errorf("replay --id printed:\n%s", out)
	}
	if out := replay(); !strings.Contains(out, "replayed 2, already replayed (dropped as duplicates) 1, not selected 0, of 3") {
		t.Errorf("replay printed:\n%s", out)
	}
	if out := replay(); !strings.Contains(out, "replayed 0, already replayed (dropped as duplicates) 3, not selected 0, of 3") {
		t.Errorf("second replay printed:\n%s", out)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of 3 replayed events", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for _, id := range ids {
		if handled[id] != 1 {
			t.Errorf("event %s handled %d times after replays; want 1", id, handled[id])
		}
	}

	var out bytes.Buffer
	for _, args := range [][]string{
		{"events", "replay", "--nats", srv.URL()},                                      // no consumer
		{"events", "replay", "--consumer", "cli"},                                      // no NATS URL
		{"events", "replay", "--nats", srv.URL(), "--consumer", "cli", "--since", "x"}, // bad time
	} {
		if err := run(context.Background(), append([]string{"agentidp"}, args...), noEnv, &out, &out); err == nil {
			t.Errorf("agentidp %s succeeded; want an error", strings.Join(args, " "))
		}
	}
	if msg := redactPasswords(`parse "nats://u:s3cret@h:4222%": invalid`, "nats://u:s3cret@h:4222%"); strings.Contains(msg, "s3cret") {
		t.Errorf("password not redacted: %s", msg)
	}
}
