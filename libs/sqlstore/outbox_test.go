package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sink is a PublishFunc recording every published message in order.
type sink struct {
	mu   sync.Mutex
	got  []sqlstore.OutboxMessage
	fail int // fail this many calls first
	// calls counts every call, failed ones included.
	calls int
}

func (s *sink) publish(ctx context.Context, msgs []sqlstore.OutboxMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail > 0 {
		s.fail--
		return errors.New("bus down")
	}
	s.got = append(s.got, msgs...)
	return nil
}

func (s *sink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.got))
	for i, m := range s.got {
		out[i] = m.ID
	}
	return out
}

func outboxDB(t *testing.T, tg target) *sqlstore.DB {
	t.Helper()
	db := migrated(t, tg)
	for i := 0; i < 2; i++ { // idempotent
		if err := db.EnsureOutbox(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func addMsgs(t *testing.T, db *sqlstore.DB, from, n int, fail bool) {
	t.Helper()
	err := db.InTx(context.Background(), func(tx *sqlstore.Tx) error {
		for i := from; i < from+n; i++ {
			if err := tx.AddOutbox(context.Background(), sqlstore.OutboxMessage{
				ID: fmt.Sprintf("m%05d", i), Subject: "test.event", Data: []byte(fmt.Sprint(i)),
			}); err != nil {
				return err
			}
		}
		if fail {
			return errors.New("rollback")
		}
		return nil
	})
	if (err != nil) != fail {
		t.Fatalf("addMsgs: %v", err)
	}
}

func runRelay(t *testing.T, r *sqlstore.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(t *testing.T, r *sqlstore.Relay) int64 {
	n, _, err := r.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOutboxOrderAndRollback(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		db := outboxDB(t, tg)
		s := &sink{}
		reg := prometheus.NewRegistry()
		r := sqlstore.NewRelay(db, s.publish, sqlstore.RelayOptions{
			Service: "test", Logger: quiet, Registerer: reg, BatchSize: 7, PollInterval: 20 * time.Millisecond,
		})
		addMsgs(t, db, 0, 10, false)
		addMsgs(t, db, 100, 5, true) // rolled back: never published
		addMsgs(t, db, 10, 20, false)
		if n, age, err := r.Pending(context.Background()); err != nil || n != 30 || age <= 0 {
			t.Fatalf("Pending = %d %v %v", n, age, err)
		}
		stop := runRelay(t, r)
		waitFor(t, "30 published", func() bool { return len(s.ids()) >= 30 })
		addMsgs(t, db, 30, 3, false)
		r.Notify()
		waitFor(t, "33 published", func() bool { return len(s.ids()) >= 33 })
		waitFor(t, "nothing pending", func() bool { return pending(t, r) == 0 })
		stop()
		ids := s.ids()
		if len(ids) != 33 {
			t.Fatalf("published %d messages, want 33 exactly once", len(ids))
		}
		for i, id := range ids {
			if want := fmt.Sprintf("m%05d", i); id != want {
				t.Fatalf("message %d = %s, want %s (order)", i, id, want)
			}
		}
		m := s.got[5]
		if m.Subject != "test.event" || string(m.Data) != "5" || m.CreatedAt.Location() != time.UTC || time.Since(m.CreatedAt) > time.Minute {
			t.Fatalf("message fields: %+v", m)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, mf := range mfs {
			found[mf.GetName()] = true
			if mf.GetName() == "agentidp_outbox_published_total" && mf.GetMetric()[0].GetCounter().GetValue() != 33 {
				t.Errorf("published_total = %v", mf.GetMetric()[0].GetCounter().GetValue())
			}
		}
		for _, n := range []string{"agentidp_outbox_pending", "agentidp_outbox_oldest_age_seconds", "agentidp_outbox_published_total"} {
			if !found[n] {
				t.Errorf("metric %s not registered", n)
			}
		}
	})
}

func TestOutboxRetriesFailures(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		db := outboxDB(t, tg)
		s := &sink{fail: 3}
		r := sqlstore.NewRelay(db, s.publish, sqlstore.RelayOptions{Logger: quiet, PollInterval: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
		addMsgs(t, db, 0, 50, false)
		stop := runRelay(t, r)
		waitFor(t, "all published", func() bool { return pending(t, r) == 0 })
		stop()
		ids := s.ids()
		if len(ids) != 50 || s.calls < 4 {
			t.Fatalf("published %d in %d calls", len(ids), s.calls)
		}
		for i, id := range ids {
			if id != fmt.Sprintf("m%05d", i) {
				t.Fatalf("order broken at %d: %s", i, id)
			}
		}
	})
}

func TestOutboxDuplicateIDAndDefaults(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := outboxDB(t, tg)
		addMsgs(t, db, 0, 1, false)
		err := db.InTx(ctx, func(tx *sqlstore.Tx) error {
			return tx.AddOutbox(ctx, sqlstore.OutboxMessage{ID: "m00000", Subject: "x"})
		})
		if !sqlstore.IsUniqueViolation(err) {
			t.Fatalf("duplicate id: %v", err)
		}
		err = db.InTx(ctx, func(tx *sqlstore.Tx) error {
			return tx.AddOutbox(ctx, sqlstore.OutboxMessage{Subject: "x"}, sqlstore.OutboxMessage{Subject: "y"})
		})
		if err != nil {
			t.Fatal(err)
		}
		s := &sink{}
		r := sqlstore.NewRelay(db, s.publish, sqlstore.RelayOptions{Logger: quiet})
		stop := runRelay(t, r)
		waitFor(t, "published", func() bool { return len(s.ids()) == 3 })
		stop()
		ids := s.ids()
		if ids[1] == "" || ids[2] == "" || ids[1] == ids[2] || s.got[1].Data == nil {
			t.Fatalf("generated ids/data: %+v", s.got)
		}
	})
}

func TestOutboxAddEvents(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := outboxDB(t, tg)
		e, err := events.New(events.AgentCreated, "test", "org-1", "agent-1", events.AgentData{AgentID: "agent-1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *sqlstore.Tx) error { return tx.AddEvents(ctx) }); err != nil {
			t.Fatalf("AddEvents() with no events = %v; want nil", err)
		}
		if err := db.InTx(ctx, func(tx *sqlstore.Tx) error { return tx.AddEvents(ctx, e) }); err != nil {
			t.Fatal(err)
		}
		s := &sink{}
		stop := runRelay(t, sqlstore.NewRelay(db, s.publish, sqlstore.RelayOptions{Logger: quiet}))
		waitFor(t, "published", func() bool { return len(s.ids()) == 1 })
		stop()
		got := s.got[0]
		back, err := events.Decode(got.Data)
		if got.ID != e.ID || got.Subject != events.AgentCreated.Subject() || err != nil || back.ID != e.ID {
			t.Errorf("Got(outbox row) = %s %s %v; want id %s on %s with the encoded envelope", got.ID, got.Subject, err, e.ID, events.AgentCreated.Subject())
		}
	})
}

func TestOutboxRetention(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := outboxDB(t, tg)
		addMsgs(t, db, 0, 4, false)
		s := &sink{}
		r := sqlstore.NewRelay(db, s.publish, sqlstore.RelayOptions{Logger: quiet, Retention: time.Nanosecond, PollInterval: 10 * time.Millisecond})
		stop := runRelay(t, r)
		waitFor(t, "published", func() bool { return len(s.ids()) == 4 })
		stop()
		// The cleanup runs at the start of the next Run.
		stop = runRelay(t, r)
		waitFor(t, "cleaned", func() bool {
			var n int
			db.QueryRowContext(ctx, "SELECT count(*) FROM outbox").Scan(&n)
			return n == 0
		})
		stop()
	})
}

// Several relays on one PostgreSQL schema: every message is published at
// least once, in order per relay, and everything ends marked published.
func TestOutboxTwoRelaysPostgres(t *testing.T) {
	tg := newTarget(t, sqlstore.Postgres)
	db1 := outboxDB(t, tg)
	db2 := tg.open(t)
	s := &sink{}
	slow := func(ctx context.Context, msgs []sqlstore.OutboxMessage) error {
		time.Sleep(time.Millisecond)
		return s.publish(ctx, msgs)
	}
	r1 := sqlstore.NewRelay(db1, slow, sqlstore.RelayOptions{Logger: quiet, BatchSize: 16, PollInterval: 5 * time.Millisecond})
	r2 := sqlstore.NewRelay(db2, slow, sqlstore.RelayOptions{Logger: quiet, BatchSize: 16, PollInterval: 5 * time.Millisecond})
	stop1, stop2 := runRelay(t, r1), runRelay(t, r2)
	const writers, per = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				addMsgs(t, db1, w*1000+i, 1, false)
				r1.Notify()
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all published", func() bool { return pending(t, r1) == 0 })
	stop1()
	stop2()
	seen := map[string]int{}
	for _, id := range s.ids() {
		seen[id]++
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < per; i++ {
			if seen[fmt.Sprintf("m%05d", w*1000+i)] == 0 {
				t.Fatalf("message %d/%d never published", w, i)
			}
		}
	}
	// Per writer, publication order follows commit order.
	last := map[int]int{}
	for _, id := range s.ids() {
		var n int
		fmt.Sscanf(id, "m%05d", &n)
		w, i := n/1000, n%1000
		if prev, ok := last[w]; ok && i < prev {
			t.Fatalf("writer %d: %d published after %d", w, i, prev)
		}
		last[w] = i
	}
	var unmarked int
	db1.QueryRowContext(context.Background(), "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&unmarked)
	if unmarked != 0 {
		t.Fatalf("%d rows left unmarked", unmarked)
	}
}
