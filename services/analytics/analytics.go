// Package analytics assembles the analytics service: a durable JetStream
// consumer of every suite event that keeps daily counters per organisation
// and event type, exactly once per event, and the API that reads them.
//
// Exactly once: the consumer is at-least-once (redeliveries after a crash,
// a failed batch or an expired ack wait, and duplicates published outside
// JetStream's de-duplication window). Each batch is applied in one
// transaction that records the event ids in processed_events and adds only
// the ids that were new to analytics_events, so a redelivered event changes
// nothing. Ids are kept for ProcessedRetention (8 days): the stream keeps
// events for 7 days, so an event can never be delivered again once its id
// is pruned; the extra day covers clock skew and consumer lag.
package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/compliance"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
	"github.com/agentidp/agentidp/services/analytics/internal/headledger"
	"github.com/agentidp/agentidp/services/analytics/internal/httpapi"
	astore "github.com/agentidp/agentidp/services/analytics/internal/sqlstore"
	"github.com/agentidp/agentidp/services/analytics/migrations"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Name is the service name (metrics label, default schema).
const Name = "analytics"

// Durable is the JetStream consumer name shared by the replicas.
const Durable = "analytics"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
var Migrations = migrations.FS

// Config is the analytics service's own configuration.
type Config struct {
	// BatchSize is the most events counted per transaction
	// (ANALYTICS_BATCH_SIZE, default 256).
	BatchSize int
	// AckWait is how long a fetched event may stay unacknowledged before
	// JetStream redelivers it (ANALYTICS_ACK_WAIT, default 30s).
	AckWait time.Duration
	// RetryBackoff and RetryMaxBackoff shape the consumer's retries while
	// the database is away (zero: natsbus defaults, 250ms doubling to
	// 30s); tests shorten them.
	RetryBackoff, RetryMaxBackoff time.Duration
	// PruneInterval is how often old processed ids are deleted
	// (ANALYTICS_PRUNE_INTERVAL, default 1h).
	PruneInterval time.Duration
	// ProcessedRetention is how long processed ids are remembered; it must
	// exceed the stream's retention (7 days). Default 8 days.
	ProcessedRetention time.Duration
	// AuditRetention is how long audit records are kept for organisations
	// on the free tier or of unknown tier (ANALYTICS_AUDIT_RETENTION,
	// default 90d; 0 = unlimited). Pro keeps 365 days, enterprise forever.
	AuditRetention time.Duration
	// RetentionInterval is how often retention runs
	// (ANALYTICS_RETENTION_INTERVAL, default 1h).
	RetentionInterval time.Duration
	// VerifyInterval is how often every chain is verified for the
	// agentidp_audit_chain_integrity gauge (ANALYTICS_VERIFY_INTERVAL,
	// default 1h).
	VerifyInterval time.Duration
	// CheckpointKey is the audit key (ANALYTICS_CHECKPOINT_KEY, 32+ bytes
	// hex or base64): it keys every audit record (an HMAC chain) and signs
	// retention checkpoints and upgrade anchors. It comes from the
	// environment (a Kubernetes Secret, Vault agent), never from the
	// analytics database, which is what makes the chain resist a database
	// writer. Required unless Deps.Embedded, where a fixed development key
	// is used when none is given (agentidp dev generates one).
	CheckpointKey []byte
	// PreviousCheckpointKeys are earlier audit keys
	// (ANALYTICS_CHECKPOINT_PREVIOUS_KEYS, comma-separated): they only
	// verify records and checkpoints written under them, so the key can
	// rotate (docs/security.md).
	PreviousCheckpointKeys [][]byte
	// IdentityProvider is the identityProvider of agent cards
	// (ANALYTICS_IDENTITY_PROVIDER, default "agentidp").
	IdentityProvider string
}

// DevCheckpointKey is the checkpoint key of the embedded dev mode only.
var DevCheckpointKey = []byte("agentidp-dev-audit-checkpoint-key!")

// Tier retention of audit records; other tiers use Config.AuditRetention.
var tierRetention = map[string]time.Duration{
	"pro":        365 * 24 * time.Hour,
	"enterprise": 0,
}

// parseRetention reads "90d", a Go duration ("2160h") or "0"/"unlimited".
func parseRetention(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "0" || v == "unlimited" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 36500 {
			return 0, fmt.Errorf("days must be from 1 to 36500")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Hour {
		return 0, fmt.Errorf("must be like 90d, 2160h, or 0 for unlimited (at least 1h)")
	}
	return d, nil
}

// DefaultConfig returns the development defaults (including the dev
// checkpoint key; ConfigFromEnv never uses it, so production requires
// ANALYTICS_CHECKPOINT_KEY).
func DefaultConfig() Config {
	return Config{BatchSize: 256, AckWait: 30 * time.Second, PruneInterval: time.Hour, ProcessedRetention: 8 * 24 * time.Hour,
		AuditRetention: 90 * 24 * time.Hour, RetentionInterval: time.Hour, VerifyInterval: time.Hour, IdentityProvider: "agentidp",
		CheckpointKey: DevCheckpointKey}
}

// ConfigFromEnv reads the configuration; problems are recorded in env.
func ConfigFromEnv(env *config.Env) Config {
	d := DefaultConfig()
	cfg := Config{
		BatchSize:              env.Int("ANALYTICS_BATCH_SIZE", d.BatchSize),
		AckWait:                env.Duration("ANALYTICS_ACK_WAIT", d.AckWait),
		PruneInterval:          env.Duration("ANALYTICS_PRUNE_INTERVAL", d.PruneInterval),
		ProcessedRetention:     d.ProcessedRetention,
		AuditRetention:         d.AuditRetention,
		RetentionInterval:      env.Duration("ANALYTICS_RETENTION_INTERVAL", d.RetentionInterval),
		VerifyInterval:         env.Duration("ANALYTICS_VERIFY_INTERVAL", d.VerifyInterval),
		CheckpointKey:          env.Key("ANALYTICS_CHECKPOINT_KEY", 32, false),
		PreviousCheckpointKeys: previousKeys(env),
		IdentityProvider:       env.String("ANALYTICS_IDENTITY_PROVIDER", d.IdentityProvider),
	}
	if v := env.String("ANALYTICS_AUDIT_RETENTION", ""); v != "" {
		r, err := parseRetention(v)
		if err != nil {
			env.Fail("ANALYTICS_AUDIT_RETENTION: %v", err)
		}
		cfg.AuditRetention = r
	}
	if cfg.RetentionInterval < time.Minute {
		env.Fail("ANALYTICS_RETENTION_INTERVAL: must be at least 1m")
	}
	if cfg.VerifyInterval < time.Minute {
		env.Fail("ANALYTICS_VERIFY_INTERVAL: must be at least 1m")
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > 10000 {
		env.Fail("ANALYTICS_BATCH_SIZE: must be from 1 to 10000")
	}
	if cfg.AckWait < time.Second {
		env.Fail("ANALYTICS_ACK_WAIT: must be at least 1s")
	}
	if cfg.PruneInterval < time.Minute {
		env.Fail("ANALYTICS_PRUNE_INTERVAL: must be at least 1m")
	}
	return cfg
}

// previousKeys reads ANALYTICS_CHECKPOINT_PREVIOUS_KEYS; a bad item is
// reported by position, never by value.
func previousKeys(env *config.Env) [][]byte {
	var out [][]byte
	for i, v := range env.List("ANALYTICS_CHECKPOINT_PREVIOUS_KEYS", nil) {
		k, err := config.DecodeKey(v)
		if err != nil || len(k) < audit.MinKeyLen {
			env.Fail("ANALYTICS_CHECKPOINT_PREVIOUS_KEYS: item %d must be at least %d bytes, hex or base64 encoded", i+1, audit.MinKeyLen)
			continue
		}
		out = append(out, k)
	}
	return out
}

// Env documents the service's own variables.
var Env = map[string]string{
	"ANALYTICS_BATCH_SIZE":               "events counted per transaction (default 256)",
	"ANALYTICS_ACK_WAIT":                 "redelivery delay of unacknowledged events (default 30s)",
	"ANALYTICS_PRUNE_INTERVAL":           "how often processed event ids older than 8 days are deleted (default 1h)",
	"ANALYTICS_AUDIT_RETENTION":          "audit retention of free-tier (and unknown-tier) organisations: 90d, 2160h or 0 = unlimited (default 90d; pro 365d, enterprise unlimited)",
	"ANALYTICS_RETENTION_INTERVAL":       "how often audit retention runs (default 1h)",
	"ANALYTICS_VERIFY_INTERVAL":          "how often every audit chain is verified for agentidp_audit_chain_integrity (default 1h)",
	"ANALYTICS_CHECKPOINT_KEY":           "audit key (32+ bytes, hex or base64): keys the audit chain (HMAC) and signs its checkpoints; required outside agentidp dev; keep it out of the database and its backups",
	"ANALYTICS_CHECKPOINT_PREVIOUS_KEYS": "earlier audit keys, comma-separated, that only verify what was written under them (key rotation)",
	"ANALYTICS_IDENTITY_PROVIDER":        "identityProvider of compliance agent cards (default agentidp)",
}

// Spec describes the analytics binary for svcrun.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8084",
		DefaultInternal: ":9084",
		NeedsDB:         true,
		NeedsCache:      true,
		Migrations:      Migrations,
		Env:             Env,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the running analytics service.
type Service struct {
	cfg        Config
	domain     *counting.Service
	audit      *audit.Service
	compliance *compliance.Service
	js         jetstream.JetStream
	handler    http.Handler
	logger     *slog.Logger
	reg        prometheus.Registerer
	integrity  prometheus.Gauge

	// Result of the last background verification: 0 none yet, 1 valid,
	// 2 broken.
	verified atomic.Int32

	tiersMu sync.RWMutex
	tiers   map[string]string // organisation → plan tier, from OrgsBucket

	// natsbus.Consume registers its metrics each time it starts; only the
	// first Run passes the registry, so a restarted Run does not panic on
	// duplicate registration.
	regOnce sync.Once

	consumer atomic.Pointer[natsbus.Consumer] // the running event consumer
}

var _ svcrun.Service = (*Service)(nil)

// New builds the service (DB, JS and Codec are required; Cache is optional
// and replaced by an in-process cache) and applies the migrations
// idempotently, so the all-in-one binary can call it directly.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d == nil || d.DB == nil || d.JS == nil || d.Codec == nil {
		return nil, errors.New("analytics: DB, JS and Codec are required")
	}
	def := DefaultConfig()
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = def.BatchSize
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = def.PruneInterval
	}
	if cfg.ProcessedRetention <= 7*24*time.Hour {
		cfg.ProcessedRetention = def.ProcessedRetention
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = def.RetentionInterval
	}
	if cfg.VerifyInterval <= 0 {
		cfg.VerifyInterval = def.VerifyInterval
	}
	if cfg.IdentityProvider == "" {
		cfg.IdentityProvider = def.IdentityProvider
	}
	if len(cfg.CheckpointKey) == 0 {
		if !d.Embedded {
			return nil, errors.New("analytics: ANALYTICS_CHECKPOINT_KEY is required (32+ bytes)")
		}
		cfg.CheckpointKey = DevCheckpointKey
	}
	keys, err := audit.NewKeyring(cfg.CheckpointKey, cfg.PreviousCheckpointKeys...)
	if err != nil {
		return nil, fmt.Errorf("analytics: %w", err)
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer = d.Registry
	if d.Registry == nil {
		reg = prometheus.NewRegistry()
	}
	if err := d.DB.Migrate(ctx, Migrations); err != nil {
		return nil, fmt.Errorf("analytics: migrate: %w", err)
	}
	var c compliance.Cache = d.Cache
	if d.Cache == nil {
		c = cache.NewMemory(cache.MemoryOptions{SweepInterval: -1})
	}
	store := astore.New(d.DB, keys)
	domain := counting.NewService(store, logger)
	auditSvc := audit.NewService(store, keys, logger)
	// Chains written before the chain was keyed are anchored under the key
	// before this replica appends. Checkpoints of that time were signed
	// with the configured keys, or in embedded mode with the fixed dev key.
	legacyKeys := keys.Secrets()
	if d.Embedded {
		legacyKeys = append(legacyKeys, DevCheckpointKey)
	}
	ledger, err := headledger.Ensure(ctx, d.JS, kvReplicas(d))
	if err != nil {
		return nil, fmt.Errorf("analytics: audit head ledger: %w", err)
	}
	auditSvc.UseLedger(ledger)
	if err := auditSvc.Upgrade(ctx, legacyKeys); err != nil {
		// Not fatal: the chain that could not be anchored fails
		// verification, which is where it must be reported.
		logger.Error("audit chain upgrade", "err", err)
	}
	comp := compliance.NewService(store, domain, auditSvc, c, cfg.IdentityProvider, logger)
	gauge := httpx.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentidp_audit_chain_integrity",
		Help: "1 when every audit chain verified at the last hourly run, 0 when one is broken.",
	}))
	s := &Service{
		cfg:        cfg,
		domain:     domain,
		audit:      auditSvc,
		compliance: comp,
		js:         d.JS,
		logger:     logger,
		reg:        reg,
		integrity:  gauge,
		tiers:      map[string]string{},
	}
	s.handler = httpapi.NewHandler(httpapi.Services{Counting: domain, Audit: auditSvc, Compliance: comp, Integrity: s.Integrity},
		d.Codec, logger, httpx.NewMetrics(reg, Name))
	return s, nil
}

// kvReplicas is NATS_STREAM_REPLICAS (default 1), which svcrun also uses
// for the stream.
func kvReplicas(d *svcrun.Deps) int {
	if d.Getenv == nil {
		return 1
	}
	n, err := strconv.Atoi(d.Getenv("NATS_STREAM_REPLICAS"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Handler serves the public API.
func (s *Service) Handler() http.Handler { return s.handler }

// Checks has no checks beyond the dependencies svcrun checks.
func (s *Service) Checks() map[string]httpx.Check { return map[string]httpx.Check{} }

// Integrity returns the result of the last background verification of
// every chain and whether one has completed.
func (s *Service) Integrity() (ok, known bool) {
	switch s.verified.Load() {
	case 1:
		return true, true
	case 2:
		return false, true
	}
	return false, false
}

// Run consumes every event (durable consumer "analytics"), prunes old
// processed ids, verifies every audit chain and applies audit retention
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){s.pruneLoop, s.verifyLoop, s.retentionLoop, s.watchTiers} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	var reg prometheus.Registerer
	s.regOnce.Do(func() { reg = s.reg })
	c := natsbus.NewConsumer(s.js, natsbus.ConsumerOptions{
		Durable:    Durable,
		Subjects:   []string{events.AllSubjects},
		AckWait:    s.cfg.AckWait,
		BatchSize:  s.cfg.BatchSize,
		Backoff:    s.cfg.RetryBackoff,
		MaxBackoff: s.cfg.RetryMaxBackoff,
		Logger:     s.logger,
		Registerer: reg,
	}, s.handle)
	s.consumer.Store(c)
	err := c.Run(ctx)
	wg.Wait()
	return err
}

// ConsumerState reports the event consumer's health (healthy, or retrying
// since T with the last error's category) for /health/detailed; the zero
// state names the consumer before Run starts it.
func (s *Service) ConsumerState() natsbus.ConsumerState {
	if c := s.consumer.Load(); c != nil {
		return c.State()
	}
	return natsbus.ConsumerState{Durable: Durable}
}

func (s *Service) handle(ctx context.Context, batch []natsbus.Delivery) error {
	envs := make([]events.Envelope, len(batch))
	seen := map[string]bool{}
	var orgs []string
	for i, d := range batch {
		envs[i] = d.Event
		if org := d.Event.OrgID; org != "" && !seen[org] {
			seen[org] = true
			orgs = append(orgs, org)
		}
	}
	if err := s.domain.Count(ctx, envs); err != nil {
		return err
	}
	// The batch is committed; a failure to record the heads outside the
	// database must not redeliver it. A refusal (the chain lost the head
	// recorded earlier) is evidence of tampering and is logged as such;
	// verify reports it too.
	if err := s.audit.RecordHeads(ctx, orgs); err != nil && ctx.Err() == nil {
		s.logger.Error("record audit chain heads", "err", err)
	}
	return nil
}

// every runs fn now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) pruneLoop(ctx context.Context) {
	every(ctx, s.cfg.PruneInterval, func() {
		if n, err := s.domain.Prune(ctx, s.cfg.ProcessedRetention); err != nil && ctx.Err() == nil {
			s.logger.Warn("prune processed events", "err", err)
		} else if n > 0 {
			s.logger.Info("pruned processed events", "count", n)
		}
	})
}

// VerifyAll verifies every organisation's chain, records the head of each
// valid one in the head ledger, and sets the integrity gauge: 1 when all
// are valid, 0 otherwise.
func (s *Service) VerifyAll(ctx context.Context) error {
	orgs, err := s.audit.Orgs(ctx)
	if err != nil {
		return err
	}
	ok := true
	for _, org := range orgs {
		v, err := s.audit.Verify(ctx, org)
		if err != nil {
			return err
		}
		if !v.Valid {
			ok = false
			s.logger.Error("audit chain broken", "organization_id", org, "seq", v.BrokenAt.Seq, "reason", v.BrokenAt.Reason)
			continue
		}
		// Idle chains (and chains written before the ledger existed, or
		// while NATS was unreachable) get their head recorded here.
		if err := s.audit.RecordHeads(ctx, []string{org}); err != nil && ctx.Err() == nil {
			s.logger.Error("record audit chain head", "organization_id", org, "err", err)
		}
	}
	if ok {
		s.integrity.Set(1)
		s.verified.Store(1)
	} else {
		s.integrity.Set(0)
		s.verified.Store(2)
	}
	return nil
}

func (s *Service) verifyLoop(ctx context.Context) {
	every(ctx, s.cfg.VerifyInterval, func() {
		if err := s.VerifyAll(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("verify audit chains", "err", err)
		}
	})
}

// retentionFor is the audit retention of org by its plan tier.
func (s *Service) retentionFor(org string) time.Duration {
	s.tiersMu.RLock()
	tier := s.tiers[org]
	s.tiersMu.RUnlock()
	if r, ok := tierRetention[tier]; ok {
		return r
	}
	return s.cfg.AuditRetention
}

// ApplyRetention trims every chain to its organisation's retention behind
// a signed checkpoint.
func (s *Service) ApplyRetention(ctx context.Context) error {
	orgs, err := s.audit.Orgs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, org := range orgs {
		n, err := s.audit.Retain(ctx, org, s.retentionFor(org))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n > 0 {
			s.logger.Info("audit retention", "organization_id", org, "deleted", n)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) retentionLoop(ctx context.Context) {
	every(ctx, s.cfg.RetentionInterval, func() {
		if err := s.ApplyRetention(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("audit retention", "err", err)
		}
	})
}

// watchTiers follows the organisations read model (written by the tier
// service) for the plan tiers that set retention. Until the bucket exists
// every organisation gets Config.AuditRetention.
func (s *Service) watchTiers(ctx context.Context) {
	for {
		kv, err := s.js.KeyValue(ctx, events.OrgsBucket)
		if err == nil {
			_, err = natsbus.WatchKV(ctx, kv, s.logger, func(key string, value []byte) {
				var o events.OrgData
				s.tiersMu.Lock()
				defer s.tiersMu.Unlock()
				if value == nil || json.Unmarshal(value, &o) != nil {
					delete(s.tiers, key)
					return
				}
				s.tiers[key] = o.PlanTier
			})
			if err == nil {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.logger.Debug("organisations bucket not available yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}
