package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultRevocationsTTL is the bucket TTL used when the gateway has to
// create the revocations bucket before the token service did: the longest
// token lifetime the token service accepts (24h) plus its margin. The token
// service sets the TTL its configuration needs when it starts.
const DefaultRevocationsTTL = 24*time.Hour + 5*time.Minute

// Revocations keeps the in-memory revocation set current from the NATS KV
// bucket the token service mirrors its revocations into. The set is checked
// on every request; when NATS is unreachable it keeps what it has (and is
// still enforced).
type Revocations struct {
	kv     jetstream.KeyValue
	logger *slog.Logger
	set    *revocation.Set
	ttl    atomic.Int64 // bucket TTL in ns, for pruning
	now    func() time.Time
	// fresh knows up to when the copy is proven complete: the oldest
	// token service replica's last heartbeat, by this host's receive time
	// (never a time written by another host, so clock skew between hosts
	// does not enter); the watch delivers the bucket in order, so a
	// heartbeat received proves every entry its replica wrote before it is
	// applied.
	fresh *revocation.Freshness
}

// OpenRevocations opens (creating if needed) the revocations bucket.
func OpenRevocations(ctx context.Context, js jetstream.JetStream, replicas int, logger *slog.Logger) (*Revocations, error) {
	kv, err := js.KeyValue(ctx, revocation.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if replicas <= 0 {
			replicas = 1
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: revocation.Bucket, History: 1,
			TTL: DefaultRevocationsTTL, Replicas: replicas, Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, revocation.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", revocation.Bucket, err)
	}
	r := &Revocations{kv: kv, logger: logger, set: revocation.NewSet(), now: time.Now, fresh: revocation.NewFreshness()}
	r.ttl.Store(int64(DefaultRevocationsTTL))
	return r, nil
}

// Set is the revocation set (ready once the bucket's contents are loaded).
func (r *Revocations) Set() *revocation.Set { return r.set }

// Ready reports whether the initial contents of the bucket have been read.
func (r *Revocations) Ready() bool { return r.set.Ready() }

// SetClock replaces the clock that stamps HeardNanos (tests); call it
// before Run.
func (r *Revocations) SetClock(now func() time.Time) { r.now = now }

// HeardNanos is the time (Unix ns, by the clock) up to which the copy is
// proven complete — see revocation.Freshness; 0 before the initial load.
// The age of the revocation state is now minus this: one atomic load,
// cheap enough for every request.
func (r *Revocations) HeardNanos() int64 { return r.fresh.HeardNanos() }

// Run watches the bucket until ctx ends, pruning entries the bucket's TTL
// has expired (KV expiry sends no delete) every minute and forgetting
// silent token service replicas every second.
func (r *Revocations) Run(ctx context.Context) error {
	ready, err := natsbus.WatchKV(ctx, r.kv, r.logger, func(key string, value []byte) {
		if !r.set.Apply(key, value) {
			r.logger.Warn("ignoring malformed revocation entry", "key", key)
		}
		r.fresh.Heard(key, value == nil, r.now().UnixNano())
	})
	if err != nil {
		return err
	}
	select {
	case <-ready:
		r.fresh.Loaded(r.now().UnixNano())
		r.set.MarkReady()
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	forget := time.NewTicker(time.Second) // silent replicas (revocation.ForgetReplicaAfter)
	defer forget.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.prune(ctx)
		case <-forget.C:
			r.fresh.Tick(r.now().UnixNano())
		}
	}
}

func (r *Revocations) prune(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := r.kv.Status(sctx)
	cancel()
	if err == nil && st.TTL() > 0 {
		r.ttl.Store(int64(st.TTL()))
	}
	ttl := time.Duration(r.ttl.Load())
	r.set.Prune(time.Now().Add(-ttl).UnixMilli())
}

// KV is the watched bucket (tests and tools).
func (r *Revocations) KV() jetstream.KeyValue { return r.kv }
