// Package headledger keeps each organisation's audit chain head — its
// latest (seq, chain value) — in a NATS KV bucket, outside the analytics
// database, so that verification can tell a chain whose newest records a
// database writer deleted from one that never had them.
package headledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of audit chain heads (key: organisation id).
const Bucket = "agentidp_audit_heads"

type head struct {
	Seq   int64  `json:"seq"`
	Value string `json:"value"`
}

// KV is the ledger on a NATS KV bucket.
type KV struct {
	kv jetstream.KeyValue
}

// Ensure creates or opens the bucket (history 1: only the latest head
// counts) and returns the ledger on it.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) (*KV, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := natsbus.EnsureKVConfig(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
		Description: "AgentIdP audit chain heads: <organization id> -> {seq, value}",
	})
	if err != nil {
		return nil, err
	}
	return &KV{kv: kv}, nil
}

// Get returns org's recorded head (ok false when none).
func (l *KV) Get(ctx context.Context, org string) (int64, string, bool, error) {
	h, _, ok, err := l.get(ctx, org)
	return h.Seq, h.Value, ok, err
}

func (l *KV) get(ctx context.Context, org string) (head, uint64, bool, error) {
	e, err := l.kv.Get(ctx, org)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return head{}, 0, false, nil
	}
	if err != nil {
		return head{}, 0, false, fmt.Errorf("read audit head of %s: %w", org, err)
	}
	var h head
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return head{}, 0, false, fmt.Errorf("read audit head of %s: %w", org, err)
	}
	return h, e.Revision(), true, nil
}

// Advance records (seq, value) as org's head unless the recorded head is
// at seq or later; before replacing a recorded head it asks check, which
// may refuse (and so keep the evidence of a truncation). Concurrent
// writers (replicas) compare and set on the entry's revision, so the head
// never moves backwards.
func (l *KV) Advance(ctx context.Context, org string, seq int64, value string, check func(seq int64, value string) error) error {
	data, err := json.Marshal(head{Seq: seq, Value: value})
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, ok, err := l.get(ctx, org)
		if err != nil {
			return err
		}
		if !ok {
			if _, err = l.kv.Create(ctx, org, data); err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
				return wrap(org, err)
			}
			continue
		}
		if cur.Seq >= seq {
			return nil
		}
		if err := check(cur.Seq, cur.Value); err != nil {
			return err
		}
		if _, err = l.kv.Update(ctx, org, data, rev); err == nil {
			return nil
		}
		// Another writer moved the head since it was read: read again.
	}
	return fmt.Errorf("record audit head of %s: too many concurrent updates", org)
}

func wrap(org string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("record audit head of %s: %w", org, err)
}
