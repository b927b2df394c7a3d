// Package svcrun is how every service binary starts: it reads the common
// configuration from the environment (reporting every problem at once),
// opens the dependencies the service declares (PostgreSQL, Redis, NATS
// JetStream), builds the service, serves its public API and its internal
// port (health and metrics), and shuts down gracefully. The all-in-one
// `agentidp dev` builds the same Deps from embedded defaults and calls Serve.
package svcrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Service is what every service's public package builds.
type Service interface {
	// Handler serves the public API (reached through the gateway).
	Handler() http.Handler
	// Run runs background work (outbox relay, consumers, watchers) until
	// ctx ends. It returns nil on a clean stop.
	Run(ctx context.Context) error
	// Checks are the service's readiness checks: process-local state it
	// cannot serve without (initial loads). Shared dependencies (database,
	// cache, NATS, Vault) are not readiness checks: svcrun probes the ones
	// in Deps for /health/detailed, and a service adds its own through
	// Deps.Health.AddDependency.
	Checks() map[string]httpx.Check
}

// Deps are the dependencies a service is built from. Fields the service
// did not ask for are nil.
type Deps struct {
	Service  string
	Logger   *slog.Logger
	Registry *prometheus.Registry
	DB       *sqlstore.DB
	Cache    cache.Cache
	NATS     *nats.Conn
	JS       jetstream.JetStream
	Codec    *authn.Codec // verifies (and, in the gateway, signs) the internal context
	// Health is the process's health registry: services add detail
	// providers (consumer lag, revocation age) and dependency probes to it
	// while they are built. Serve creates one when it is nil.
	Health *httpx.Health
	Getenv func(string) string
	// Embedded is true in `agentidp dev` (SQLite, in-process cache and NATS).
	Embedded bool
}

// Spec describes a service binary.
type Spec struct {
	Name            string
	DefaultHTTPAddr string
	DefaultInternal string
	NeedsDB         bool
	NeedsCache      bool
	Migrations      fs.FS // applied at start when NeedsDB
	// Env documents the service's own variables for --help (name → text).
	Env map[string]string
	// Configure parses the service's own variables into env (so their
	// problems are reported together with the common ones) and returns
	// the constructor.
	Configure func(env *config.Env) func(ctx context.Context, d *Deps) (Service, error)
}

// CommonEnv documents the variables every service reads.
var CommonEnv = map[string]string{
	"HTTP_ADDR":             "public listen address",
	"INTERNAL_ADDR":         "health and metrics listen address",
	"DATABASE_URL":          "PostgreSQL URL (postgres://...) or sqlite:<path>",
	"DATABASE_SCHEMA":       "PostgreSQL schema owned by this service (default: the service name)",
	"DATABASE_MAX_CONNS":    "connection pool size (default 16)",
	"REDIS_URL":             "Redis URL (redis://host:6379/0)",
	"NATS_URL":              "NATS URL(s), comma-separated",
	"NATS_STREAM_REPLICAS":  "replicas of the event stream and KV buckets (default 1)",
	"AGENTIDP_INTERNAL_KEY": "shared key (32+ bytes, hex or base64) for the gateway's signed internal context",
	"LOG_LEVEL":             "debug, info, warn or error (default info)",
	"SHUTDOWN_TIMEOUT":      "how long to drain in-flight requests (default 15s)",
}

// Main runs a service binary: parse flags and env, open dependencies,
// serve until ctx ends. main() only calls it.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, spec Spec) error {
	fset := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fset.SetOutput(stdout)
	fset.Usage = func() { usage(stdout, spec) }
	if err := fset.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	env := config.New(getenv)
	httpAddr := env.String("HTTP_ADDR", spec.DefaultHTTPAddr)
	internalAddr := env.String("INTERNAL_ADDR", spec.DefaultInternal)
	dbURL := ""
	if spec.NeedsDB {
		dbURL = env.Required("DATABASE_URL")
	}
	dbSchema := env.String("DATABASE_SCHEMA", spec.Name)
	maxConns := env.Int("DATABASE_MAX_CONNS", 16)
	redisURL := ""
	if spec.NeedsCache {
		redisURL = env.Required("REDIS_URL")
	}
	natsURL := env.Required("NATS_URL")
	replicas := env.Int("NATS_STREAM_REPLICAS", 1)
	key := env.Key("AGENTIDP_INTERNAL_KEY", authn.MinKeyLen, true)
	level := env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	shutdown := env.Duration("SHUTDOWN_TIMEOUT", 15*time.Second)
	build := spec.Configure(env)
	if err := env.Err(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}

	logger := NewLogger(os.Stderr, level).With("service", spec.Name)
	RouteClientLogs(logger)
	reg := NewRegistry()
	codec, err := authn.NewCodec(key)
	if err != nil {
		return err
	}
	d := &Deps{Service: spec.Name, Logger: logger, Registry: reg, Codec: codec, Getenv: getenv, Health: httpx.NewHealth(reg)}

	if spec.NeedsDB {
		cfg, err := DBConfig(dbURL, dbSchema, int32(maxConns))
		if err != nil {
			return err
		}
		d.DB, err = sqlstore.Open(ctx, cfg)
		if err != nil {
			return fmt.Errorf("open database: %w", err)
		}
		defer d.DB.Close()
		if spec.Migrations != nil {
			if err := d.DB.Migrate(ctx, spec.Migrations); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		logger.Info("database ready", "driver", cfg.Driver, "schema", dbSchema)
	}
	if spec.NeedsCache {
		c, err := cache.NewRedis(cache.RedisOptions{URL: redisURL, Logger: logger, Registerer: reg})
		if err != nil {
			return fmt.Errorf("open redis: %w", err)
		}
		defer c.Close()
		d.Cache = c
	}
	d.NATS, err = natsbus.Connect(natsURL, "agentidp-"+spec.Name, logger)
	if err != nil {
		return err
	}
	defer d.NATS.Drain()
	d.JS, err = jetstream.New(d.NATS)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := natsbus.EnsureStreams(ctx, d.JS, natsbus.StreamOptions{Replicas: replicas}); err != nil {
		return err
	}

	svc, err := build(ctx, d)
	if err != nil {
		return fmt.Errorf("build %s: %w", spec.Name, err)
	}
	pub, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", httpAddr, err)
	}
	internal, err := net.Listen("tcp", internalAddr)
	if err != nil {
		pub.Close()
		return fmt.Errorf("listen %s: %w", internalAddr, err)
	}
	fmt.Fprintf(stdout, "%s listening on http://%s (internal http://%s)\n", spec.Name, pub.Addr(), internal.Addr())
	return Serve(ctx, d, svc, pub, internal, shutdown)
}

// DBConfig turns DATABASE_URL into a sqlstore configuration.
func DBConfig(url, schema string, maxConns int32) (sqlstore.Config, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return sqlstore.Config{Driver: sqlstore.Postgres, URL: url, Schema: schema, MaxConns: maxConns}, nil
	case strings.HasPrefix(url, "sqlite:"):
		return sqlstore.Config{Driver: sqlstore.SQLite, URL: strings.TrimPrefix(url, "sqlite:")}, nil
	}
	return sqlstore.Config{}, fmt.Errorf("DATABASE_URL: must start with postgres:// or sqlite:")
}

// ConsumerStater is a service with an event consumer (natsbus.Consumer);
// Serve shows its state in /health/detailed.
type ConsumerStater interface {
	ConsumerState() natsbus.ConsumerState
}

// Serve runs svc: its background work, its public API on pub and health
// and metrics on internal, until ctx ends; then it stops accepting, drains
// in-flight requests for up to drain, and waits for background work.
func Serve(ctx context.Context, d *Deps, svc Service, pub, internal net.Listener, drain time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := d.Health
	if h == nil {
		var reg prometheus.Registerer
		if d.Registry != nil {
			reg = d.Registry
		}
		h = httpx.NewHealth(reg)
		d.Health = h
	}
	for k, v := range DependencyChecks(d) {
		h.AddDependency(k, v)
	}
	for k, v := range svc.Checks() {
		h.AddReady(k, v)
	}
	// An event consumer that waits out an outage degrades
	// /health/detailed while it retries; it never makes the pod unready.
	if c, ok := svc.(ConsumerStater); ok {
		h.AddDetail("consumer:"+c.ConsumerState().Durable, natsbus.StateDetail(c.ConsumerState))
	}
	go h.Watch(ctx, DependencyProbeInterval)
	publicSrv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn)}
	var internalSrv *http.Server
	if internal != nil {
		internalSrv = &http.Server{Handler: httpx.InternalHandler(d.Registry, h), ReadHeaderTimeout: 5 * time.Second}
	}
	errc := make(chan error, 3)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := svc.Run(ctx); err != nil {
			errc <- fmt.Errorf("%s background work: %w", d.Service, err)
		}
	}()
	go func() {
		if err := publicSrv.Serve(pub); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	if internalSrv != nil {
		go func() {
			if err := internalSrv.Serve(internal); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		d.Logger.Error("stopping after error", "err", runErr)
	}
	// Unready first, so load balancers stop sending new requests while the
	// in-flight ones drain.
	h.SetDraining()
	d.Logger.Info("shutting down", "drain", drain.String())
	sctx, scancel := context.WithTimeout(context.Background(), drain)
	defer scancel()
	if err := publicSrv.Shutdown(sctx); err != nil {
		d.Logger.Warn("drain public server", "err", err)
	}
	cancel()
	<-runDone
	if internalSrv != nil {
		_ = internalSrv.Shutdown(sctx)
	}
	return runErr
}

// DependencyProbeInterval is how often Serve probes the dependencies to
// keep agentidp_dependency_up current between /health/detailed requests.
const DependencyProbeInterval = 10 * time.Second

// DependencyChecks returns probes for the shared dependencies in d. They
// feed /health/detailed and agentidp_dependency_up, never readiness: every
// replica shares them, and each service keeps answering while one is away
// (outbox, cache fallback, 503 with Retry-After).
func DependencyChecks(d *Deps) map[string]httpx.Check {
	checks := map[string]httpx.Check{}
	if d.DB != nil {
		checks["database"] = d.DB.Ping
	}
	if d.Cache != nil {
		checks["cache"] = d.Cache.Ping
	}
	if d.NATS != nil {
		nc := d.NATS
		checks["nats"] = func(context.Context) error {
			if !nc.IsConnected() {
				st := nc.Status()
				return httpx.Categorize(strings.ToLower(st.String()), fmt.Errorf("nats %s", st))
			}
			return nil
		}
	}
	return checks
}

// NewLogger returns the suite's JSON logger at level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// NewRegistry returns a metrics registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func usage(w io.Writer, spec Spec) {
	fmt.Fprintf(w, "agentidp %s service\n\nUsage: %s [--help]\n\nConfiguration (environment variables):\n", spec.Name, spec.Name)
	all := map[string]string{}
	for k, v := range CommonEnv {
		all[k] = v
	}
	for k, v := range spec.Env {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-24s %s\n", n, all[n])
	}
}

// OutboxPublisher is the outbox relay's publish function every service
// uses: JetStream with Nats-Msg-Id = the event id, so a row published twice
// (a crash between publish and marking it) is dropped as a duplicate.
func OutboxPublisher(js jetstream.JetStream) sqlstore.PublishFunc {
	return func(ctx context.Context, msgs []sqlstore.OutboxMessage) error {
		raw := make([]natsbus.RawMessage, len(msgs))
		for i, m := range msgs {
			raw[i] = natsbus.RawMessage{ID: m.ID, Subject: m.Subject, Data: m.Data}
		}
		return natsbus.PublishRaw(ctx, js, raw)
	}
}

// Constructor builds a Spec.Configure from a service's configuration parser
// and constructor: the configuration is parsed when the environment is
// checked (so its problems are reported with the common ones), the service
// built once the dependencies are open.
func Constructor[C any, S Service](parse func(*config.Env) C, build func(context.Context, C, *Deps) (S, error)) func(*config.Env) func(context.Context, *Deps) (Service, error) {
	return func(env *config.Env) func(context.Context, *Deps) (Service, error) {
		cfg := parse(env)
		return func(ctx context.Context, d *Deps) (Service, error) {
			svc, err := build(ctx, cfg, d)
			if err != nil {
				return nil, err // not a typed nil inside the interface
			}
			return svc, nil
		}
	}
}

// RouteClientLogs sends what client libraries print on their own through
// logger, so every line on stderr is JSON: go-redis's logger (process
// wide) and the standard library's log package (slog.SetDefault makes
// log.Printf write through logger). NATS client errors go through the
// handler natsbus.Connect installs; pgx logs nothing unless given a tracer.
// Call it once, at start, from main-level code.
func RouteClientLogs(logger *slog.Logger) {
	cache.SetRedisLogger(logger)
	slog.SetDefault(logger)
}
