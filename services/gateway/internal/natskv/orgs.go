// Package natskv keeps the gateway's in-memory read model of organisations
// current from the NATS KV bucket the tier service writes, so no request
// needs a call to tier.
package natskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/nats-io/nats.go/jetstream"
)

// Org is what the gateway needs to know about an organisation.
type Org struct {
	Status         string
	MaxCallsPerDay int64 // -1 unlimited, 0 not set
}

// Orgs is the read model. Lookups never block on the watcher.
type Orgs struct {
	kv     jetstream.KeyValue
	logger *slog.Logger
	orgs   sync.Map // org id → Org
	ready  atomic.Bool
}

// Open opens (creating if needed) the organisations bucket.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, logger *slog.Logger) (*Orgs, error) {
	kv, err := js.KeyValue(ctx, events.OrgsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = natsbus.EnsureKV(ctx, js, events.OrgsBucket, replicas)
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", events.OrgsBucket, err)
	}
	return &Orgs{kv: kv, logger: logger}, nil
}

// Get returns the organisation with id, if the model knows it.
func (o *Orgs) Get(id string) (Org, bool) {
	v, ok := o.orgs.Load(id)
	if !ok {
		return Org{}, false
	}
	return v.(Org), true
}

// Ready reports whether the initial contents of the bucket have been read.
func (o *Orgs) Ready() bool { return o.ready.Load() }

// Run watches the bucket until ctx ends.
func (o *Orgs) Run(ctx context.Context) error {
	ready, err := natsbus.WatchKV(ctx, o.kv, o.logger, o.apply)
	if err != nil {
		return err
	}
	select {
	case <-ready:
		o.ready.Store(true)
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

func (o *Orgs) apply(key string, value []byte) {
	if value == nil {
		o.orgs.Delete(key)
		return
	}
	var d events.OrgData
	if err := json.Unmarshal(value, &d); err != nil {
		o.logger.Warn("ignoring malformed organisation in kv", "key", key, "err", err)
		return
	}
	o.orgs.Store(key, Org{Status: d.Status, MaxCallsPerDay: d.Limits.MaxCallsPerDay})
}
