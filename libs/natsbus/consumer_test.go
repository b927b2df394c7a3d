package natsbus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// publishEvents publishes n fresh events of typ and returns them.
func publishEvents(t *testing.T, js jetstream.JetStream, typ events.Type, n int) []events.Envelope {
	t.Helper()
	out := make([]events.Envelope, n)
	for i := range out {
		out[i] = mustEvent(t, typ, "org-1")
		raw, err := natsbus.Raw(out[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := natsbus.PublishRaw(context.Background(), js, []natsbus.RawMessage{raw}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// streamMsgs is how many messages a stream holds (0 if it does not exist).
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		return 0
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

// awaitCond polls cond until it holds or 20 s pass.
func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a handler whose failures the test switches on and off.
type recorder struct {
	mu        sync.Mutex
	outage    bool                // every call fails transiently
	poison    map[string]bool     // events that fail permanently
	done      map[string]int      // successful handlings per event id
	failed    int                 // transient failures returned
	seenInOut map[string]struct{} // events handed over during the outage
}

func newRecorder() *recorder {
	return &recorder{poison: map[string]bool{}, done: map[string]int{}, seenInOut: map[string]struct{}{}}
}

func (r *recorder) handle(_ context.Context, batch []natsbus.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outage {
		for _, d := range batch {
			r.seenInOut[d.Event.ID] = struct{}{}
		}
		r.failed++
		return errors.New("insert counts: dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	for _, d := range batch {
		if r.poison[d.Event.ID] {
			return natsbus.Permanent(errors.New("invalid payload"))
		}
	}
	for _, d := range batch {
		r.done[d.Event.ID]++
	}
	return nil
}

func (r *recorder) with(f func(r *recorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// TestConsumerWaitsOutDependencyOutage: a handler failing transiently far
// longer than the old 10 deliveries dead-letters nothing, holds only one
// batch meanwhile, and handles every event exactly once after recovery.
func TestConsumerWaitsOutDependencyOutage(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const n, batchSize = 40, 5
	rec := newRecorder()
	rec.outage = true
	evs := publishEvents(t, js, events.TokenIssued, n)
	c := natsbus.NewConsumer(js, natsbus.ConsumerOptions{
		Durable: "outage", Subjects: []string{events.DomainSubjects("token")},
		BatchSize: batchSize, MaxWait: 50 * time.Millisecond,
		Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
	}, rec.handle)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()

	awaitCond(t, "30 transient failures", func() bool {
		var f int
		rec.with(func(r *recorder) { f = r.failed })
		return f >= 30
	})
	st := c.State()
	if !st.Retrying || st.ConsecutiveFailures < 30 || st.LastErrorCategory != "dependency" || st.Since.IsZero() {
		t.Errorf("state during the outage = %+v; want retrying since T, >= 30 failures, category dependency", st)
	}
	cons, err := js.Consumer(ctx, events.StreamName, "outage")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending > batchSize {
		t.Errorf("%d messages pending ack during the outage; want at most one batch (%d)", info.NumAckPending, batchSize)
	}
	if info.Config.MaxDeliver != -1 {
		t.Errorf("consumer MaxDeliver = %d; want -1 (the count never dead-letters)", info.Config.MaxDeliver)
	}
	rec.with(func(r *recorder) {
		if len(r.seenInOut) != batchSize {
			t.Errorf("%d distinct events handed over during the outage; want the one failing batch of %d (nothing more fetched)", len(r.seenInOut), batchSize)
		}
		r.outage = false
	})

	awaitCond(t, "every event handled", func() bool {
		var k int
		rec.with(func(r *recorder) { k = len(r.done) })
		return k == n
	})
	cancel()
	<-done
	rec.with(func(r *recorder) {
		for _, e := range evs {
			if r.done[e.ID] != 1 {
				t.Errorf("event %s handled %d times after recovery; want exactly 1", e.ID, r.done[e.ID])
			}
		}
	})
	if got := streamMsgs(t, js, events.DeadLetterStream); got != 0 {
		t.Errorf("%d events dead-lettered by a dependency outage; want 0", got)
	}
	if st := c.State(); st.Retrying || st.ConsecutiveFailures != 0 {
		t.Errorf("state after recovery = %+v; want healthy", st)
	}
}

// TestConsumerDeadLettersPermanentFailureAtOnce: a message the handler
// marks Permanent goes to the dead letter on its first delivery, with the
// headers replay needs, while the rest of its batch is handled once.
func TestConsumerDeadLettersPermanentFailureAtOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	evs := publishEvents(t, js, events.AgentCreated, 5)
	rec := newRecorder()
	rec.poison[evs[2].ID] = true
	var calls int
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = natsbus.Consume(ctx, js, natsbus.ConsumerOptions{
			Durable: "perm", Subjects: []string{events.DomainSubjects("agent")},
			BatchSize: 5, MaxWait: 100 * time.Millisecond, Backoff: time.Millisecond,
		}, func(ctx context.Context, b []natsbus.Delivery) error {
			rec.with(func(*recorder) { calls++ })
			return rec.handle(ctx, b)
		})
	}()
	awaitCond(t, "the poison event in the dead letter", func() bool { return streamMsgs(t, js, events.DeadLetterStream) == 1 })
	awaitCond(t, "the other events handled", func() bool {
		var k int
		rec.with(func(r *recorder) { k = len(r.done) })
		return k == 4
	})
	cancel()
	<-done
	rec.with(func(r *recorder) {
		for i, e := range evs {
			want := 1
			if i == 2 {
				want = 0
			}
			if r.done[e.ID] != want {
				t.Errorf("event %d handled %d times; want %d", i, r.done[e.ID], want)
			}
		}
	})
	if calls != 6 { // the batch once, then each of its 5 messages alone
		t.Errorf("handler called %d times; want 6 (no retry of a permanent failure)", calls)
	}
	dlq, err := js.Stream(context.Background(), events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetLastMsgForSubject(context.Background(), events.DeadLetterPrefix+".perm")
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{
		natsbus.HeaderOriginalSubject: events.AgentCreated.Subject(),
		natsbus.HeaderConsumer:        "perm",
		natsbus.HeaderEventID:         evs[2].ID,
		natsbus.HeaderDeadLetterKind:  "permanent",
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("dead letter header %s = %q; want %q", h, got, want)
		}
	}
	if m.Header.Get(natsbus.HeaderDeadLetteredAt) == "" || m.Header.Get(natsbus.HeaderDeadLetterReason) == "" {
		t.Errorf("dead letter lacks time or reason: %v", m.Header)
	}
}

// TestReplayDeliversDeadLettersOnceToTheirConsumer: dead letters replayed
// after the handler is fixed are handled once by their consumer only; a
// second replay changes nothing; --id and a dry run select exactly.
func TestReplayDeliversDeadLettersOnceToTheirConsumer(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	evs := publishEvents(t, js, events.AgentCreated, 4)
	rec := newRecorder()
	for _, e := range evs[:3] {
		rec.poison[e.ID] = true
	}
	other := newRecorder() // a second consumer of the same events
	var wg sync.WaitGroup
	for durable, r := range map[string]*recorder{"fixme": rec, "bystander": other} {
		wg.Go(func() {
			_ = natsbus.Consume(ctx, js, natsbus.ConsumerOptions{
				Durable: durable, Subjects: []string{events.DomainSubjects("agent")},
				BatchSize: 1, MaxWait: 50 * time.Millisecond, Backoff: time.Millisecond,
			}, r.handle)
		})
	}
	awaitCond(t, "3 dead letters", func() bool { return streamMsgs(t, js, events.DeadLetterStream) == 3 })
	awaitCond(t, "the bystander to handle all 4", func() bool {
		var k int
		other.with(func(r *recorder) { k = len(r.done) })
		return k == 4
	})

	dry, err := natsbus.Replay(ctx, js, natsbus.ReplayOptions{Consumer: "fixme", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry != (natsbus.ReplayResult{Scanned: 3, Replayed: 3}) {
		t.Errorf("dry run = %+v; want 3 scanned, 3 would replay", dry)
	}
	one, err := natsbus.Replay(ctx, js, natsbus.ReplayOptions{Consumer: "fixme", EventID: evs[1].ID, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if one != (natsbus.ReplayResult{Scanned: 3, Replayed: 1, Skipped: 2}) {
		t.Errorf("dry run of one id = %+v; want 1 replayed, 2 skipped", one)
	}
	if streamMsgs(t, js, events.ReplayStream) != 0 {
		t.Fatal("a dry run published")
	}

	rec.with(func(r *recorder) { r.poison = map[string]bool{} }) // the fix
	first, err := natsbus.Replay(ctx, js, natsbus.ReplayOptions{Consumer: "fixme"})
	if err != nil {
		t.Fatal(err)
	}
	if first != (natsbus.ReplayResult{Scanned: 3, Replayed: 3}) {
		t.Errorf("replay = %+v; want 3 replayed", first)
	}
	awaitCond(t, "the replayed events handled", func() bool {
		var k int
		rec.with(func(r *recorder) { k = len(r.done) })
		return k == 4
	})
	second, err := natsbus.Replay(ctx, js, natsbus.ReplayOptions{Consumer: "fixme"})
	if err != nil {
		t.Fatal(err)
	}
	if second != (natsbus.ReplayResult{Scanned: 3, Duplicates: 3}) {
		t.Errorf("second replay = %+v; want 3 duplicates, 0 replayed", second)
	}
	if got := streamMsgs(t, js, events.ReplayStream); got != 3 {
		t.Errorf("replay stream holds %d; want 3 (the second replay de-duplicated)", got)
	}
	// Wait until the replay consumer has nothing pending, so a stray
	// redelivery would have been counted below.
	awaitCond(t, "the replay consumer drained", func() bool {
		c, err := js.Consumer(ctx, events.ReplayStream, "fixme")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	cancel()
	wg.Wait()
	rec.with(func(r *recorder) {
		for i, e := range evs {
			if r.done[e.ID] != 1 {
				t.Errorf("fixme handled event %d %d times; want 1", i, r.done[e.ID])
			}
		}
	})
	other.with(func(r *recorder) {
		for i, e := range evs {
			if r.done[e.ID] != 1 {
				t.Errorf("bystander handled event %d %d times; want 1 (replays are for fixme only)", i, r.done[e.ID])
			}
		}
	})
	if _, err := natsbus.Replay(ctx, js, natsbus.ReplayOptions{}); err == nil {
		t.Error("replay without a consumer name succeeded")
	}
}

// TestConsumerLiftsMaxDeliverOfExistingDurable: a durable created by an
// earlier release (MaxDeliver 10) is updated in place to unlimited
// deliveries, so an upgraded service still never dead-letters by count.
func TestConsumerLiftsMaxDeliverOfExistingDurable(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subject := events.DomainSubjects("agent")
	if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: "old", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxDeliver: 10, MaxAckPending: 1024, DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubject: subject,
	}); err != nil {
		t.Fatal(err)
	}
	evs := publishEvents(t, js, events.AgentCreated, 1)
	rec := newRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = natsbus.Consume(ctx, js, natsbus.ConsumerOptions{Durable: "old", Subjects: []string{subject}, MaxWait: 50 * time.Millisecond}, rec.handle)
	}()
	awaitCond(t, "the event handled", func() bool {
		var k int
		rec.with(func(r *recorder) { k = r.done[evs[0].ID] })
		return k == 1
	})
	cons, err := js.Consumer(ctx, events.StreamName, "old")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxDeliver != -1 {
		t.Errorf("MaxDeliver of the upgraded durable = %d; want -1", info.Config.MaxDeliver)
	}
	cancel()
	<-done
}
