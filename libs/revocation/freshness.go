package revocation

import (
	"sync"
	"sync/atomic"
	"time"
)

// ForgetReplicaAfter is how long a token service replica may stay silent
// before a consumer stops waiting for its heartbeat (a replica that
// crashed or was scaled away without deleting its key). It is longer than
// the token service's reconciliation interval, so by the time a silent
// replica is forgotten the healthy ones have copied everything it
// committed from the database into the bucket.
const ForgetReplicaAfter = 30 * time.Second

// FallbackCaller is the subject the gateway's fallback introspection is
// signed with: the token service answers it from the database (at most
// HeartbeatInterval old), never from its NATS-fed copy alone, because the
// gateway asks exactly when NATS is in trouble.
const FallbackCaller = "agentidp-gateway"

// Freshness tracks how fresh a consumer's copy of the bucket provably is.
// Each replica's heartbeat vouches only for what that replica committed,
// so the copy is as old as the least recently heard replica; before any
// heartbeat (or with every replica forgotten) it is as old as the last
// update of any kind. Times are the consumer's own receive times (Unix
// ns): never compared with another host's clock.
type Freshness struct {
	mu       sync.Mutex
	replicas map[string]int64 // heartbeat key → last heard
	any      int64            // last update of any kind, or the initial load
	heard    atomic.Int64     // the result, for HeardNanos
}

// NewFreshness returns a tracker that has heard nothing (HeardNanos 0).
func NewFreshness() *Freshness { return &Freshness{replicas: map[string]int64{}} }

// Heard records an update of key received at now (Unix ns); deleted is a
// removed key (a replica that shut down deletes its heartbeat).
func (f *Freshness) Heard(key string, deleted bool, now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.any = now
	if IsHeartbeat(key) {
		if deleted {
			delete(f.replicas, key)
		} else {
			f.replicas[key] = now
		}
	}
	f.recomputeLocked(now)
}

// Loaded records that the initial contents were read at now.
func (f *Freshness) Loaded(now int64) { f.Heard("", false, now) }

// Tick forgets replicas silent for longer than ForgetReplicaAfter at now;
// call it periodically.
func (f *Freshness) Tick(now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recomputeLocked(now)
}

func (f *Freshness) recomputeLocked(now int64) {
	oldest := int64(0)
	for k, at := range f.replicas {
		if now-at > int64(ForgetReplicaAfter) {
			delete(f.replicas, k)
			continue
		}
		if oldest == 0 || at < oldest {
			oldest = at
		}
	}
	if oldest == 0 {
		oldest = f.any
	}
	f.heard.Store(oldest)
}

// HeardNanos is the receive time up to which the copy is proven complete:
// the oldest live replica's last heartbeat (see Freshness). One atomic
// load.
func (f *Freshness) HeardNanos() int64 { return f.heard.Load() }
