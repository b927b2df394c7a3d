package domain_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/secrets"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
)

var kek = []byte("0123456789abcdef0123456789abcdef")

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type secretsAdapter struct{ s secrets.Store }

func (a secretsAdapter) Put(ctx context.Context, p string, d map[string]string) error {
	_, err := a.s.Put(ctx, p, d)
	return err
}
func (a secretsAdapter) Get(ctx context.Context, p string) (map[string]string, error) {
	s, err := a.s.Get(ctx, p)
	return s.Data, err
}
func (a secretsAdapter) Delete(ctx context.Context, p string) error { return a.s.Delete(ctx, p) }

type ringEnv struct {
	db      *lib.DB
	secrets secrets.Store
	clock   *clock
}

func newRingEnv(t *testing.T) *ringEnv {
	t.Helper()
	ctx := context.Background()
	db, err := lib.Open(ctx, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "keys.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, os.DirFS("../..")); err != nil {
		t.Fatal(err)
	}
	l, err := secrets.NewLocal(db, kek)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &ringEnv{db: db, secrets: l, clock: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
}

func (e *ringEnv) ring(t *testing.T, alg jose.Alg) *domain.Keyring {
	t.Helper()
	r, err := domain.NewKeyring(context.Background(), domain.KeyringSettings{
		Alg: alg, TokenTTL: time.Hour, RotationInterval: 24 * time.Hour, PublishLead: time.Hour,
		ExpiryLeeway: 5 * time.Minute, Now: e.clock.Now,
	}, sqlstore.NewKeyRing(e.db), secretsAdapter{e.secrets}, kek)
	if err != nil {
		t.Fatalf("NewKeyring() = %v", err)
	}
	return r
}

func signKID(t *testing.T, r *domain.Keyring) string {
	t.Helper()
	tok, err := r.Sign(jose.RegisteredClaims{Subject: "s"})
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	h, err := jose.ParseUnverifiedHeader(tok)
	if err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func jwksKIDs(t *testing.T, r *domain.Keyring) []string {
	t.Helper()
	var set jose.JWKS
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

func sorted(v ...string) []string { slices.Sort(v); return v }

func states(t *testing.T, r *domain.Keyring) map[string]domain.KeyState {
	t.Helper()
	ks, err := r.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]domain.KeyState{}
	for _, k := range ks {
		out[k.KID] = k.State
	}
	return out
}

func TestKeyringSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRingEnv(t)
	t0 := e.clock.Now()
	r := e.ring(t, jose.ES256)
	a := signKID(t, r)
	if got := jwksKIDs(t, r); !slices.Equal(got, []string{a}) {
		t.Fatalf("JWKS at start = %v; want [%s]", got, a)
	}
	step := func(at time.Duration) {
		t.Helper()
		e.clock.Set(t0.Add(at))
		if err := r.Advance(ctx); err != nil {
			t.Fatalf("Advance(+%v) = %v", at, err)
		}
		if err := r.Reload(ctx, false); err != nil {
			t.Fatalf("Reload(+%v) = %v", at, err)
		}
	}
	step(22 * time.Hour)
	if got := jwksKIDs(t, r); len(got) != 1 {
		t.Fatalf("JWKS before lead = %v; want only the active key", got)
	}
	step(23 * time.Hour) // retire_at (24h) - lead (1h): the next key appears
	got := jwksKIDs(t, r)
	if len(got) != 2 {
		t.Fatalf("JWKS at lead = %v; want active and next", got)
	}
	b := got[0]
	if b == a {
		b = got[1]
	}
	if st := states(t, r); st[a] != domain.KeyActive || st[b] != domain.KeyNext {
		t.Fatalf("states at lead = %v; want %s active, %s next", st, a, b)
	}
	e.clock.Set(t0.Add(24*time.Hour - time.Second))
	if kid := signKID(t, r); kid != a {
		t.Errorf("Sign() before activation used %s; want %s (next is published, not signing)", kid, a)
	}
	// At activate_at every replica switches from the timestamps, before
	// any rotation loop ran.
	e.clock.Set(t0.Add(24 * time.Hour))
	if kid := signKID(t, r); kid != b {
		t.Errorf("Sign() at activation used %s; want %s", kid, b)
	}
	step(24*time.Hour + time.Second)
	if st := states(t, r); st[a] != domain.KeyRetired || st[b] != domain.KeyActive {
		t.Fatalf("states after activation = %v; want %s retired, %s active", st, a, b)
	}
	step(25*time.Hour + 4*time.Minute) // last token of a (24h + 1h TTL) still live, within leeway
	if got := jwksKIDs(t, r); !slices.Equal(got, sorted(a, b)) {
		t.Errorf("JWKS before retired key's expiry = %v; want both", got)
	}
	step(25*time.Hour + 5*time.Minute)
	if got := jwksKIDs(t, r); !slices.Equal(got, []string{b}) {
		t.Errorf("JWKS after expiry = %v; want [%s]", got, b)
	}
	if st := states(t, r); st[a] != domain.KeyExpired {
		t.Errorf("state of %s = %s; want expired", a, st[a])
	}
	if _, err := e.secrets.Get(ctx, domain.SigningKeySecretPrefix+a); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("secret of expired key: Get() = %v; want ErrNotFound", err)
	}
}

func TestKeyringReplicasConverge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRingEnv(t)
	rings := make([]*domain.Keyring, 4)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Add(1)
		go func() { defer wg.Done(); rings[i] = e.ring(t, jose.ES256) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := jwksKIDs(t, rings[0])
	if len(want) != 1 {
		t.Fatalf("JWKS = %v; want one key", want)
	}
	e.clock.Set(e.clock.Now().Add(23 * time.Hour))
	for _, r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Advance(ctx); err != nil {
				t.Errorf("Advance() = %v", err)
			}
		}()
	}
	wg.Wait()
	for i, r := range rings {
		if err := r.Reload(ctx, false); err != nil {
			t.Fatal(err)
		}
		got := jwksKIDs(t, r)
		if len(got) != 2 {
			t.Errorf("ring %d JWKS = %v; want active + one next", i, got)
		}
		if i > 0 && !slices.Equal(got, jwksKIDs(t, rings[0])) {
			t.Errorf("ring %d JWKS = %v; want %v", i, got, jwksKIDs(t, rings[0]))
		}
	}
	names, err := e.secrets.List(ctx, "token/signing-keys/")
	if err != nil || len(names) != 2 {
		t.Errorf("secrets under token/signing-keys/ = %v, %v; want 2 (losers' keys deleted)", names, err)
	}
}

func TestKeyringRotateAndWithdraw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRingEnv(t)
	r1, r2 := e.ring(t, jose.ES256), e.ring(t, jose.ES256)
	a := signKID(t, r1)
	old, err := r1.Sign(jose.RegisteredClaims{Subject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := r1.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	if k.KID == a || k.State != domain.KeyActive {
		t.Fatalf("Rotate() = %s %s; want a new active key", k.KID, k.State)
	}
	if kid := signKID(t, r1); kid != k.KID {
		t.Errorf("Sign() after rotation used %s; want %s", kid, k.KID)
	}
	if err := r2.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if kid := signKID(t, r2); kid != k.KID {
		t.Errorf("other replica Sign() after reload used %s; want %s", kid, k.KID)
	}
	if got := jwksKIDs(t, r2); !slices.Equal(got, sorted(a, k.KID)) {
		t.Errorf("JWKS after rotation = %v; want the retired and the new key", got)
	}
	// Withdraw the retired key: it leaves the JWKS and its tokens fail.
	w, err := r1.Withdraw(ctx, a)
	if err != nil || w.State != domain.KeyWithdrawn || w.WithdrawnAt == nil {
		t.Fatalf("Withdraw(retired) = %+v, %v", w, err)
	}
	if got := jwksKIDs(t, r1); !slices.Equal(got, []string{k.KID}) {
		t.Errorf("JWKS after withdraw = %v; want [%s]", got, k.KID)
	}
	var set jose.JWKS
	_ = json.Unmarshal(r1.JWKS(), &set)
	ks, err := jose.NewStaticKeySet(set)
	if err != nil {
		t.Fatal(err)
	}
	var claims jose.RegisteredClaims
	if err := jose.Verify(old, ks, jose.VerifyOptions{Now: e.clock.Now()}, &claims); !errors.Is(err, jose.ErrUnknownKey) {
		t.Errorf("Verify(token of withdrawn key) = %v; want ErrUnknownKey", err)
	}
	// Withdraw the active key: a replacement signs first.
	w, err = r1.Withdraw(ctx, k.KID)
	if err != nil || w.State != domain.KeyWithdrawn {
		t.Fatalf("Withdraw(active) = %+v, %v", w, err)
	}
	c := signKID(t, r1)
	if c == k.KID || c == a {
		t.Errorf("Sign() after withdrawing the active key used %s", c)
	}
	if got := jwksKIDs(t, r1); !slices.Equal(got, []string{c}) {
		t.Errorf("JWKS = %v; want [%s]", got, c)
	}
	if _, err := r1.Withdraw(ctx, "nope"); !errors.Is(err, domain.ErrKeyNotFound) {
		t.Errorf("Withdraw(unknown) = %v; want ErrKeyNotFound", err)
	}
	if _, err := e.secrets.Get(ctx, domain.SigningKeySecretPrefix+k.KID); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("secret of withdrawn key: Get() = %v; want ErrNotFound", err)
	}
}

func TestKeyringAlgs(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.Alg{jose.ES256, jose.EdDSA, jose.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			e := newRingEnv(t)
			r := e.ring(t, alg)
			tok, err := r.Sign(jose.RegisteredClaims{Subject: "s", ExpiresAt: e.clock.Now().Add(time.Hour).Unix()})
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JWKS
			_ = json.Unmarshal(r.JWKS(), &set)
			ks, err := jose.NewStaticKeySet(set)
			if err != nil {
				t.Fatal(err)
			}
			var c jose.RegisteredClaims
			if err := jose.Verify(tok, ks, jose.VerifyOptions{Now: e.clock.Now(), Typ: "at+jwt"}, &c); err != nil {
				t.Errorf("Verify() = %v", err)
			}
			if got := r.Algs(); !slices.Equal(got, []string{string(alg)}) {
				t.Errorf("Algs() = %v; want [%s]", got, alg)
			}
		})
	}
	// Changing the configured algorithm schedules a next key of the new
	// one, published lead before it signs; both algs are advertised.
	e := newRingEnv(t)
	e.ring(t, jose.ES256)
	r := e.ring(t, jose.EdDSA)
	if got := r.Algs(); !slices.Equal(got, []string{"ES256", "EdDSA"}) {
		t.Errorf("Algs() after alg change = %v; want [ES256 EdDSA]", got)
	}
}

func TestKeyringMigratesLegacyKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRingEnv(t)
	legacy, err := domain.NewSealedKeyStore(sqlstore.New(e.db), kek)
	if err != nil {
		t.Fatal(err)
	}
	old, err := legacy.Active(ctx, jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	r := e.ring(t, jose.ES256)
	if kid := signKID(t, r); kid != old.KID {
		t.Errorf("Sign() after migration used %s; want the legacy key %s", kid, old.KID)
	}
	if _, err := e.secrets.Get(ctx, domain.SigningKeySecretPrefix+old.KID); err != nil {
		t.Errorf("legacy key in secrets store: %v", err)
	}
	var n int
	if err := e.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM signing_keys").Scan(&n); err != nil || n != 0 {
		t.Errorf("legacy rows left = %d, %v; want 0", n, err)
	}
}
