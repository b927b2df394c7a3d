// Package token is the AgentIdP token service: the agent registry,
// client credentials, signing keys and the OAuth 2.0 client_credentials
// endpoint with discovery and JWKS. This package is the public assembly
// (Spec, Config, New, Bootstrap); the domain lives in internal/domain, the
// SQL store in internal/sqlstore and the HTTP adapter in internal/httpapi.
package token

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/httpapi"
	"github.com/agentidp/agentidp/services/token/internal/opa"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/nats-io/nats.go"
)

// Name is the service name.
const Name = "token"

// Migrations are the service's schema migrations (postgres/ and sqlite/).
//
//go:embed postgres/*.sql sqlite/*.sql
var Migrations embed.FS

// Spec describes the token service binary.
func Spec() svcrun.Spec {
	return svcrun.Spec{
		Name:            Name,
		DefaultHTTPAddr: ":8081",
		DefaultInternal: ":9081",
		NeedsDB:         true,
		NeedsCache:      true,
		Migrations:      Migrations,
		Env:             EnvDocs,
		Configure:       svcrun.Constructor(ConfigFromEnv, New),
	}
}

// Service is the assembled token service.
type Service struct {
	svc     *domain.Service
	handler http.Handler
	relay   *lib.Relay
	async   *natsbus.AsyncPublisher
	d       *svcrun.Deps
	orgs    *domain.OrgModel
	orgsOK  atomic.Bool
	cfg     Config
	revs    *revocationMirror
	revsOK  atomic.Bool
	// replicas counts the live token replicas (nil without a cache).
	replicas *natsbus.Replicas
}

var _ svcrun.Service = (*Service)(nil)

// counters adapts the shared cache to the domain's Counters.
type counters struct{ c cache.Cache }

func (c counters) SetValue(ctx context.Context, key, value string) error {
	return c.c.Set(ctx, key, []byte(value), 0)
}

func (c counters) IncrBy(ctx context.Context, key string, n int64, expireAt time.Time) (int64, error) {
	return c.c.IncrBy(ctx, key, n, expireAt)
}

func (c counters) ReserveUpTo(ctx context.Context, key string, n, limit int64, expireAt time.Time) (int64, int64, error) {
	return c.c.ReserveUpTo(ctx, key, n, limit, expireAt)
}

func (c counters) IncrByOnce(ctx context.Context, key, id string, n int64, expireAt time.Time) (bool, int64, error) {
	return c.c.IncrByOnce(ctx, key, id, n, expireAt)
}

// New builds the service: it ensures the outbox table, loads (or creates)
// the signing key and wires the adapters. d must carry DB, JS, NATS, Codec,
// Registry and Logger; Cache may be nil (no usage counting, no daily limit).
// The caller (svcrun) has applied Migrations.
func New(ctx context.Context, cfg Config, d *svcrun.Deps) (*Service, error) {
	if d.DB == nil || d.JS == nil || d.NATS == nil || d.Codec == nil {
		return nil, errors.New("token: DB, NATS, JetStream and Codec are required")
	}
	if err := d.DB.EnsureOutbox(ctx); err != nil {
		return nil, err
	}
	store := sqlstore.New(d.DB)
	ring, err := newKeyring(ctx, cfg, d)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	s := &Service{d: d, orgs: domain.NewOrgModel(d.Logger), cfg: cfg}
	// s.revs is assigned below, before any commit can call the mirror.
	mirror := func(ctx context.Context, revs []domain.Revocation) { s.revs.Put(ctx, revs) }
	s.relay = lib.NewRelay(d.DB, svcrun.OutboxPublisher(d.JS), lib.RelayOptions{Logger: d.Logger, Registerer: d.Registry, Service: Name})
	s.async = natsbus.NewAsyncPublisher(d.JS, natsbus.AsyncOptions{Service: Name, Registerer: d.Registry, Logger: d.Logger})
	// The delegation policy is prepared once; every exchange evaluates it.
	policy, err := opa.NewDelegation(ctx, nil)
	if err != nil {
		s.async.Close()
		return nil, fmt.Errorf("token: %w", err)
	}
	var ctr domain.Counters
	if d.Cache != nil {
		ctr = counters{d.Cache}
		// Heartbeats tell each replica how many share the daily token
		// limits while Redis is away.
		if s.replicas, err = natsbus.OpenReplicas(ctx, d.JS, natsbus.ReplicasOptions{
			Service: Name, Replicas: cfg.KVReplicas, Logger: d.Logger,
		}); err != nil {
			s.async.Close()
			return nil, fmt.Errorf("token: %w", err)
		}
	}
	replicas := func() int { return 1 }
	if s.replicas != nil {
		replicas = s.replicas.Live
	}
	s.svc, err = domain.NewService(ctx, domain.Settings{
		Issuer: cfg.Issuer, Audience: cfg.Audience, TokenTTL: cfg.TokenTTL, Alg: cfg.SigningAlg,
		Pepper: cfg.SecretPepper, ClientCacheTTL: cfg.ClientCacheTTL, ClientCacheSize: cfg.ClientCacheSize,
		RotationGrace: cfg.RotationGrace, MaxDelegationDepth: cfg.MaxDelegationDepth,
		AssertionMaxLifetime: cfg.ClientAuth.AssertionMaxLifetime, JWKSAllowPrivate: cfg.ClientAuth.JWKSAllowPrivate,
		JWKSAllowInsecure: cfg.ClientAuth.JWKSAllowInsecure, ClientJWKSRefreshInterval: cfg.ClientAuth.JWKSRefreshInterval,
		AuthThrottle: cfg.ClientAuth.AuthThrottle,
	}, domain.Deps{Replay: replayCache(d), Federation: federationClient(cfg, d),
		Failures: failureCounter(d), AnnounceBlock: announceBlock(d.NATS, d.Logger), Policy: policy, Mirror: mirror, Store: store, Ring: ring, Counters: ctr, Replicas: replicas, Orgs: s.orgs, Publisher: s.async,
		Logger: d.Logger, Registry: d.Registry, Notify: s.relay.Notify,
		RevocationsStale: func() bool { return s.revs.stale() }})
	if err != nil {
		s.async.Close()
		return nil, fmt.Errorf("token: %w", err)
	}
	s.revs = newRevocationMirror(s.svc, d.Logger)
	var metrics *httpx.Metrics
	if d.Registry != nil {
		metrics = httpx.NewMetrics(d.Registry, Name)
	}
	s.handler = httpapi.New(s.svc, d.Logger, metrics, d.Codec)
	return s, nil
}

// Handler implements svcrun.Service.
func (s *Service) Handler() http.Handler { return s.handler }

// Checks implements svcrun.Service: not ready until the organisation read
// model has loaded.
func (s *Service) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{
		"org_read_model": func(context.Context) error {
			if !s.orgsOK.Load() {
				return errors.New("organisation read model loading")
			}
			return nil
		},
		"revocations": func(context.Context) error {
			if !s.revsOK.Load() {
				return errors.New("revocation state loading")
			}
			return nil
		},
	}
}

// Run relays the outbox, watches the organisation read model and drops
// cached clients named by agent.* and credential.* events, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.async.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	revsReady := make(chan struct{})
	revsDone := make(chan error, 1)
	go func() { revsDone <- s.revs.run(ctx, s.d.JS, s.cfg.KVReplicas, revsReady) }()
	go func() {
		select {
		case <-revsReady:
			s.revsOK.Store(true)
		case <-ctx.Done():
		}
	}()
	if err := s.svc.PublishAgentCounts(ctx); err != nil {
		s.d.Logger.Warn("publish agent counts at start", "err", err)
	}
	usageDone := make(chan struct{})
	go func() { defer close(usageDone); s.svc.RunUsageFlusher(ctx, 250*time.Millisecond) }()
	if s.replicas != nil {
		go s.replicas.Run(ctx)
	}
	defer func() { cancel(); <-usageDone }()
	kv, err := natsbus.EnsureKV(ctx, s.d.JS, events.OrgsBucket, s.cfg.KVReplicas)
	if err != nil {
		return err
	}
	s.orgs.OnDeleted(s.orgDeleted(ctx))
	ready, err := natsbus.WatchKV(ctx, kv, s.d.Logger, s.orgs.Apply)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-ready:
			s.orgsOK.Store(true)
		case <-ctx.Done():
		}
	}()
	// Core NATS subscriptions see every JetStream publish, so each replica
	// drops a revoked credential within milliseconds.
	invalidate := func(m *nats.Msg) {
		e, err := events.Decode(m.Data)
		if err != nil || e.Subject == "" {
			return
		}
		s.svc.Clients().Invalidate(e.Subject)
	}
	for _, subj := range []string{events.DomainSubjects("agent"), events.DomainSubjects("credential")} {
		sub, err := s.d.NATS.Subscribe(subj, invalidate)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subj, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	// Blocks set by the other replicas' failed-authentication counts.
	blockSub, err := s.d.NATS.Subscribe(AuthBlockSubject, func(m *nats.Msg) {
		var b domain.AuthBlock
		if json.Unmarshal(m.Data, &b) == nil {
			s.svc.ApplyAuthBlock(b)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", AuthBlockSubject, err)
	}
	defer func() { _ = blockSub.Unsubscribe() }()
	if err := s.startKeys(ctx); err != nil {
		return err
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- s.relay.Run(ctx) }()
	select {
	case err := <-revsDone:
		if err != nil {
			cancel()
			<-relayDone
			return fmt.Errorf("revocations: %w", err)
		}
		return <-relayDone
	case err := <-relayDone:
		return err
	}
}
