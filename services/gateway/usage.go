package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter is the part of the shared cache the daily call limit needs;
// cache.Cache (Redis or in-process) satisfies it.
type Counter interface {
	// IncrUpTo increments key unless that would exceed limit, atomically,
	// setting its expiry to expireAt, and returns the resulting value.
	IncrUpTo(ctx context.Context, key string, limit int64, expireAt time.Time) (int64, bool, error)
	// IncrBy adds n to key, setting its expiry to expireAt.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
	// ReserveUpTo adds as much of n as fits under limit, atomically, and
	// returns how much it added and the resulting value.
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error)
}

// usageLimiter enforces an organisation's daily call limit with one atomic
// counter per organisation and UTC day, shared by every gateway replica.
//
// A limited organisation far from its limit is counted in reservations: one
// atomic ReserveUpTo takes a block of the day's allowance for this replica
// (at most leaseMax calls and at most 1/leaseShare of what remains), and the
// replica admits that many calls without another round trip. The shared
// counter always holds the calls admitted plus those reserved, so the
// replicas together never admit more than the limit; near the limit blocks
// shrink to single calls, and the unused part of every reservation is given
// back at each flush, so an idle replica holds nothing for long. Within a
// replica one reservation per organisation is in flight at a time and the
// calls arriving meanwhile wait for it, so a replica admits exactly up to
// the limit under any concurrency.
type usageLimiter struct {
	shared   Counter
	fallback Counter // in-process; used when shared fails, so limits hold
	metric   prometheus.Counter
	logger   *slog.Logger
	lastLog  atomic.Int64 // unix nanos of the last fallback log line
	// downUntil (unix nanos) skips the shared cache for a moment after it
	// failed, so an outage does not add a timeout to every request.
	downUntil atomic.Int64
	day       atomic.Pointer[utcDay]

	// Calls of unlimited organisations are only counted for usage, so
	// they are summed here and added to the shared counter in one INCRBY
	// per organisation every flush interval: no cache round trip on their
	// requests. Limited organisations keep one atomic operation per call.
	mu      sync.Mutex
	pending map[string]pendingCalls
	leases  map[string]*lease // by counter key, guarded by mu
}

// Reservation sizes.
const (
	leaseMax   = 100 // calls reserved at most in one round trip
	leaseShare = 16  // a reservation takes at most this share of what remains
)

// leaseSize is the block to reserve when the shared counter last stood at
// total.
func leaseSize(limit, total int64) int64 {
	return max(1, min(leaseMax, (limit-total)/leaseShare))
}

// lease is this replica's reservation on one organisation's daily counter.
type lease struct {
	left     int64 // reserved calls not yet admitted
	total    int64 // shared counter after the last reservation (-1: not seen yet)
	expireAt time.Time
	used     bool         // admitted a call since the last flush
	inflight *reservation // the round trip under way, if any
}

// reservation is one ReserveUpTo round trip; done closes when its outcome
// is in the lease.
type reservation struct {
	done    chan struct{}
	granted int64
	failed  bool // the shared counter failed; callers fall back
}

type pendingCalls struct {
	n        int64
	expireAt time.Time
}

// flush adds the batched counts of unlimited organisations to the shared
// counter (or the in-process one while the shared cache is down).
func (l *usageLimiter) flush(ctx context.Context) {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	var unused map[string]pendingCalls
	for key, ls := range l.leases {
		if ls.left > 0 {
			if unused == nil {
				unused = map[string]pendingCalls{}
			}
			unused[key] = pendingCalls{n: ls.left, expireAt: ls.expireAt}
			ls.left = 0
		}
		if !ls.used && ls.inflight == nil {
			delete(l.leases, key)
		}
		ls.used = false
	}
	l.mu.Unlock()
	// Reservations come from the shared counter only, so they go back
	// there; one that cannot be given back stays counted until midnight.
	for key, p := range unused {
		if l.shared == nil {
			break
		}
		if _, err := l.shared.IncrBy(ctx, key, -p.n, p.expireAt); err != nil {
			l.fellBack(err)
		}
	}
	for key, p := range batch {
		err := errSkipped
		if l.shared != nil && time.Now().UnixNano() >= l.downUntil.Load() {
			if _, err = l.shared.IncrBy(ctx, key, p.n, p.expireAt); err == nil {
				continue
			}
		}
		l.fellBack(err)
		_, _ = l.fallback.IncrBy(ctx, key, p.n, p.expireAt)
	}
}

// runFlusher flushes every interval until ctx ends, then once more.
func (l *usageLimiter) runFlusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			l.flush(fctx)
			cancel()
			return
		case <-t.C:
			l.flush(ctx)
		}
	}
}

// utcDay caches the key suffix and reset time of the current UTC day.
type utcDay struct {
	start    int64 // unix seconds of 00:00 UTC
	stamp    string
	midnight time.Time // next UTC midnight
}

// usage is the outcome of counting one call.
type usage struct {
	allowed   bool
	unlimited bool
	limit     int64
	remaining int64
	reset     time.Duration // until the counter resets (next UTC midnight)
}

func (l *usageLimiter) today(now time.Time) *utcDay {
	sec := now.Unix()
	if d := l.day.Load(); d != nil && sec >= d.start && sec < d.start+86400 {
		return d
	}
	u := now.UTC()
	start := time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	d := &utcDay{start: start.Unix(), stamp: start.Format("20060102"), midnight: start.Add(24 * time.Hour)}
	l.day.Store(d)
	return d
}

// take counts one call of org against limit (-1 = unlimited).
func (l *usageLimiter) take(ctx context.Context, org string, limit int64, now time.Time) usage {
	d := l.today(now)
	key := "usage:calls:" + org + ":" + d.stamp
	u := usage{limit: limit, reset: d.midnight.Sub(now)}
	shared := l.shared
	if time.Now().UnixNano() < l.downUntil.Load() {
		shared = nil
	}
	if limit < 0 {
		u.allowed, u.unlimited = true, true
		l.mu.Lock()
		if l.pending == nil {
			l.pending = map[string]pendingCalls{}
		}
		p := l.pending[key]
		p.n++
		p.expireAt = d.midnight
		l.pending[key] = p
		l.mu.Unlock()
		return u
	}
	err := errSkipped
	if shared != nil {
		if u.allowed, u.remaining, err = l.takeReserved(ctx, shared, key, limit, d.midnight); err == nil {
			return u
		}
	}
	l.fellBack(err)
	// The in-process counter cannot fail in practice; if it ever did,
	// refusing is the safe side.
	v, ok, err := l.fallback.IncrUpTo(ctx, key, limit, d.midnight)
	if err != nil {
		return u
	}
	u.allowed = ok
	u.remaining = max(limit-v, 0)
	return u
}

// takeReserved admits one call from this replica's reservation on key,
// reserving a new block from the shared counter when it is used up (or
// waiting for the reservation another call already started). An error means
// the shared counter could not be reached and the caller must fall back:
// the counter's own error for the call that tried, errSkipped for the calls
// that waited for it.
func (l *usageLimiter) takeReserved(ctx context.Context, shared Counter, key string, limit int64, expireAt time.Time) (allowed bool, remaining int64, err error) {
	l.mu.Lock()
	if l.leases == nil {
		l.leases = map[string]*lease{}
	}
	ls := l.leases[key]
	if ls == nil {
		ls = &lease{total: -1, expireAt: expireAt}
		l.leases[key] = ls
	}
	var waited *reservation
	for {
		if ls.left > 0 {
			ls.left--
			ls.used = true
			remaining = max(limit-ls.total+ls.left, 0)
			l.mu.Unlock()
			return true, remaining, nil
		}
		if waited != nil && waited.failed {
			l.mu.Unlock()
			return false, 0, errSkipped
		}
		if waited != nil && waited.granted == 0 {
			// The reservation this call waited for found the limit
			// reached: so is this call.
			remaining = max(limit-ls.total, 0)
			l.mu.Unlock()
			return false, remaining, nil
		}
		if res := ls.inflight; res != nil {
			l.mu.Unlock()
			select {
			case <-res.done:
			case <-ctx.Done():
				return false, 0, nil // the caller is gone; nobody reads the answer
			}
			l.mu.Lock()
			waited = res
			continue
		}
		break
	}
	n := int64(1)
	if ls.total >= 0 {
		n = leaseSize(limit, ls.total)
	}
	res := &reservation{done: make(chan struct{})}
	ls.inflight = res
	l.mu.Unlock()

	granted, total, err := shared.ReserveUpTo(ctx, key, n, limit, expireAt)

	l.mu.Lock()
	ls.inflight = nil
	if err != nil {
		res.failed = true
		close(res.done)
		l.mu.Unlock()
		return false, 0, err
	}
	res.granted = granted
	ls.total = total
	if granted > 0 {
		ls.left += granted - 1
		ls.used = true
	}
	// A flush may have dropped the lease meanwhile (it was idle): keep it.
	if l.leases[key] != ls {
		if cur := l.leases[key]; cur != nil {
			cur.left += ls.left
			ls.left = 0
		} else {
			l.leases[key] = ls
		}
	}
	remaining = max(limit-total+ls.left, 0)
	close(res.done)
	l.mu.Unlock()
	return granted > 0, remaining, nil
}

// errSkipped marks a call not sent to the shared cache because it failed
// recently.
var errSkipped = errors.New("shared cache failed recently")

// sharedRetry is how long the shared cache is skipped after a failure.
const sharedRetry = time.Second

func (l *usageLimiter) fellBack(err error) {
	l.metric.Inc()
	now := time.Now().UnixNano()
	if err != errSkipped {
		l.downUntil.Store(now + int64(sharedRetry))
	}
	last := l.lastLog.Load()
	if now-last >= int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.logger.Warn("shared cache failed; counting calls in process", "err", err)
	}
}

// setHeaders writes the RateLimit headers (draft-ietf-httpapi-ratelimit-headers).
func (u usage) setHeaders(h http.Header) {
	if u.unlimited {
		return
	}
	reset := strconv.FormatInt(int64((u.reset+time.Second-1)/time.Second), 10)
	h["Ratelimit-Limit"] = []string{strconv.FormatInt(u.limit, 10)}
	h["Ratelimit-Remaining"] = []string{strconv.FormatInt(u.remaining, 10)}
	h["Ratelimit-Reset"] = []string{reset}
}
