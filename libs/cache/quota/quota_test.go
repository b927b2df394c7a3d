package quota_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/cache/quota"
)

// countingCounter counts the round trips made to a shared counter; delay
// makes a reservation take as long as a network round trip, and fail makes
// them fail.
type countingCounter struct {
	*cache.Memory
	delay           time.Duration
	fail            atomic.Bool
	reserves, incrs atomic.Int64
	lostReply       atomic.Bool // the next IncrByOnce applies but reports a failure
}

var errDown = errors.New("counter down")

func newCounter(delay time.Duration) *countingCounter {
	return &countingCounter{Memory: cache.NewMemory(cache.MemoryOptions{}), delay: delay}
}

func (c *countingCounter) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	c.reserves.Add(1)
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	if c.fail.Load() {
		return 0, 0, errDown
	}
	return c.Memory.ReserveUpTo(ctx, key, n, limit, expireAt)
}

func (c *countingCounter) IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	c.incrs.Add(1)
	if c.fail.Load() {
		return 0, errDown
	}
	return c.Memory.IncrBy(ctx, key, n, expireAt)
}

func (c *countingCounter) value(t *testing.T, key string) int64 {
	t.Helper()
	v, err := c.Counters(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

var (
	ctx      = context.Background()
	tomorrow = time.Now().Add(24 * time.Hour)
)

func TestUnitsAreAdmittedFromReservations(t *testing.T) {
	t.Parallel()
	c := newCounter(0)
	r := quota.New(c)
	const limit, calls = 10_000, 450
	for i := range calls {
		ok, remaining, err := r.Take(ctx, "k", limit, tomorrow)
		if err != nil || !ok {
			t.Fatalf("call %d: %v %v", i, ok, err)
		}
		if want := int64(limit - i - 1); remaining != want {
			t.Fatalf("call %d: remaining %d, want %d", i, remaining, want)
		}
	}
	// One single-unit reservation to learn the counter, then blocks of
	// MaxBlock: 1 + ceil(449/100) = 6 round trips instead of 450.
	if n := c.reserves.Load(); n != 6 {
		t.Fatalf("%d reservations for %d calls, want 6", n, calls)
	}
	// The counter holds the admitted units plus the unused reservation
	// until Release gives it back.
	if v := c.value(t, "k"); v != 1+5*quota.MaxBlock {
		t.Fatalf("counter before Release = %d, want %d", v, 1+5*quota.MaxBlock)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v := c.value(t, "k"); v != calls {
		t.Fatalf("counter after Release = %d, want %d (the units admitted)", v, calls)
	}
	// Unused for a whole interval: forgotten.
	if err := r.Release(ctx); err != nil || r.Len() != 0 {
		t.Fatalf("after an idle interval: %d counters tracked (%v)", r.Len(), err)
	}
}

func TestBlocksShrinkNearTheLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ limit, total, want int64 }{
		{50_000, 0, quota.MaxBlock}, {50_000, 49_000, 62}, {50_000, 49_990, 1}, {3, 0, 1}, {100, 100, 1}, {100, 150, 1},
	} {
		if got := quota.BlockSize(c.limit, c.total); got != c.want {
			t.Errorf("BlockSize(%d, %d) = %d, want %d", c.limit, c.total, got, c.want)
		}
	}
}

// Several replicas sharing one counter, each with many concurrent callers,
// admit exactly the limit between them.
func TestReplicasTogetherAdmitExactlyTheLimit(t *testing.T) {
	t.Parallel()
	c := newCounter(100 * time.Microsecond)
	replicas := []*quota.Reserver{quota.New(c), quota.New(c), quota.New(c)}
	const limit, workers = 2_000, 16
	var admitted atomic.Int64
	var wg sync.WaitGroup
	stopRelease := make(chan struct{})
	released := make(chan struct{})
	go func() { // releases give reservations back while the callers run
		defer close(released)
		for {
			select {
			case <-stopRelease:
				return
			case <-time.After(time.Millisecond):
				for _, r := range replicas {
					_ = r.Release(ctx)
				}
			}
		}
	}()
	for _, r := range replicas {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ok, _, err := r.Take(ctx, "k", limit, tomorrow)
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						return
					}
					admitted.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stopRelease)
	<-released
	if got := admitted.Load(); got > limit {
		t.Fatalf("admitted %d, more than the limit %d", got, limit)
	}
	// A caller stops at its first refusal, which a replica can meet while
	// another still holds an unused reservation; once released, the rest of
	// the allowance is admitted to the last unit, and not one more.
	for _, r := range replicas {
		_ = r.Release(ctx)
	}
	for _, r := range replicas {
		for {
			ok, _, err := r.Take(ctx, "k", limit, tomorrow)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			admitted.Add(1)
		}
	}
	if got := admitted.Load(); got != limit {
		t.Fatalf("admitted %d, want exactly %d", got, limit)
	}
	if n := c.reserves.Load(); n >= limit/2 {
		t.Fatalf("%d round trips for %d units: reservations were not shared", n, limit)
	}
}

// Within one replica, concurrent callers wait for the reservation in
// flight instead of racing it, so none is refused while units remain: as
// many concurrent callers as the limit are all admitted, and the next ones
// all refused.
func TestOneReplicaAdmitsExactlyTheLimitUnderConcurrency(t *testing.T) {
	t.Parallel()
	c := newCounter(100 * time.Microsecond)
	r := quota.New(c)
	const limit = 700
	// One call first, so the replica knows the counter and reserves blocks.
	if ok, _, err := r.Take(ctx, "k", limit, tomorrow); !ok || err != nil {
		t.Fatalf("first call: %v %v", ok, err)
	}
	wave := func(callers int) (admitted, refused int64) {
		var a, f atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, _, err := r.Take(ctx, "k", limit, tomorrow)
				switch {
				case err != nil:
					t.Error(err)
				case ok:
					a.Add(1)
				default:
					f.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		return a.Load(), f.Load()
	}
	if a, f := wave(limit - 1); a != limit-1 || f != 0 {
		t.Fatalf("first wave: admitted %d refused %d, want %d and 0", a, f, limit-1)
	}
	if a, f := wave(100); a != 0 || f != 100 {
		t.Fatalf("second wave: admitted %d refused %d, want 0 and 100", a, f)
	}
}

// A failed round trip is an error for the caller that made it and for the
// callers waiting on it; nothing is admitted, and nothing is counted.
func TestFailedReservationIsAnErrorForEveryWaiter(t *testing.T) {
	t.Parallel()
	c := newCounter(2 * time.Millisecond)
	c.fail.Store(true)
	r := quota.New(c)
	var wg sync.WaitGroup
	var own, waited atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _, err := r.Take(ctx, "k", 100, tomorrow)
			switch {
			case ok:
				t.Error("admitted while the counter is down")
			case errors.Is(err, errDown):
				own.Add(1)
			case errors.Is(err, quota.ErrReservationFailed):
				waited.Add(1)
			default:
				t.Errorf("err = %v", err)
			}
		}()
	}
	wg.Wait()
	if own.Load() == 0 || own.Load()+waited.Load() != 20 {
		t.Fatalf("own errors %d, waiters' errors %d; want at least one and 20 in all", own.Load(), waited.Load())
	}
	c.fail.Store(false)
	if ok, _, err := r.Take(ctx, "k", 100, tomorrow); !ok || err != nil {
		t.Fatalf("after recovery: %v %v", ok, err)
	}
	if v := c.value(t, "k"); v != 1 {
		t.Fatalf("counter = %d, want 1", v)
	}
}

// A caller that gives up while waiting for a reservation is told so and is
// not admitted.
func TestWaitingCallerCanGiveUp(t *testing.T) {
	t.Parallel()
	c := newCounter(200 * time.Millisecond)
	r := quota.New(c)
	go func() { _, _, _ = r.Take(ctx, "k", 100, tomorrow) }()
	for c.reserves.Load() == 0 { // the first caller's reservation is in flight
		time.Sleep(time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if ok, _, err := r.Take(cctx, "k", 100, tomorrow); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v %v, want refused with context.DeadlineExceeded", ok, err)
	}
}

func TestReleaseFailureIsReported(t *testing.T) {
	t.Parallel()
	c := newCounter(0)
	r := quota.New(c)
	for range 3 { // the second reservation is a block
		if ok, _, err := r.Take(ctx, "k", 10_000, tomorrow); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	c.fail.Store(true)
	if err := r.Release(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Release with the counter down: %v, want %v", err, errDown)
	}
}

// The caller that makes a reservation going away does not fail the callers
// waiting for it.
func TestReservationOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	c := newCounter(100 * time.Millisecond)
	r := quota.New(c)
	cctx, cancel := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() { _, _, err := r.Take(cctx, "k", 100, tomorrow); first <- err }()
	for c.reserves.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiter := make(chan bool, 1)
	go func() { ok, _, _ := r.Take(ctx, "k", 100, tomorrow); waiter <- ok }()
	time.Sleep(10 * time.Millisecond) // the waiter is waiting
	cancel()
	if err := <-first; err != nil {
		t.Fatalf("reserving caller: %v", err)
	}
	if !<-waiter {
		t.Fatal("waiter refused after the reserving caller went away")
	}
}

func (c *countingCounter) IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error) {
	c.incrs.Add(1)
	if c.fail.Load() {
		return false, 0, errDown
	}
	applied, v, err := c.Memory.IncrByOnce(ctx, key, id, n, expireAt)
	if c.lostReply.CompareAndSwap(true, false) {
		return false, 0, errDown // applied, but the caller cannot know
	}
	return applied, v, err
}

// takeOrShare is what a limiter does: the shared counter, or this
// replica's outage share when the counter cannot be reached.
func takeOrShare(r *quota.Reserver, key string, limit int64, replicas int) bool {
	ok, _, err := r.Take(ctx, key, limit, tomorrow)
	if err != nil {
		ok, _ = r.TakeShare(key, limit, replicas, tomorrow)
	}
	return ok
}

// Replicas cut from the shared counter must not each count from zero: they
// admit only their share of what remained, and add it back afterwards.
func TestAttackOutageDoesNotMultiplyTheLimit(t *testing.T) {
	t.Parallel()
	c := newCounter(0)
	const limit, before, n = 1000, 600, 3
	rs := []*quota.Reserver{quota.New(c), quota.New(c), quota.New(c)}
	admitted := 0
	for i := range before {
		if takeOrShare(rs[i%n], "k", limit, n) {
			admitted++
		}
	}
	if admitted != before {
		t.Fatalf("admitted before the cut = %d; want %d", admitted, before)
	}
	// Every unit counted at the cut is admitted (reservations left unused
	// at the cut are still used), plus each replica's share: (limit − the
	// count it last saw) / n, rounded down.
	cut := c.value(t, "k")
	want, bound := cut, int64(0)
	for _, r := range rs {
		seen, ok := r.Seen("k")
		if !ok {
			t.Fatal("a replica that reserved has no count seen")
		}
		want += (limit - seen) / n
		bound += cut - seen
	}
	bound /= n // the documented bound: the average lag of the replicas' views
	c.fail.Store(true)
	for i := range 10 * limit {
		if takeOrShare(rs[i%n], "k", limit, n) {
			admitted++
		}
	}
	if int64(admitted) != want {
		t.Fatalf("admitted with the counter down = %d; want %d", admitted, want)
	}
	if int64(admitted) > limit+bound {
		t.Fatalf("admitted = %d; want <= limit + bound = %d", admitted, limit+bound)
	}
	// Without the share each replica would count from zero: 600 + 3×1000.
	if admitted > limit+quota.MaxBlock {
		t.Fatalf("admitted = %d; want <= %d", admitted, limit+quota.MaxBlock)
	}
	c.fail.Store(false)
	for _, r := range rs {
		if err := r.Release(ctx); err != nil {
			t.Fatalf("Release after the outage: %v", err)
		}
		if got := r.Owed(); got != 0 {
			t.Fatalf("Owed() after Release = %d; want 0", got)
		}
	}
	if got := c.value(t, "k"); got != int64(admitted) {
		t.Fatalf("shared counter after the outage = %d; want %d (every admitted unit)", got, admitted)
	}
}

// A replica that never saw the counter (first call of the day during the
// outage, or a replica started during it) must not count from zero either:
// it admits limit / (replicas × UnknownShareDivisor).
func TestAttackOutageWithNothingKnownAdmitsOnlyAConservativeShare(t *testing.T) {
	t.Parallel()
	c := newCounter(0)
	c.fail.Store(true)
	const limit, n = 1000, 3
	r := quota.New(c)
	admitted := 0
	for range limit {
		if takeOrShare(r, "fresh", limit, n) {
			admitted++
		}
	}
	if want := limit / (n * quota.UnknownShareDivisor); admitted != want {
		t.Fatalf("admitted with nothing known = %d; want %d", admitted, want)
	}
}

// An add-back whose reply was lost (applied, but reported as failed) is
// retried with the same id: the counter must not count it twice.
func TestAttackAddBackRetryIsNotCountedTwice(t *testing.T) {
	t.Parallel()
	c := newCounter(0)
	const limit, n = 1000, 1
	r := quota.New(c)
	if !takeOrShare(r, "k", limit, n) {
		t.Fatal("first unit refused")
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	c.fail.Store(true)
	for range 10 {
		if !takeOrShare(r, "k", limit, n) {
			t.Fatal("unit refused within the outage share")
		}
	}
	c.fail.Store(false)
	c.lostReply.Store(true)
	if err := r.Release(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Release with a lost reply = %v; want %v", err, errDown)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatalf("Release retry = %v", err)
	}
	if got := c.value(t, "k"); got != 11 {
		t.Fatalf("shared counter = %d; want 11 (1 before, 10 during the outage, added once)", got)
	}
	if got := r.Owed(); got != 0 {
		t.Fatalf("Owed() = %d; want 0", got)
	}
}
