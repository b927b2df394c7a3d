// Package natskv writes the organisation read model into a NATS KV bucket
// (events.OrgsBucket), which the gateway and the token service watch.
package natskv

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/nats-io/nats.go/jetstream"
)

// ReadModel implements org.ReadModel on a KV bucket.
type ReadModel struct {
	kv jetstream.KeyValue
}

// New returns a read model writing to kv (see natsbus.EnsureKV).
func New(kv jetstream.KeyValue) *ReadModel { return &ReadModel{kv: kv} }

// Put stores o under its organisation id. Deleted organisations are put
// (with status "deleted"), never removed, so readers keep rejecting them.
func (m *ReadModel) Put(ctx context.Context, o events.OrgData) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode organization %s: %w", o.OrganizationID, err)
	}
	if _, err := m.kv.Put(ctx, o.OrganizationID, b); err != nil {
		return fmt.Errorf("put organization %s into kv %s: %w", o.OrganizationID, m.kv.Bucket(), err)
	}
	return nil
}
