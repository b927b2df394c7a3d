package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/cache/quota"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Counter is the part of the shared cache the daily call limit needs;
// cache.Cache (Redis or in-process) satisfies it.
type Counter interface {
	// IncrBy adds n to key, setting its expiry to expireAt.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
	// ReserveUpTo adds as much of n as fits under limit, atomically, and
	// returns how much it added and the resulting value.
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error)
	// IncrByOnce adds n to key unless the same id was applied before.
	IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error)
}

// usageLimiter enforces an organisation's daily call limit with one atomic
// counter per organisation and UTC day, shared by every gateway replica.
// Calls of limited organisations are admitted from block reservations on
// that counter (libs/cache/quota): a round trip per block instead of per
// call, and never more than the limit across replicas.
//
// While the shared counter cannot be reached (the Redis client's circuit
// breaker makes that cost nothing per call), a replica admits only its
// share of what remained, (limit − the count it last saw) / live gateway
// replicas, and adds what it admitted back to the counter when it returns:
// the replicas together stay within the limit plus the bound stated in
// docs/operations.md, instead of each counting from zero.
type usageLimiter struct {
	shared   Counter
	reserved *quota.Reserver // over shared
	replicas func() int      // live gateway replicas (heartbeats), at least 1
	metric   prometheus.Counter
	logger   *slog.Logger
	lastLog  atomic.Int64 // unix nanos of the last fallback log line
	day      atomic.Pointer[utcDay]

	// Calls of unlimited organisations are only counted for usage, so
	// they are summed here and added to the shared counter in one INCRBY
	// per organisation every flush interval: no cache round trip on their
	// requests. A batch that cannot be added stays here for the next.
	mu      sync.Mutex
	pending map[string]pendingCalls
}

// newUsageLimiter returns a limiter over shared; replicas (nil = 1) tells
// how many gateway replicas share the limit during an outage.
func newUsageLimiter(shared Counter, replicas func() int, metric prometheus.Counter, logger *slog.Logger) *usageLimiter {
	if replicas == nil {
		replicas = func() int { return 1 }
	}
	return &usageLimiter{shared: shared, reserved: quota.New(shared), replicas: replicas, metric: metric, logger: logger}
}

type pendingCalls struct {
	n        int64
	expireAt time.Time
}

// flush gives unused reservations back, adds back what an outage admitted,
// and adds the batched counts of unlimited organisations to the shared
// counter.
func (l *usageLimiter) flush(ctx context.Context) {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	if err := l.reserved.Release(ctx); err != nil {
		l.logFallback(err)
	}
	for key, p := range batch {
		if _, err := l.shared.IncrBy(ctx, key, p.n, p.expireAt); err != nil {
			l.fellBack(err)
			l.mu.Lock()
			if l.pending == nil {
				l.pending = map[string]pendingCalls{}
			}
			q := l.pending[key]
			q.n += p.n
			q.expireAt = p.expireAt
			l.pending[key] = q
			l.mu.Unlock()
		}
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
	d := &utcDay{start: start.Unix(), stamp: events.DayStamp(start), midnight: start.Add(24 * time.Hour)}
	l.day.Store(d)
	return d
}

// take counts one call of org against limit (-1 = unlimited).
func (l *usageLimiter) take(ctx context.Context, org string, limit int64, now time.Time) usage {
	d := l.today(now)
	key := events.CallsCounterKey(org, d.stamp)
	u := usage{limit: limit, reset: d.midnight.Sub(now)}
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
	var err error
	if u.allowed, u.remaining, err = l.reserved.Take(ctx, key, limit, d.midnight); err == nil {
		return u
	}
	if ctx.Err() != nil {
		return u // the caller is gone
	}
	l.fellBack(err)
	u.allowed, u.remaining = l.reserved.TakeShare(key, limit, l.replicas(), d.midnight)
	return u
}

// fellBack counts a call or batch counted without the shared cache, and
// logs it at most every 10 s.
func (l *usageLimiter) fellBack(err error) {
	l.metric.Inc()
	l.logFallback(err)
}

func (l *usageLimiter) logFallback(err error) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last >= int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.logger.Warn("shared cache failed; admitting this replica's share of the daily limits", "replicas", l.replicas(), "err", err)
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
