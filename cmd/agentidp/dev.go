package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/analytics"
	"github.com/agentidp/agentidp/services/billing"
	"github.com/agentidp/agentidp/services/did"
	"github.com/agentidp/agentidp/services/federation"
	"github.com/agentidp/agentidp/services/gateway"
	"github.com/agentidp/agentidp/services/tier"
	"github.com/agentidp/agentidp/services/token"
	"github.com/agentidp/agentidp/services/webhook"
	"github.com/nats-io/nats.go/jetstream"
)

// backendServices run behind the gateway in dev mode; each has its own
// SQLite file and a loopback listener. The names are the gateway's service
// names, so the gateway's upstream table is built from them.
var backendServices = []string{"token", "tier", "analytics", "webhook", "did", "federation", "billing"}

// devSecrets are generated on the first start and kept in the data
// directory (mode 0600): the local sealed store's key lives beside the data,
// which is what dev mode promises and no more.
type devSecrets struct {
	InternalKey      string `json:"internalKey"`
	SecretPepper     string `json:"secretPepper"`
	KeyEncryptionKey string `json:"keyEncryptionKey"`
	WebhookKey       string `json:"webhookKey,omitempty"`
	DIDKey           string `json:"didKey,omitempty"`
	// AuditKey keys the audit chain. A data directory made before it
	// existed gets one on its next start; its audit chains were signed
	// with the fixed development key, which the upgrade accepts once.
	AuditKey string `json:"auditKey,omitempty"`
}

// loadOrCreateSecrets returns the data directory's keys. A fresh
// directory gets new ones. Beside existing data, secrets.json must be there
// and readable: regenerating it would silently make every secret, token and
// sealed key in the data unusable, so any problem is an error naming the
// file. The one exception is a key of a service whose database does not
// exist yet (a directory made by an older version that knew fewer
// services): it is added, and existing keys never change.
func loadOrCreateSecrets(dir string) (devSecrets, error) {
	path := filepath.Join(dir, "secrets.json")
	_, statErr := os.Stat(path)
	if errors.Is(statErr, fs.ErrNotExist) && !hasData(dir) {
		s := devSecrets{InternalKey: randomHex(32), SecretPepper: randomHex(32), KeyEncryptionKey: randomHex(32),
			WebhookKey: randomHex(32), DIDKey: randomHex(32), AuditKey: randomHex(32)}
		return s, writeSecrets(path, s)
	}
	s, err := readSecrets(dir)
	if err != nil {
		return s, err
	}
	changed := false
	for _, k := range []struct {
		name, service string
		value         *string
	}{{"webhookKey", "webhook", &s.WebhookKey}, {"didKey", "did", &s.DIDKey}} {
		if *k.value != "" {
			if b, err := hex.DecodeString(*k.value); err != nil || len(b) < 32 {
				return s, fmt.Errorf("%s: %s is not 32 hex-encoded bytes: restore the file from a backup", path, k.name)
			}
			continue
		}
		if exists(filepath.Join(dir, k.service+".db")) {
			return s, fmt.Errorf("%s: %s is missing but %s.db holds data sealed with it: restore the file from a backup", path, k.name, k.service)
		}
		*k.value, changed = randomHex(32), true
	}
	// The audit key came later than the data it protects: a directory
	// without one gets one (its chains were signed with the fixed
	// development key, which the analytics upgrade accepts once).
	if s.AuditKey == "" {
		s.AuditKey, changed = randomHex(32), true
	} else if b, err := hex.DecodeString(s.AuditKey); err != nil || len(b) < 32 {
		return s, fmt.Errorf("%s: auditKey is not 32 hex-encoded bytes: restore the file from a backup", path)
	}
	if changed {
		return s, writeSecrets(path, s)
	}
	return s, nil
}

func writeSecrets(path string, s devSecrets) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// hasData reports whether dir holds data sealed or signed with the keys of
// secrets.json: a service database or the NATS store.
func hasData(dir string) bool {
	for _, name := range backendServices {
		if exists(filepath.Join(dir, name+".db")) {
			return true
		}
	}
	return exists(filepath.Join(dir, "nats"))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readSecrets reads DIR/secrets.json as it must be beside existing data:
// every key present and well formed. Any problem is an error naming the
// file, never new keys, which would make every secret and token in the
// data unusable.
func readSecrets(dir string) (devSecrets, error) {
	path := filepath.Join(dir, "secrets.json")
	var s devSecrets
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("%s is missing but %s holds data sealed with its keys: restore the file from a backup (or start with an empty data directory)", path, dir)
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s is unreadable (%v): restore it from a backup; new keys would make the existing data unusable", path, err)
	}
	for _, k := range []struct{ name, value string }{{"internalKey", s.InternalKey}, {"secretPepper", s.SecretPepper}, {"keyEncryptionKey", s.KeyEncryptionKey}} {
		if b, err := hex.DecodeString(k.value); err != nil || len(b) < 32 {
			return s, fmt.Errorf("%s: %s is missing or not 32 hex-encoded bytes: restore the file from a backup; new keys would make the existing data unusable", path, k.name)
		}
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// runDev runs every service in this process: an in-process NATS server with
// JetStream, one SQLite file per service, an in-process cache and keys in the
// data directory. The services listen on loopback ports of their own and the
// gateway on --addr, exactly as in production but without the network hops
// to PostgreSQL, Redis and NATS.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("dev", flag.ContinueOnError)
	dataDir := flags.String("data", ".agentidp", "data directory (created if missing)")
	addr := flags.String("addr", "127.0.0.1:8080", "gateway listen address")
	internalAddr := flags.String("internal-addr", "127.0.0.1:9090", "gateway health and metrics address")
	natsListen := flags.String("nats-listen", "", "also expose the embedded NATS server on HOST:PORT (a bare :PORT means 127.0.0.1), with the user and password of DIR/"+natsCredentialsFile+" (default: in-process only)")
	natsNoAuth := flags.Bool("nats-no-auth", false, "expose --nats-listen without authentication (refused on a non-loopback address)")
	logLevel := flags.String("log-level", "info", "debug, info, warn or error")
	var boot bootstrapOptions
	boot.register(flags)
	flags.SetOutput(stdout)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	// Every port is bound before anything is written: a busy port must end
	// the start before the first one creates the admin agent and prints
	// its secret, or the secret is lost with the failed start.
	lst, err := bindDevListeners(*addr, *internalAddr)
	if err != nil {
		return err
	}
	defer lst.close()
	listeners, gwListener, gwInternal := lst.backends, lst.gateway, lst.internal
	gatewayURL := "http://" + gwListener.Addr().String()

	natsOpts, natsCreds, err := devNATSOptions(*dataDir, *natsListen, *natsNoAuth)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	secrets, err := loadOrCreateSecrets(*dataDir)
	if err != nil {
		return err
	}
	logger := svcrun.NewLogger(stderr, *logLevel)
	svcrun.RouteClientLogs(logger)
	start := time.Now()

	ns, err := natsbus.StartEmbedded(natsOpts)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	fmt.Fprintf(stdout, "embedded NATS with JetStream ready (%s)\n", natsOpts.StoreDir)
	switch {
	case natsOpts.Listen && natsCreds != "":
		fmt.Fprintf(stdout, "NATS listening on %s (user and password in %s)\n", ns.URL(), natsCreds)
	case natsOpts.Listen:
		fmt.Fprintf(stdout, "NATS listening on %s WITHOUT authentication (--nats-no-auth): anyone on this machine can read every event and purge revocations\n", ns.URL())
	}

	codec, err := authn.NewCodec(mustHex(secrets.InternalKey))
	if err != nil {
		return err
	}
	shared := cache.NewMemory(cache.MemoryOptions{})
	defer shared.Close()

	dbs := map[string]*sqlstore.DB{}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	migrations := map[string]fs.FS{"token": token.Migrations, "tier": tier.Migrations, "analytics": analytics.Migrations,
		"webhook": webhook.Migrations, "did": did.Migrations, "federation": federation.Migrations, "billing": billing.Migrations}
	for _, name := range backendServices {
		db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(*dataDir, name+".db")})
		if err != nil {
			return fmt.Errorf("open %s database: %w", name, err)
		}
		dbs[name] = db
		if err := db.Migrate(ctx, migrations[name]); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	if err := bootstrap(ctx, dbs["tier"], dbs["token"], mustHex(secrets.SecretPepper), boot, stdout); err != nil {
		return err
	}

	deps := func(name string) (*svcrun.Deps, error) {
		nc, err := ns.Connect("agentidp-dev-"+name, natsbus.LogErrors(logger.With("service", name)))
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		reg := svcrun.NewRegistry()
		return &svcrun.Deps{Service: name, Logger: logger.With("service", name), Registry: reg, Health: httpx.NewHealth(reg),
			DB: dbs[name], Cache: shared, NATS: nc, JS: js, Codec: codec, Getenv: func(string) string { return "" }, Embedded: true}, nil
	}
	first, err := deps("setup")
	if err != nil {
		return err
	}
	if err := natsbus.EnsureStreams(ctx, first.JS, natsbus.StreamOptions{}); err != nil {
		return err
	}
	first.NATS.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(backendServices)+1)
	serve := func(name string, d *svcrun.Deps, svc svcrun.Service, pub, internal net.Listener) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.NATS.Drain()
			if err := svcrun.Serve(ctx, d, svc, pub, internal, 5*time.Second); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	build := map[string]func(context.Context, *svcrun.Deps) (svcrun.Service, error){
		"token": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := token.DefaultConfig()
			cfg.Issuer = gatewayURL
			cfg.SecretPepper = mustHex(secrets.SecretPepper)
			cfg.KeyEncryptionKey = mustHex(secrets.KeyEncryptionKey)
			// Partner tokens (jwt-bearer) are checked by the federation service.
			cfg.ClientAuth.FederationURL = "http://" + listeners["federation"].Addr().String()
			return token.New(ctx, cfg, d)
		},
		"tier": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			return tier.New(ctx, tier.DefaultConfig(), d)
		},
		"analytics": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := analytics.DefaultConfig()
			cfg.CheckpointKey = mustHex(secrets.AuditKey)
			return analytics.New(ctx, cfg, d)
		},
		"webhook": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := webhook.DefaultConfig()
			cfg.SecretKey = mustHex(secrets.WebhookKey)
			return webhook.New(ctx, cfg, d)
		},
		"did": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := did.DefaultConfig()
			cfg.BaseURL = gatewayURL
			cfg.KeyEncryptionKey = mustHex(secrets.DIDKey)
			return did.New(ctx, cfg, d)
		},
		"billing": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			// Off unless STRIPE_SECRET_KEY is set: billing then says so and
			// answers 503 on the Stripe-backed routes.
			env := config.New(os.Getenv)
			cfg := billing.ConfigFromEnv(env)
			if err := env.Err(); err != nil {
				return nil, err
			}
			return billing.New(ctx, cfg, d)
		},
		"federation": func(ctx context.Context, d *svcrun.Deps) (svcrun.Service, error) {
			cfg := federation.DefaultConfig()
			cfg.Audience = gatewayURL
			return federation.New(ctx, cfg, d)
		},
	}
	upstreams := map[string]string{}
	for _, name := range backendServices {
		d, err := deps(name)
		if err != nil {
			return err
		}
		svc, err := build[name](ctx, d)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		serve(name, d, svc, listeners[name], nil)
		upstreams[name] = "http://" + listeners[name].Addr().String()
	}

	gwCfg := gateway.DefaultConfig()
	gwCfg.Issuer = gatewayURL
	gwCfg.Upstreams = upstreams
	d, err := deps("gateway")
	if err != nil {
		return err
	}
	gw, err := gateway.New(ctx, gwCfg, d)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	serve("gateway", d, gw, gwListener, gwInternal)

	if err := waitReady(ctx, gw, 30*time.Second); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	fmt.Fprintf(stdout, "AgentIdP is running at %s (health and metrics at http://%s) — started in %s\n",
		gatewayURL, gwInternal.Addr(), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "data directory: %s; press Ctrl-C to stop\n", *dataDir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		logger.Error("stopping", "err", runErr)
	}
	cancel()
	wg.Wait()
	logger.Info("stopped", slog.String("data", *dataDir))
	return runErr
}

// waitReady waits until the gateway's own readiness checks pass (JWKS,
// organisation read model and policy loaded).
func waitReady(ctx context.Context, gw svcrun.Service, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var failing []string
		for name, check := range gw.Checks() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := check(cctx); err != nil {
				failing = append(failing, name+": "+err.Error())
			}
			cancel()
		}
		if len(failing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway not ready after %s: %v", timeout, failing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
