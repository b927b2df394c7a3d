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
//
// While the shared counter cannot be reached, TakeShare admits from this
// replica's share of what remained: (limit − the count it last saw) / live
// replicas, computed once per key and outage. It records what it admitted
// and Release (or the first reservation on that key once the counter is
// back) adds it to the shared counter with one IncrByOnce per key, so a
// retry after an unknown outcome never adds it twice and the day's count is
// right afterwards. docs/operations.md states the resulting bound.
package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
)

// Counter is the part of the shared cache a Reserver needs; cache.Cache
// (Redis or in-process) satisfies it.
type Counter interface {
	// ReserveUpTo adds as much of n as fits under limit, atomically, and
	// returns how much it added and the resulting value.
	ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error)
	// IncrBy adds n (negative to give back) to key.
	IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error)
	// IncrByOnce adds n to key unless the same id was applied before.
	IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error)
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

// Outage shares.
const (
	// KnownMaxAge is how long the count a replica last saw on a counter
	// stands for "what remained" when the counter becomes unreachable;
	// an older one counts as unknown.
	KnownMaxAge = time.Minute
	// UnknownShareDivisor: with no recent count known, a replica admits
	// limit / (live replicas × UnknownShareDivisor) during an outage, so
	// the replicas together admit at most a tenth of the limit on a
	// counter none of them has seen: a small share, not nothing, so a
	// first call of the day during an outage is not refused outright.
	UnknownShareDivisor = 10
)

// Options configures NewWithOptions.
type Options struct {
	// ID names this replica in the ids of its add-backs (IncrByOnce);
	// random when empty. It must differ between replicas and restarts.
	ID string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Reserver admits units from block reservations on shared counters. The
// zero value is not usable; use New.
type Reserver struct {
	c   Counter
	id  string
	now func() time.Time

	mu     sync.Mutex
	leases map[string]*lease // by counter key
	known  map[string]seen   // last shared count seen, by counter key
	shares map[string]*share // outage admissions, by counter key
	seq    uint64            // numbers the add-back batches
}

// seen is a shared count this replica saw, and when.
type seen struct {
	total    int64
	at       time.Time
	expireAt time.Time
}

// share is what this replica admits and owes on one counter because the
// counter could not be reached.
type share struct {
	active   bool  // left holds this outage's remaining share
	left     int64 // units still admissible in this outage
	owed     int64 // to add to the shared counter (admitted, minus reservations not given back)
	pending  *addBack
	expireAt time.Time
}

// addBack is an adjustment sent (or being sent) to the shared counter. It
// keeps its id until it is known to be applied, so a retry is idempotent.
type addBack struct {
	id string
	n  int64
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
	return NewWithOptions(c, Options{})
}

// NewWithOptions returns a Reserver over c configured by o.
func NewWithOptions(c Counter, o Options) *Reserver {
	if o.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.ID = hex.EncodeToString(b[:])
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reserver{c: c, id: o.ID, now: o.Now, leases: map[string]*lease{},
		known: map[string]seen{}, shares: map[string]*share{}}
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
	back := r.prepareAddBack(key)
	r.mu.Unlock()

	// Other callers may be waiting for this reservation: it must not fail
	// because this caller went away (the counter's own timeouts bound it).
	rctx := context.WithoutCancel(ctx)
	// What an outage admitted goes into the counter before anything more
	// is reserved on it, so the reservation sees the true count.
	if back != nil {
		err = r.sendAddBack(rctx, key, back)
	}
	var granted, total int64
	if err == nil {
		granted, total, err = r.c.ReserveUpTo(rctx, key, n, limit, expireAt)
	}

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
	r.known[key] = seen{total: total, at: r.now(), expireAt: expireAt}
	if sh := r.shares[key]; sh != nil {
		sh.active = false // the outage is over on this counter
	}
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
// counter, adds back what outages admitted (TakeShare), and forgets the
// counters not used since the previous Release. A give-back refused by an
// open circuit breaker (so certainly not applied) is kept and sent with the
// next add-back; one that failed otherwise may have been applied, so it
// stays counted (it expires with its counter). The first error is returned.
func (r *Reserver) Release(ctx context.Context) error {
	type giveBack struct {
		key      string
		n        int64
		expireAt time.Time
	}
	var back []giveBack
	r.mu.Lock()
	now := r.now()
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
	for key, k := range r.known {
		if !k.expireAt.IsZero() && !now.Before(k.expireAt) {
			delete(r.known, key)
		}
	}
	r.mu.Unlock()
	var first error
	for _, b := range back {
		if _, err := r.c.IncrBy(ctx, b.key, -b.n, b.expireAt); err != nil {
			if first == nil {
				first = err
			}
			if errors.Is(err, cache.ErrCircuitOpen) {
				r.mu.Lock()
				sh := r.shareFor(b.key, b.expireAt)
				sh.owed -= b.n
				r.mu.Unlock()
			}
		}
	}
	r.mu.Lock()
	var keys []string
	for key, sh := range r.shares {
		if !sh.expireAt.IsZero() && !now.Before(sh.expireAt) {
			delete(r.shares, key) // the counter is gone: nothing to add to
			continue
		}
		if sh.owed != 0 || sh.pending != nil {
			keys = append(keys, key)
		}
	}
	r.mu.Unlock()
	for _, key := range keys {
		// A batch left pending by a failed attempt goes first, with its
		// id; what was owed since follows in a second batch.
		for range 2 {
			r.mu.Lock()
			ab := r.prepareAddBack(key)
			r.mu.Unlock()
			if ab == nil {
				break
			}
			if err := r.sendAddBack(ctx, key, ab); err != nil {
				if first == nil {
					first = err
				}
				break
			}
		}
	}
	return first
}

// TakeShare admits one unit on key while the shared counter cannot be
// reached: from this replica's share of what remained, computed at the
// first call of the outage as (limit − the count last seen, if seen within
// KnownMaxAge) / replicas, or limit / (replicas × UnknownShareDivisor) with
// no recent count, rounded down. What it admits is added to the shared
// counter by Release or by the next reservation on key. remaining is what
// is left of this replica's share.
func (r *Reserver) TakeShare(key string, limit int64, replicas int, expireAt time.Time) (allowed bool, remaining int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sh := r.shareFor(key, expireAt)
	if !sh.active {
		sh.active = true
		sh.left = r.shareOf(key, limit, max(int64(replicas), 1))
	}
	if sh.left <= 0 {
		return false, 0
	}
	sh.left--
	sh.owed++
	return true, sh.left
}

// shareOf is this replica's share of what remained on key. r.mu held.
func (r *Reserver) shareOf(key string, limit, replicas int64) int64 {
	if k, ok := r.known[key]; ok && r.now().Sub(k.at) <= KnownMaxAge {
		return max(limit-k.total, 0) / replicas
	}
	return max(limit, 0) / (replicas * UnknownShareDivisor)
}

// shareFor returns key's share record, creating it. r.mu held.
func (r *Reserver) shareFor(key string, expireAt time.Time) *share {
	sh := r.shares[key]
	if sh == nil {
		sh = &share{}
		r.shares[key] = sh
	}
	sh.expireAt = expireAt
	return sh
}

// prepareAddBack returns the adjustment to send for key: the one a failed
// attempt left pending (same id), or a new one of everything owed. nil
// when nothing is owed. r.mu held.
func (r *Reserver) prepareAddBack(key string) *addBack {
	sh := r.shares[key]
	if sh == nil {
		return nil
	}
	if sh.pending == nil && sh.owed != 0 {
		r.seq++
		sh.pending = &addBack{id: r.id + "-" + strconv.FormatUint(r.seq, 10), n: sh.owed}
		sh.owed = 0
	}
	return sh.pending
}

// sendAddBack applies ab to key's shared counter. On success the pending
// adjustment is cleared; on failure it stays, with its id, for a retry.
func (r *Reserver) sendAddBack(ctx context.Context, key string, ab *addBack) error {
	r.mu.Lock()
	var expireAt time.Time
	if sh := r.shares[key]; sh != nil {
		expireAt = sh.expireAt
	}
	r.mu.Unlock()
	_, total, err := r.c.IncrByOnce(ctx, key, ab.id, ab.n, expireAt)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sh := r.shares[key]
	if sh != nil && sh.pending == ab {
		sh.pending = nil
		// The counter answered: the outage is over on it, and a later one
		// starts from the count just seen.
		sh.active = false
		if sh.owed == 0 {
			delete(r.shares, key)
		}
	}
	r.known[key] = seen{total: total, at: r.now(), expireAt: expireAt}
	return nil
}

// Seen is the count this replica last saw on key's shared counter, and
// whether it saw one.
func (r *Reserver) Seen(key string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.known[key]
	return k.total, ok
}

// Owed is the number of units admitted during outages (net of give-backs
// held back) not yet added to the shared counters.
func (r *Reserver) Owed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, sh := range r.shares {
		n += sh.owed
		if sh.pending != nil {
			n += sh.pending.n
		}
	}
	return n
}

// Len is the number of counters the Reserver currently tracks.
func (r *Reserver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.leases)
}
