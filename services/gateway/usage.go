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

	"github.com/agentidp/agentidp/libs/cache/quota"
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
// Calls of limited organisations are admitted from block reservations on
// that counter (libs/cache/quota): a round trip per block instead of per
// call, and never more than the limit across replicas.
type usageLimiter struct {
	shared   Counter
	reserved *quota.Reserver // over shared
	fallback Counter         // in-process; used when shared fails, so limits hold
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
	// requests.
	mu      sync.Mutex
	pending map[string]pendingCalls
}

func newUsageLimiter(shared, fallback Counter, metric prometheus.Counter, logger *slog.Logger) *usageLimiter {
	l := &usageLimiter{shared: shared, fallback: fallback, metric: metric, logger: logger}
	if shared != nil {
		l.reserved = quota.New(shared)
	}
	return l
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
	l.mu.Unlock()
	// Unused reservations go back to the shared counter; one that cannot
	// be given back stays counted until midnight.
	if l.reserved != nil {
		if err := l.reserved.Release(ctx); err != nil {
			l.logger.Warn("give back unused call reservations; they stay counted until midnight", "err", err)
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
		if u.allowed, u.remaining, err = l.reserved.Take(ctx, key, limit, d.midnight); err == nil {
			return u
		}
		if ctx.Err() != nil {
			return u // the caller is gone
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

// errSkipped marks a call not sent to the shared cache because it failed
// recently.
var errSkipped = errors.New("shared cache failed recently")

// sharedRetry is how long the shared cache is skipped after a failure.
const sharedRetry = time.Second

func (l *usageLimiter) fellBack(err error) {
	l.metric.Inc()
	now := time.Now().UnixNano()
	if err != errSkipped && !errors.Is(err, quota.ErrReservationFailed) {
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
