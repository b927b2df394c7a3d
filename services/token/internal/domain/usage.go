package domain

import (
	"context"
	"sync"
	"time"
)

// usageBatcher accumulates token counts of organisations without a daily
// token limit and adds them to the shared counters in one INCRBY per
// organisation and flush, instead of one cache round trip per token. With
// no limit to enforce, the count only has to be right eventually (within
// one flush interval, or what a crash loses of it); limited organisations
// still count each token atomically at issuance.
type usageBatcher struct {
	mu      sync.Mutex
	pending map[string]pendingCount
}

type pendingCount struct {
	n        int64
	expireAt time.Time
}

func newUsageBatcher() *usageBatcher {
	return &usageBatcher{pending: map[string]pendingCount{}}
}

func (b *usageBatcher) add(key string, expireAt time.Time) {
	b.mu.Lock()
	p := b.pending[key]
	p.n++
	p.expireAt = expireAt
	b.pending[key] = p
	b.mu.Unlock()
}

// flush adds every pending count to the counters; counts that fail to
// reach the cache are kept for the next flush.
func (b *usageBatcher) flush(ctx context.Context, c Counters) error {
	b.mu.Lock()
	batch := b.pending
	b.pending = make(map[string]pendingCount, len(batch))
	b.mu.Unlock()
	var firstErr error
	for key, p := range batch {
		if _, err := c.IncrBy(ctx, key, p.n, p.expireAt); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			b.mu.Lock()
			q := b.pending[key]
			q.n += p.n
			q.expireAt = p.expireAt
			b.pending[key] = q
			b.mu.Unlock()
		}
	}
	return firstErr
}

// RunUsageFlusher flushes batched token counts every interval until ctx
// ends, then once more.
func (s *Service) RunUsageFlusher(ctx context.Context, interval time.Duration) {
	if s.counters == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.usage.flush(fctx, s.counters)
			_ = s.quota.Release(fctx)
			cancel()
			return
		case <-t.C:
			if err := s.usage.flush(ctx, s.counters); err != nil {
				s.cacheErrors.Inc()
				s.log.WarnContext(ctx, "flush token usage counts; will retry", "err", err)
			}
			// Unused token reservations go back to the shared counter;
			// one that cannot be given back stays counted until midnight.
			if err := s.quota.Release(ctx); err != nil {
				s.cacheErrors.Inc()
				s.log.WarnContext(ctx, "give back unused token reservations", "err", err)
			}
		}
	}
}

// PublishAgentCounts writes every organisation's agent count to the shared
// counters (tier's /tiers/status reads them). It runs at start, so counts
// of agents created outside the service — `agentidp bootstrap` writes to
// the database directly — are right from the first request.
func (s *Service) PublishAgentCounts(ctx context.Context) error {
	if s.counters == nil {
		return nil
	}
	counts, err := s.store.CountAgentsByOrg(ctx)
	if err != nil {
		return err
	}
	for org, n := range counts {
		s.publishUsage(ctx, org, n)
	}
	return nil
}
