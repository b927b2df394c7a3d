package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// revocationFeedMaxAge is how long the KV feed may stay silent (no entry,
// no heartbeat — every replica's own heartbeat comes back through it)
// before introspection reads revocations from the database first.
const revocationFeedMaxAge = 4 * revocation.HeartbeatInterval

// ReconcileInterval is how often the revocation mirror in NATS KV is
// reconciled with the database (heals a crash between commit and put, and
// a replica cut from NATS: its revocations reach the bucket through the
// others). It is well under revocation.ForgetReplicaAfter, so a silent
// replica is forgotten only after what it committed was copied.
const ReconcileInterval = 10 * time.Second

// revocationMirror mirrors committed revocations into the NATS KV bucket
// revocation.Bucket and keeps the service's revocation set current from
// it (other replicas' revocations).
type revocationMirror struct {
	svc    *domain.Service
	logger *slog.Logger

	mu sync.Mutex
	kv jetstream.KeyValue
	// seen is what the KV watch has delivered: key → not before. The
	// reconciliation re-puts rows the bucket does not have (yet).
	seen map[string]int64

	// replica names this replica's heartbeat key.
	replica string
	// behind is set when a put failed: the bucket may lack a committed
	// revocation, so no heartbeat may vouch for it until a reconciliation
	// has put everything the database holds.
	behind atomic.Bool
	// sync puts every database revocation the bucket lacks (reconcile;
	// replaced in tests).
	sync func(context.Context) error
	// failing is the heartbeat loop's logged state (its goroutine only).
	failing bool
	// fresh: up to when the KV feed provably delivered every replica's
	// revocations (revocation.Freshness).
	fresh *revocation.Freshness
}

// stale reports whether the KV feed cannot prove it delivered every
// replica's revocations of the last revocationFeedMaxAge: the set may lack
// some another replica committed.
func (m *revocationMirror) stale() bool {
	h := m.fresh.HeardNanos()
	return h == 0 || time.Now().UnixNano()-h > int64(revocationFeedMaxAge)
}

func newRevocationMirror(svc *domain.Service, logger *slog.Logger) *revocationMirror {
	m := &revocationMirror{svc: svc, logger: logger, seen: map[string]int64{}, replica: replicaName(),
		fresh: revocation.NewFreshness()}
	m.sync = m.reconcile
	return m
}

// replicaName is this process's heartbeat name: the host name (the pod name
// under Kubernetes) and a random suffix, so two processes on one host do not
// share a key.
func replicaName() string {
	h, _ := os.Hostname()
	return h + "-" + hex.EncodeToString(func() []byte { b := make([]byte, 4); _, _ = rand.Read(b); return b }())
}

// bucketTTL is the KV bucket's MaxAge: an entry must outlive every token it
// covers (the longest token lifetime plus the margin).
func bucketTTL(svc *domain.Service) time.Duration { return svc.MaxRevocationAge() }

// EnsureRevocationsBucket creates or updates the revocations bucket with the
// TTL the token lifetime needs.
func EnsureRevocationsBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
	}
	return natsbus.EnsureKVConfig(ctx, js, jetstream.KeyValueConfig{
		Bucket: revocation.Bucket, History: 1, TTL: ttl, Replicas: replicas, Storage: jetstream.FileStorage,
		Description: "AgentIdP token revocations: <kind>.<key> -> not-before unix ms",
	})
}

// Put is the domain's Mirror: it writes committed revocations to the
// bucket. Failures are logged; the next reconciliation repairs them.
func (m *revocationMirror) Put(ctx context.Context, revs []domain.Revocation) {
	m.mu.Lock()
	kv := m.kv
	m.mu.Unlock()
	if kv == nil {
		return // not running yet: the start-up reconciliation puts them
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, r := range revs {
		m.put(ctx, kv, r)
	}
}

func (m *revocationMirror) put(ctx context.Context, kv kvPutter, r domain.Revocation) {
	if !revocation.ValidKeyPart(r.Key) {
		m.logger.Warn("revocation key cannot be mirrored", "kind", r.Kind)
		return
	}
	if _, err := kv.Put(ctx, revocation.Key(r.Kind, r.Key), revocation.FormatValue(r.NotBefore)); err != nil {
		m.behind.Store(true)
		m.logger.Warn("mirror revocation to nats kv (reconciliation will retry)", "kind", r.Kind, "err", err)
	}
}

// apply is the KV watch callback.
func (m *revocationMirror) apply(key string, value []byte) {
	m.fresh.Heard(key, value == nil, time.Now().UnixNano())
	if revocation.IsHeartbeat(key) {
		return
	}
	if !m.svc.Revocations().Apply(key, value) {
		m.logger.Warn("ignore malformed revocation entry", "key", key)
		return
	}
	// An agent watermark (suspension, scope removal, decommissioning) from
	// another replica may reach us before its agent.* event: drop the
	// cached client record now, so that this replica does not go on issuing
	// tokens with the scopes or status the watermark revoked.
	if kind, agentID, ok := revocation.ParseKey(key); ok && kind == revocation.KindAgent && value != nil {
		m.svc.Clients().Invalidate(agentID)
	}
	m.mu.Lock()
	if value == nil {
		delete(m.seen, key)
	} else if v, ok := revocation.ParseValue(value); ok && v > m.seen[key] {
		m.seen[key] = v
	}
	m.mu.Unlock()
}

// reconcile loads the database's revocations into the set and puts every
// row the bucket lacks or has older.
func (m *revocationMirror) reconcile(ctx context.Context) error {
	rows, err := m.svc.LoadRevocations(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	kv := m.kv
	var missing []domain.Revocation
	for _, r := range rows {
		if m.seen[revocation.Key(r.Kind, r.Key)] < r.NotBefore {
			missing = append(missing, r)
		}
	}
	m.mu.Unlock()
	if kv != nil && len(missing) > 0 {
		m.logger.Info("reconciling revocations into nats kv", "entries", len(missing))
		for _, r := range missing {
			m.put(ctx, kv, r) // a failure sets behind
		}
	}
	return nil
}

// kvPutter is the part of a KV bucket the mirror writes through.
type kvPutter interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
}

// heartbeat writes this replica's heartbeat every interval until ctx ends.
// A heartbeat vouches that every revocation this replica committed is in
// the bucket before it (the bucket is delivered in order): after a failed
// put it is written only once a reconciliation has put everything the
// database holds. Gateways that hear no heartbeat stop trusting their copy
// (see docs/security.md, "Revocation freshness").
func (m *revocationMirror) heartbeat(ctx context.Context, kv kvPutter, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.beat(ctx, kv, interval)
		m.fresh.Tick(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			// Leaving: delete the key, so gateways stop waiting for this
			// replica now rather than after revocation.ForgetReplicaAfter —
			// unless the bucket still lacks some of its revocations.
			if d, ok := kv.(interface {
				Delete(context.Context, string, ...jetstream.KVDeleteOpt) error
			}); ok && !m.behind.Load() {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				_ = d.Delete(dctx, revocation.HeartbeatKey(m.replica))
				cancel()
			}
			return
		case <-t.C:
		}
	}
}

// beat is one heartbeat step; it reports whether a heartbeat was written.
// Failures are logged when they start and when they end, not every beat.
func (m *revocationMirror) beat(ctx context.Context, kv kvPutter, timeout time.Duration) bool {
	if m.behind.Swap(false) {
		if err := m.sync(ctx); err != nil {
			m.behind.Store(true)
		}
	}
	if m.behind.Load() {
		if !m.failing && ctx.Err() == nil {
			m.logger.Warn("revocation heartbeat paused: the nats kv mirror is behind the database")
			m.failing = true
		}
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	_, err := kv.Put(pctx, revocation.HeartbeatKey(m.replica), revocation.FormatValue(time.Now().UnixMilli()))
	cancel()
	switch {
	case err != nil && !m.failing && ctx.Err() == nil:
		m.logger.Warn("revocation heartbeat failed", "err", err)
		m.failing = true
	case err == nil && m.failing:
		m.logger.Info("revocation heartbeat resumed")
		m.failing = false
	}
	return err == nil
}

// run opens and watches the bucket, reconciles at start (retrying until the
// database answers) and every ReconcileInterval, until ctx ends. ready is
// closed once the set holds the complete state.
func (m *revocationMirror) run(ctx context.Context, js jetstream.JetStream, replicas int, ready chan<- struct{}) error {
	kv, err := EnsureRevocationsBucket(ctx, js, bucketTTL(m.svc), replicas)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.kv = kv
	m.mu.Unlock()
	watched, err := natsbus.WatchKV(ctx, kv, m.logger, m.apply)
	if err != nil {
		return err
	}
	select {
	case <-watched:
		m.fresh.Loaded(time.Now().UnixNano())
	case <-ctx.Done():
		return nil
	}
	for {
		err := m.reconcile(ctx)
		if err == nil {
			break
		}
		m.logger.Error("load revocations (introspection answers 503 until loaded)", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	close(ready)
	go m.heartbeat(ctx, kv, revocation.HeartbeatInterval)
	t := time.NewTicker(ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.reconcile(ctx); err != nil && !errors.Is(err, context.Canceled) {
				m.logger.Warn("reconcile revocations", "err", err)
			}
		}
	}
}

// orgDeleted writes the watermark of an organisation the read model shows
// deleted. It runs off the watch goroutine (a database write).
func (s *Service) orgDeleted(ctx context.Context) func(events.OrgData) {
	return func(d events.OrgData) {
		go func() {
			for attempt := 0; attempt < 5; attempt++ {
				err := s.svc.RevokeOrg(ctx, d.OrganizationID, d.UpdatedAt)
				if err == nil || ctx.Err() != nil {
					return
				}
				s.d.Logger.Error("revoke tokens of deleted organisation", "org", d.OrganizationID, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(attempt+1) * time.Second):
				}
			}
		}()
	}
}
