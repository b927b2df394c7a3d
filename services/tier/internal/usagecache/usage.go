// Package usagecache reads an organisation's usage figures from the shared
// cache (Redis in production, in-process in dev), where the gateway and the
// token service write them.
package usagecache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentidp/agentidp/services/tier/internal/org"
)

// Source is the part of cache.Cache this adapter needs.
type Source interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Counters(ctx context.Context, keys ...string) ([]int64, error)
}

// Reader implements org.UsageReader.
type Reader struct {
	src Source
}

var _ org.UsageReader = (*Reader)(nil)

// New returns a reader over src.
func New(src Source) *Reader { return &Reader{src: src} }

// Usage implements org.UsageReader: the agent count (a decimal string,
// missing = 0) and today's call and token counters.
func (r *Reader) Usage(ctx context.Context, orgID string, day time.Time) (org.Usage, error) {
	var u org.Usage
	v, ok, err := r.src.Get(ctx, org.AgentsKey(orgID))
	if err != nil {
		return org.Usage{}, fmt.Errorf("read agent count: %w", err)
	}
	if s := strings.TrimSpace(string(v)); ok && s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return org.Usage{}, fmt.Errorf("agent count of %s is not a number", orgID)
		}
		u.AgentCount = n
	}
	c, err := r.src.Counters(ctx, org.CallsKey(orgID, day), org.TokensKey(orgID, day))
	if err != nil {
		return org.Usage{}, fmt.Errorf("read usage counters: %w", err)
	}
	if len(c) != 2 {
		return org.Usage{}, fmt.Errorf("read usage counters: got %d values; want 2", len(c))
	}
	u.CallsToday, u.TokensToday = c[0], c[1]
	return u, nil
}
