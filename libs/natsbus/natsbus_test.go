package natsbus_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

func mustEvent(t *testing.T, typ events.Type, org string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", org, "agent-1", map[string]string{"k": "v"})
	if err != nil {
		t.Fatalf("events.New: %v", err)
	}
	return e
}

func TestPublishDeduplicatesByID(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	e := mustEvent(t, events.TokenIssued, "org-1")
	raw, err := natsbus.Raw(e)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := natsbus.PublishRaw(ctx, js, []natsbus.RawMessage{raw}); err != nil {
			t.Fatalf("PublishRaw: %v", err)
		}
	}
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after publishing one id 3 times; want 1", info.State.Msgs)
	}
}

func TestAsyncPublisherDeliversAll(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	p := natsbus.NewAsyncPublisher(js, natsbus.AsyncOptions{BufferSize: 1000, BatchSize: 64})
	const n = 500
	for range n {
		if !p.Publish(mustEvent(t, events.TokenIssued, "org-1")) {
			t.Fatal("Publish dropped an event with a large enough buffer")
		}
	}
	p.Close()
	st, _ := js.Stream(context.Background(), events.StreamName)
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Errorf("stream holds %d messages; want %d", info.State.Msgs, n)
	}
}

func TestWatchKV(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv, err := natsbus.EnsureKV(ctx, js, "t_orgs", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "org-1", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	state := map[string]string{}
	var updates atomic.Int32
	ready, err := natsbus.WatchKV(ctx, kv, slog.New(slog.DiscardHandler), func(k string, v []byte) {
		mu.Lock()
		defer mu.Unlock()
		updates.Add(1)
		if v == nil {
			delete(state, k)
			return
		}
		state[k] = string(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	mu.Lock()
	if state["org-1"] != "v1" {
		t.Errorf("after ready, state[org-1] = %q; want v1", state["org-1"])
	}
	mu.Unlock()
	if err := kv.Delete(ctx, "org-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); _, ok := state["org-1"]; return !ok })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEnsureKVConcurrently checks that services ensuring the same bucket at
// the same moment, with different settings (as the token service and a
// gateway do for the revocations bucket), all succeed.
func TestEnsureKVConcurrently(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		_, js := srv.Connect(t)
		cfg := jetstream.KeyValueConfig{Bucket: "t_race", History: 1}
		if i%2 == 0 {
			cfg.TTL, cfg.Description = time.Hour, "with a ttl"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := natsbus.EnsureKVConfig(context.Background(), js, cfg)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("EnsureKVConfig() = %v; want every concurrent caller to succeed", err)
		}
	}
}
