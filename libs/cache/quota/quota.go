// Package quota admits units (calls, tokens) against limits kept in shared
// counters without a round trip per unit.
//
// A Reserver takes a block of a counter's allowance with one atomic
// ReserveUpTo (at most MaxBlock units and at most 1/BlockShare of what
// remains) and admits that many units locally. The shared counter always
// holds the units admitted plus those reserved, so any number of replicas
// together never admit more than the limit. Near the limit blocks shrink to
// single units, and Release gives the unused part of every reservation back
// (call it every few hundred milliseconds and at shutdown), so a replica
// holds nothing for long. Within a Reserver one reservation per key is in
// flight at a time and the callers arriving meanwhile wait for it, so one
// replica admits exactly up to the limit under any concurrency.
//
// The price: the shared counter reads high by the outstanding reservations
// (at most MaxBlock per replica and key, until the next Release), and in the
// last units of an allowance a replica can refuse while another still holds
// an unused reservation, until that one is used or released.
package quota

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Counter is the part of the shared cache a Reserver needs; cache.Cache
// (Redis or in-process) satisfies it.
type Counter interface {
	// ReserveUpTo adds as much of n as fits under limit, atomically, and
	// returns how much it added and the resulting value.
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error)
	// IncrBy adds n (negative to give back) to key.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
}

// Block sizes.
const (
	MaxBlock   = 100 // units reserved at most in one round trip
	BlockShare = 16  // a reservation takes at most this share of what remains
)

// BlockSize is the block to reserve when the shared counter last stood at
// total.
func BlockSize(limit, total int64) int64 {
	return max(1, min(MaxBlock, (limit-total)/BlockShare))
}

// ErrReservationFailed is returned to the callers that waited for a
// reservation whose round trip failed (the caller that made it gets the
// counter's own error).
var ErrReservationFailed = errors.New("quota: shared counter reservation failed")

// Reserver admits units from block reservations on shared counters. The
// zero value is not usable; use New.
type Reserver struct {
	c Counter

	mu     sync.Mutex
	leases map[string]*lease // by counter key
}

// lease is this replica's reservation on one counter.
type lease struct {
	left     int64 // reserved units not yet admitted
	total    int64 // shared counter after the last reservation (-1: not seen yet)
	expireAt time.Time
	used     bool         // admitted a unit since the last Release
	inflight *reservation // the round trip under way, if any
}

// reservation is one ReserveUpTo round trip; done closes when its outcome
// is in the lease.
type reservation struct {
	done    chan struct{}
	granted int64
	failed  bool
}

// New returns a Reserver over c.
func New(c Counter) *Reserver {
	return &Reserver{c: c, leases: map[string]*lease{}}
}

// Take admits one unit on key against limit, from this replica's
// reservation or, when that is used up, from a new one (or from the one
// another caller already started). remaining is what is left of the limit
// as this replica sees it. An error means the shared counter could not be
// reached: the caller decides whether to fall back, allow or refuse.
// expireAt is set on the counter when a reservation creates it.
func (r *Reserver) Take(ctx context.Context, key string, limit int64, expireAt time.Time) (allowed bool, remaining int64, err error) {
	r.mu.Lock()
	ls := r.leases[key]
	if ls == nil {
		ls = &lease{total: -1, expireAt: expireAt}
		r.leases[key] = ls
	}
	var waited *reservation
	for {
		if ls.left > 0 {
			ls.left--
			ls.used = true
			remaining = max(limit-ls.total+ls.left, 0)
			r.mu.Unlock()
			return true, remaining, nil
		}
		if waited != nil && waited.failed {
			r.mu.Unlock()
			return false, 0, ErrReservationFailed
		}
		if waited != nil && waited.granted == 0 {
			// The reservation this call waited for found the limit
			// reached: so is this call.
			remaining = max(limit-ls.total, 0)
			r.mu.Unlock()
			return false, remaining, nil
		}
		res := ls.inflight
		if res == nil {
			break
		}
		r.mu.Unlock()
		select {
		case <-res.done:
		case <-ctx.Done():
			return false, 0, ctx.Err()
		}
		r.mu.Lock()
		waited = res
	}
	n := int64(1)
	if ls.total >= 0 {
		n = BlockSize(limit, ls.total)
	}
	res := &reservation{done: make(chan struct{})}
	ls.inflight = res
	r.mu.Unlock()

	// Other callers may be waiting for this reservation: it must not fail
	// because this caller went away (the counter's own timeouts bound it).
	granted, total, err := r.c.ReserveUpTo(context.WithoutCancel(ctx), key, n, limit, expireAt)

	r.mu.Lock()
	defer r.mu.Unlock()
	defer close(res.done)
	ls.inflight = nil
	if err != nil {
		res.failed = true
		return false, 0, err
	}
	res.granted = granted
	ls.total = total
	if granted > 0 {
		ls.left += granted - 1
		ls.used = true
	}
	// Release drops only leases without a reservation in flight, so ls is
	// still in the map; keep it there regardless.
	if cur := r.leases[key]; cur != ls {
		if cur != nil {
			cur.left += ls.left
			ls.left = 0
		} else {
			r.leases[key] = ls
		}
	}
	return granted > 0, max(limit-total+ls.left, 0), nil
}

// Release gives the unused part of every reservation back to the shared
// counter and forgets the counters not used since the previous Release. A
// part that cannot be given back stays counted (it expires with its
// counter); the first error is returned.
func (r *Reserver) Release(ctx context.Context) error {
	type giveBack struct {
		key      string
		n        int64
		expireAt time.Time
	}
	var back []giveBack
	r.mu.Lock()
	for key, ls := range r.leases {
		if ls.left > 0 {
			back = append(back, giveBack{key, ls.left, ls.expireAt})
			ls.left = 0
		}
		if !ls.used && ls.inflight == nil {
			delete(r.leases, key)
		}
		ls.used = false
	}
	r.mu.Unlock()
	var first error
	for _, b := range back {
		if _, err := r.c.IncrBy(ctx, b.key, -b.n, b.expireAt); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Len is the number of counters the Reserver currently tracks.
func (r *Reserver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.leases)
}
