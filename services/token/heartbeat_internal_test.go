package token

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// cuttableKV is a bucket whose connection the test cuts and restores.
type cuttableKV struct {
	mu   sync.Mutex
	cut  bool
	keys []string
}

func (k *cuttableKV) Put(_ context.Context, key string, _ []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cut {
		return 0, errors.New("nats: connection closed")
	}
	k.keys = append(k.keys, key)
	return uint64(len(k.keys)), nil
}

func (k *cuttableKV) setCut(c bool) { k.mu.Lock(); k.cut = c; k.mu.Unlock() }

func (k *cuttableKV) heartbeats() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, key := range k.keys {
		if revocation.IsHeartbeat(key) {
			n++
		}
	}
	return n
}

// TestAttackHeartbeatVouchesForUnmirroredRevocation: a replica whose
// mirror put failed (NATS cut) has a committed revocation the bucket
// lacks. Were it to heartbeat as soon as NATS answers again, gateways
// would take their state for fresh without that revocation; it must first
// put everything the database holds (reconcile), and heartbeat only then.
func TestAttackHeartbeatVouchesForUnmirroredRevocation(t *testing.T) {
	ctx := context.Background()
	kv := &cuttableKV{}
	m := &revocationMirror{logger: slog.New(slog.DiscardHandler), seen: map[string]int64{}, replica: "token-a.svc"}
	synced := 0
	reconcileFails := true
	m.sync = func(context.Context) error {
		synced++
		if reconcileFails {
			return errors.New("database unavailable")
		}
		return nil
	}
	if !m.beat(ctx, kv, revocation.HeartbeatInterval) || kv.heartbeats() != 1 {
		t.Fatalf("healthy beat: heartbeats = %d; want 1", kv.heartbeats())
	}
	if got := kv.keys[0]; !strings.HasPrefix(got, revocation.HeartbeatPrefix+"token-a_svc") {
		t.Fatalf("heartbeat key = %q", got)
	}

	// The cut: a committed revocation cannot be mirrored.
	kv.setCut(true)
	m.put(ctx, kv, domain.Revocation{Kind: revocation.KindJTI, Key: "jti-1", NotBefore: 1})
	if !m.behind.Load() {
		t.Fatal("a failed mirror put did not mark the mirror behind")
	}
	// NATS is back but the reconciliation cannot run yet: no heartbeat.
	kv.setCut(false)
	for range 3 {
		if m.beat(ctx, kv, revocation.HeartbeatInterval) {
			t.Fatal("heartbeat written while the mirror is behind the database")
		}
	}
	if kv.heartbeats() != 1 || synced != 3 {
		t.Fatalf("heartbeats, reconciliations = %d, %d; want 1, 3", kv.heartbeats(), synced)
	}
	// Reconciled: heartbeats resume.
	reconcileFails = false
	if !m.beat(ctx, kv, revocation.HeartbeatInterval) || kv.heartbeats() != 2 || synced != 4 {
		t.Fatalf("after reconciling: heartbeats, reconciliations = %d, %d; want 2, 4", kv.heartbeats(), synced)
	}
	if m.beat(ctx, kv, revocation.HeartbeatInterval); synced != 4 {
		t.Fatalf("reconciled again while in sync (%d); want no database round trip per beat", synced)
	}
}
