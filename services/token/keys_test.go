package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token"
	"github.com/prometheus/client_golang/prometheus"
)

var keysPepper = []byte("0123456789abcdef0123456789abcdef")

type keysEnv struct {
	db    *lib.DB
	nats  *natstest.Server
	codec *authn.Codec
}

func newKeysEnv(t *testing.T) *keysEnv {
	t.Helper()
	db, err := lib.Open(context.Background(), lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "token.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), token.Migrations); err != nil {
		t.Fatal(err)
	}
	codec, _ := authn.NewCodec(keysPepper)
	return &keysEnv{db: db, nats: natstest.Start(t), codec: codec}
}

// start builds and runs one token-service instance on the shared DB.
func (e *keysEnv) start(t *testing.T, cfg token.Config) *token.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nc, js := e.nats.Connect(t)
	cfg.SecretPepper = keysPepper
	d := &svcrun.Deps{Service: "token", Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		DB: e.db, Cache: cache.NewMemory(cache.MemoryOptions{}), NATS: nc, JS: js, Codec: e.codec}
	svc, err := token.New(ctx, cfg, d)
	if err != nil {
		cancel()
		t.Fatalf("New() = %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

func (e *keysEnv) admin(t *testing.T, h http.Handler, method, path string, scopes []string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if scopes != nil {
		v, err := e.codec.Sign(authn.Identity{Subject: "operator", OrgID: "platform", Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour).Unix(),
			Method: req.Method, Path: req.URL.Path})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(authn.Header, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func fetchJWKS(t testing.TB, h http.Handler) jose.JWKS {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	var set jose.JWKS
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	return set
}

func kids(set jose.JWKS) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds. The bound only ends a failing test;
// it is generous because the race detector on a loaded 2-core machine
// makes every step many times slower.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKeysTwoInstances runs two instances on one database: they converge
// on one key and serve the same JWKS; the admin endpoints rotate and
// withdraw, and the other instance follows through the NATS notification.
func TestKeysTwoInstances(t *testing.T) {
	// The periodic poll is slower than every wait below: only the NATS
	// notification can make the other instance follow in time.
	restore := token.SetKeyLoopForTest(time.Minute, time.Minute)
	defer restore()
	e := newKeysEnv(t)
	probe, _ := e.nats.Connect(t)
	// notified reports cond, re-sending the notification meanwhile: the
	// instance's subscription may start after the first one was sent.
	notified := func(cond func() bool) func() bool {
		return func() bool {
			if cond() {
				return true
			}
			_ = probe.Publish(token.KeysChangedSubject, []byte(`{}`))
			return false
		}
	}
	var a, b *token.Service
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = e.start(t, token.DefaultConfig()) }()
	go func() { defer wg.Done(); b = e.start(t, token.DefaultConfig()) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first := kids(fetchJWKS(t, a.Handler()))
	if len(first) != 1 || !slices.Equal(first, kids(fetchJWKS(t, b.Handler()))) {
		t.Fatalf("JWKS = %v and %v; want one shared key", first, kids(fetchJWKS(t, b.Handler())))
	}
	tests := []struct {
		name   string
		method string
		path   string
		scopes []string
		want   int
	}{
		{"list without context", "GET", "/api/v1/keys", nil, http.StatusUnauthorized},
		{"rotate without context", "POST", "/api/v1/keys/rotate", nil, http.StatusUnauthorized},
		{"list without admin:orgs", "GET", "/api/v1/keys", []string{"agents:read"}, http.StatusForbidden},
		{"withdraw without admin:orgs", "POST", "/api/v1/keys/" + first[0] + "/withdraw", []string{"agents:write"}, http.StatusForbidden},
		{"withdraw bad kid", "POST", "/api/v1/keys/bad%20kid/withdraw", []string{"admin:orgs"}, http.StatusBadRequest},
		{"withdraw unknown kid", "POST", "/api/v1/keys/unknown/withdraw", []string{"admin:orgs"}, http.StatusNotFound},
		{"list", "GET", "/api/v1/keys", []string{"admin:orgs"}, http.StatusOK},
	}
	for _, tc := range tests {
		if rec := e.admin(t, a.Handler(), tc.method, tc.path, tc.scopes); rec.Code != tc.want {
			t.Errorf("%s: %s %s = %d; want %d (%s)", tc.name, tc.method, tc.path, rec.Code, tc.want, rec.Body)
		}
	}
	rec := e.admin(t, a.Handler(), "POST", "/api/v1/keys/rotate", []string{"admin:orgs"})
	if rec.Code != http.StatusOK {
		t.Fatalf("rotate = %d %s", rec.Code, rec.Body)
	}
	var rotated struct{ Kid, State string }
	_ = json.Unmarshal(rec.Body.Bytes(), &rotated)
	if rotated.State != "active" || rotated.Kid == first[0] {
		t.Fatalf("rotate = %s; want a new active key", rec.Body)
	}
	want := []string{first[0], rotated.Kid}
	slices.Sort(want)
	waitFor(t, "instance b to serve the rotated JWKS", notified(func() bool { return slices.Equal(kids(fetchJWKS(t, b.Handler())), want) }))
	rec = e.admin(t, b.Handler(), "GET", "/api/v1/keys", []string{"admin:orgs"})
	if strings.Contains(rec.Body.String(), "pkcs8") || strings.Contains(rec.Body.String(), `"d"`) {
		t.Errorf("GET /api/v1/keys leaks private material: %s", rec.Body)
	}
	var list struct {
		Data []struct {
			Kid, State string
			Published  bool
		}
		Total int64
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if list.Total != 2 || len(list.Data) != 2 || list.Data[0].Kid != rotated.Kid || list.Data[1].State != "retired" || !list.Data[1].Published {
		t.Errorf("GET /api/v1/keys = %s; want the new active key first, then the retired, published one", rec.Body)
	}
	rec = e.admin(t, b.Handler(), "POST", "/api/v1/keys/"+first[0]+"/withdraw", []string{"admin:orgs"})
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"withdrawn"`) {
		t.Fatalf("withdraw = %d %s", rec.Code, rec.Body)
	}
	waitFor(t, "instance a to drop the withdrawn key", notified(func() bool {
		return slices.Equal(kids(fetchJWKS(t, a.Handler())), []string{rotated.Kid})
	}))
	disc := httptest.NewRecorder()
	a.Handler().ServeHTTP(disc, httptest.NewRequest("GET", "/.well-known/openid-configuration", nil))
	if !strings.Contains(disc.Body.String(), `"id_token_signing_alg_values_supported":["ES256"]`) {
		t.Errorf("discovery = %s; want the algs in use", disc.Body)
	}
}

// TestKeysInVault keeps the private keys in Vault (the in-test KV v2
// server): they land at <mount>/data/agentidp/token/signing-keys/<kid>, and
// nothing secret is written to the database.
func TestKeysInVault(t *testing.T) {
	e := newKeysEnv(t)
	v := vaulttest.Start(t)
	cfg := token.DefaultConfig()
	cfg.KeyEncryptionKey = nil
	cfg.SigningAlg = jose.EdDSA
	cfg.Vault = &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	svc := e.start(t, cfg)
	set := fetchJWKS(t, svc.Handler())
	if len(set.Keys) != 1 || set.Keys[0].Alg != "EdDSA" {
		t.Fatalf("JWKS = %+v; want one EdDSA key", set)
	}
	vs, err := secrets.NewVault(*cfg.Vault)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := vs.Get(context.Background(), "token/signing-keys/"+set.Keys[0].Kid)
	if err != nil || sec.Data["pkcs8"] == "" || sec.Data["alg"] != "EdDSA" {
		t.Fatalf("vault secret = %v, %v; want the PKCS#8 key", sec.Data["alg"], err)
	}
	found := false
	for _, r := range v.Requests() {
		if strings.Contains(r, "/v1/secret/data/agentidp/token/signing-keys/"+set.Keys[0].Kid) {
			found = true
		}
	}
	if !found {
		t.Errorf("vault requests = %v; want the key's KV v2 data path", v.Requests())
	}
	var n int
	if err := e.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM secret_versions").Scan(&n); err == nil && n != 0 {
		t.Errorf("secret_versions rows = %d; want none with Vault", n)
	}
	var jwk string
	if err := e.db.QueryRowContext(context.Background(), "SELECT public_jwk FROM signing_key_ring").Scan(&jwk); err != nil || strings.Contains(jwk, `"d"`) {
		t.Errorf("signing_key_ring public_jwk = %s, %v; want public material only", jwk, err)
	}
}

// TestKeysRotationUnderLoad issues tokens in a loop while another
// goroutine verifies them against a key set refreshed from the JWKS
// handler every 50 ms, across several scheduled rotations with a short
// lead: no verification may fail. A withdrawn key's token is rejected.
func TestKeysRotationUnderLoad(t *testing.T) {
	restore := token.SetKeyLoopForTest(20*time.Millisecond, 20*time.Millisecond)
	defer restore()
	e := newKeysEnv(t)
	ctx := context.Background()
	id, secret, _, err := token.Bootstrap(ctx, e.db, keysPepper, "org-1", "admin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	cfg := token.DefaultConfig()
	cfg.KeyRotationInterval = 700 * time.Millisecond
	cfg.KeyPublishLead = 250 * time.Millisecond
	svc := e.start(t, cfg)
	_, js := e.nats.Connect(t)
	kv, err := natsbus.EnsureKV(ctx, js, events.OrgsBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "org-1", []byte(`{"organizationId":"org-1","status":"active","limits":{"maxAgents":-1,"maxTokensPerDay":-1}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "org read model", func() bool { return svc.Checks()["org_read_model"](ctx) == nil })
	issue := func() (string, error) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		svc.Handler().ServeHTTP(rec, req)
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			return "", errors.New(rec.Body.String())
		}
		return out.AccessToken, nil
	}
	opts := jose.VerifyOptions{Issuer: cfg.Issuer, Audience: cfg.Audience, Typ: "at+jwt"}
	keySet := func() *jose.StaticKeySet {
		ks, err := jose.NewStaticKeySet(fetchJWKS(t, svc.Handler()))
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	tokens := make(chan string, 1024)
	stop := make(chan struct{})
	var issued, verified, failed int
	seen := map[string]bool{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(tokens)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tok, err := issue()
			if err != nil {
				t.Errorf("issue: %v", err)
				return
			}
			issued++
			tokens <- tok
		}
	}()
	go func() {
		defer wg.Done()
		ks, refreshed := keySet(), time.Now()
		for tok := range tokens {
			if time.Since(refreshed) >= 50*time.Millisecond {
				ks, refreshed = keySet(), time.Now()
			}
			var c jose.RegisteredClaims
			if err := jose.Verify(tok, ks, opts, &c); err != nil {
				failed++
				if failed <= 3 {
					t.Errorf("Verify() = %v", err)
				}
				continue
			}
			h, _ := jose.ParseUnverifiedHeader(tok)
			seen[h.Kid] = true
			verified++
		}
	}()
	time.Sleep(2500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed != 0 || verified != issued || len(seen) < 3 {
		t.Fatalf("issued %d, verified %d, failed %d, signing keys seen %d; want no failures across >= 2 rotations", issued, verified, failed, len(seen))
	}
	t.Logf("issued %d tokens across %d signing keys, zero verification failures", issued, len(seen))

	tok, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := jose.ParseUnverifiedHeader(tok)
	if rec := e.admin(t, svc.Handler(), "POST", "/api/v1/keys/"+h.Kid+"/withdraw", []string{"admin:orgs"}); rec.Code != http.StatusOK {
		t.Fatalf("withdraw = %d %s", rec.Code, rec.Body)
	}
	var c jose.RegisteredClaims
	if err := jose.Verify(tok, keySet(), opts, &c); !errors.Is(err, jose.ErrUnknownKey) {
		t.Errorf("Verify(token of withdrawn key) = %v; want ErrUnknownKey", err)
	}
	next, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	if err := jose.Verify(next, keySet(), opts, &c); err != nil {
		t.Errorf("Verify(token after withdraw) = %v", err)
	}
}
