package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReplicasBucket is the KV bucket of replica heartbeats: one key
// "<service>.<instance>" per running replica, rewritten every heartbeat.
const ReplicasBucket = "agentidp_replicas"

// Heartbeat defaults.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	// A replica counts as live while its last heartbeat is younger than
	// this many intervals.
	heartbeatsLive = 3
)

// ReplicasOptions configures OpenReplicas.
type ReplicasOptions struct {
	// Service is the key prefix: the replicas of one service count each
	// other, not those of other services.
	Service string
	// Instance names this replica (random when empty).
	Instance string
	// Interval between heartbeats (DefaultHeartbeatInterval when 0).
	Interval time.Duration
	// Replicas is the KV bucket's replication factor.
	Replicas int
	// Logger gets one line when heartbeats start failing and one when
	// they recover (nil: discarded).
	Logger *slog.Logger
}

// Replicas counts the live replicas of a service from heartbeats in a KV
// bucket, so a replica that loses a shared dependency can take its share of
// a shared allowance. The count is refreshed at each heartbeat, so reading
// it (Live) costs nothing; while NATS cannot be reached the last count
// stands.
type Replicas struct {
	kv       jetstream.KeyValue
	key      string
	filter   string
	interval time.Duration
	logger   *slog.Logger
	live     atomic.Int64
	failing  atomic.Bool
}

// OpenReplicas ensures the heartbeat bucket. Call Run (or Beat) to publish
// this replica and count the others.
func OpenReplicas(ctx context.Context, js jetstream.JetStream, o ReplicasOptions) (*Replicas, error) {
	if o.Service == "" {
		return nil, errors.New("natsbus: replicas: service name required")
	}
	if o.Instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.Instance = hex.EncodeToString(b[:])
	}
	if o.Interval <= 0 {
		o.Interval = DefaultHeartbeatInterval
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := EnsureKVConfig(ctx, js, jetstream.KeyValueConfig{
		Bucket: ReplicasBucket, History: 1, Replicas: o.Replicas, Storage: jetstream.MemoryStorage,
		// Heartbeats of replicas gone for long are dropped by the server.
		TTL: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	r := &Replicas{kv: kv, key: o.Service + "." + o.Instance, filter: o.Service + ".*",
		interval: o.Interval, logger: o.Logger}
	r.live.Store(1)
	return r, nil
}

// Live is the number of live replicas at the last heartbeat, this one
// included (at least 1).
func (r *Replicas) Live() int { return int(r.live.Load()) }

// Beat publishes this replica's heartbeat and recounts the live replicas:
// those whose heartbeat is younger than three intervals.
func (r *Replicas) Beat(ctx context.Context) error {
	if _, err := r.kv.Put(ctx, r.key, nil); err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	keys, err := r.kv.ListKeysFiltered(ctx, r.filter)
	if err != nil {
		return fmt.Errorf("list replica heartbeats: %w", err)
	}
	defer func() { _ = keys.Stop() }()
	bound := time.Duration(heartbeatsLive) * r.interval
	n := int64(0)
	for key := range keys.Keys() {
		e, err := r.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read replica heartbeat %s: %w", key, err)
		}
		if time.Since(e.Created()) < bound {
			n++
		}
	}
	r.live.Store(max(n, 1))
	return nil
}

// Run beats every interval until ctx ends.
func (r *Replicas) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		err := r.Beat(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !r.failing.Swap(true):
			r.logger.Warn("replica heartbeats failing; sharing limits by the last count", "live", r.Live(), "err", err)
		case err == nil && r.failing.Swap(false):
			r.logger.Info("replica heartbeats recovered", "live", r.Live())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
