// Package secretstest is the conformance suite of secrets.Store: every
// backend (Local on SQLite and PostgreSQL, Vault against vaulttest) must pass
// Run.
package secretstest

import (
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/secrets"
)

// secretValue is a value the suite writes that must never appear in errors.
const secretValue = "s3cr3t-VALUE-must-not-leak"

// Run checks the secrets.Store contract. newStore returns an empty store for
// the (sub)test it is given; it is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) secrets.Store) {
	t.Helper()
	ctx := context.Background()

	t.Run("PutGet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		before := time.Now().Add(-time.Minute)
		want := map[string]string{"kid": "k1", "private": secretValue}
		v, err := s.Put(ctx, "token/signing-keys/k1", want)
		if err != nil || v != 1 {
			t.Fatalf("Put() = %d, %v; want 1, nil", v, err)
		}
		got, err := s.Get(ctx, "token/signing-keys/k1")
		if err != nil {
			t.Fatalf("Get() error = %v", err)
		}
		if !maps.Equal(got.Data, want) || got.Version != 1 {
			t.Errorf("Get() = %v v%d; want %v v1", got.Data, got.Version, want)
		}
		if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Minute)) || got.CreatedAt.Location() != time.UTC {
			t.Errorf("Get().CreatedAt = %v; want about now, in UTC", got.CreatedAt)
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("Ping() = %v; want nil", err)
		}
	})

	t.Run("EmptyData", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.Put(ctx, "empty", nil); err != nil {
			t.Fatalf("Put(nil) error = %v", err)
		}
		got, err := s.Get(ctx, "empty")
		if err != nil || got.Data == nil || len(got.Data) != 0 {
			t.Errorf("Get() = %#v, %v; want empty non-nil Data", got.Data, err)
		}
	})

	t.Run("Versions", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i := 1; i <= 3; i++ {
			v, err := s.Put(ctx, "did/keys/a", map[string]string{"n": string(rune('0' + i))})
			if err != nil || v != i {
				t.Fatalf("Put() #%d = %d, %v; want %d, nil", i, v, err, i)
			}
		}
		latest, err := s.Get(ctx, "did/keys/a")
		if err != nil || latest.Version != 3 || latest.Data["n"] != "3" {
			t.Errorf("Get() = %v v%d, %v; want n=3 v3", latest.Data, latest.Version, err)
		}
		old, err := s.GetVersion(ctx, "did/keys/a", 1)
		if err != nil || old.Version != 1 || old.Data["n"] != "1" {
			t.Errorf("GetVersion(1) = %v v%d, %v; want n=1 v1", old.Data, old.Version, err)
		}
		for _, v := range []int{0, -1, 4, 1000} {
			if _, err := s.GetVersion(ctx, "did/keys/a", v); !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("GetVersion(%d) error = %v; want ErrNotFound", v, err)
			}
		}
	})

	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("Get(missing) error = %v; want ErrNotFound", err)
		}
		if _, err := s.GetVersion(ctx, "nope/deeper", 1); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("GetVersion(missing) error = %v; want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "nope"); err != nil {
			t.Errorf("Delete(missing) = %v; want nil", err)
		}
		got, err := s.List(ctx, "nope")
		if err != nil || len(got) != 0 {
			t.Errorf("List(missing) = %q, %v; want empty, nil", got, err)
		}
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, p := range []string{"app/a", "app/b/c", "app/b/d", "app/z", "app_x/y", "other/x", "app/a/sub"} {
			if _, err := s.Put(ctx, p, map[string]string{"v": "1"}); err != nil {
				t.Fatalf("Put(%q) error = %v", p, err)
			}
		}
		tests := []struct {
			name, prefix string
			want         []string
		}{
			{"root", "", []string{"app/", "app_x/", "other/"}},
			{"folder", "app", []string{"a", "a/", "b/", "z"}},
			{"trailing slash", "app/", []string{"a", "a/", "b/", "z"}},
			{"nested", "app/b", []string{"c", "d"}},
			{"secret with child", "app/a", []string{"sub"}},
			{"leaf", "app/z", []string{}},
			{"absent", "zzz", []string{}},
		}
		for _, tc := range tests {
			got, err := s.List(ctx, tc.prefix)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%s: List(%q) = %q, %v; want %q, nil", tc.name, tc.prefix, got, err, tc.want)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for range 2 {
			if _, err := s.Put(ctx, "hooks/w1", map[string]string{"secret": secretValue}); err != nil {
				t.Fatalf("Put() error = %v", err)
			}
		}
		if _, err := s.Put(ctx, "hooks/w2", map[string]string{"secret": "other"}); err != nil {
			t.Fatalf("Put() error = %v", err)
		}
		if err := s.Delete(ctx, "hooks/w1"); err != nil {
			t.Fatalf("Delete() = %v", err)
		}
		if _, err := s.Get(ctx, "hooks/w1"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("Get(deleted) error = %v; want ErrNotFound", err)
		}
		for _, v := range []int{1, 2} {
			if _, err := s.GetVersion(ctx, "hooks/w1", v); !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("GetVersion(deleted, %d) error = %v; want ErrNotFound", v, err)
			}
		}
		if got, err := s.List(ctx, "hooks"); err != nil || !slices.Equal(got, []string{"w2"}) {
			t.Errorf("List(hooks) = %q, %v; want [w2]", got, err)
		}
		if got, err := s.Get(ctx, "hooks/w2"); err != nil || got.Data["secret"] != "other" {
			t.Errorf("Get(sibling) = %v, %v; want untouched", got.Data, err)
		}
		if v, err := s.Put(ctx, "hooks/w1", map[string]string{"secret": "new"}); err != nil || v != 1 {
			t.Errorf("Put(after delete) = %d, %v; want 1, nil", v, err)
		}
	})

	t.Run("InvalidPath", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		bad := []struct{ name, path string }{
			{"empty", ""},
			{"leading slash", "/a"},
			{"trailing slash", "a/"},
			{"double slash", "a//b"},
			{"dotdot segment", "a/../b"},
			{"dotdot", ".."},
			{"dotdot inside", "a..b"},
			{"dot segment", "a/./b"},
			{"space", "a b"},
			{"unicode", "a/é"},
			{"query", "a?version=1"},
			{"percent", "a%2fb"},
			{"backslash", `a\b`},
			{"newline", "a\nb"},
			{"too long", strings.Repeat("a", secrets.MaxPathLen+1)},
		}
		for _, tc := range bad {
			if _, err := s.Put(ctx, tc.path, map[string]string{"k": secretValue}); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("%s: Put(%q) error = %v; want ErrInvalidPath", tc.name, tc.path, err)
			} else if strings.Contains(err.Error(), secretValue) {
				t.Errorf("%s: Put() error %q leaks the value", tc.name, err)
			}
			if _, err := s.Get(ctx, tc.path); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("%s: Get(%q) error = %v; want ErrInvalidPath", tc.name, tc.path, err)
			}
			if _, err := s.GetVersion(ctx, tc.path, 1); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("%s: GetVersion(%q) error = %v; want ErrInvalidPath", tc.name, tc.path, err)
			}
			if err := s.Delete(ctx, tc.path); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("%s: Delete(%q) error = %v; want ErrInvalidPath", tc.name, tc.path, err)
			}
			if tc.path != "" && tc.path != "a/" {
				if _, err := s.List(ctx, tc.path); !errors.Is(err, secrets.ErrInvalidPath) {
					t.Errorf("%s: List(%q) error = %v; want ErrInvalidPath", tc.name, tc.path, err)
				}
			}
		}
		if _, err := s.List(ctx, "/"); !errors.Is(err, secrets.ErrInvalidPath) {
			t.Errorf(`List("/") error = %v; want ErrInvalidPath`, err)
		}
		long := strings.Repeat("a/", secrets.MaxPathLen/2-1) + "bb"
		if _, err := s.Put(ctx, long, map[string]string{"k": "v"}); err != nil {
			t.Errorf("Put(%d-character path) error = %v; want nil", len(long), err)
		}
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		raw := make([]byte, 256)
		for i := range raw {
			raw[i] = byte(i)
		}
		want := map[string]string{
			"unicode":   "héllo wörld ✓ 🔐 日本語",
			"base64":    base64.StdEncoding.EncodeToString(raw),
			"base64url": base64.RawURLEncoding.EncodeToString(raw),
			"empty":     "",
			"json":      `{"a":"b","c":[1,2]} \"quoted\" \\ back`,
			"pem":       "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n",
			"controls":  "tab\tcr\rnul-free\x01\x7f",
			"ключ":      "значение",
			"big":       strings.Repeat("x", 64<<10),
		}
		if _, err := s.Put(ctx, "rt/v", want); err != nil {
			t.Fatalf("Put() error = %v", err)
		}
		got, err := s.Get(ctx, "rt/v")
		if err != nil {
			t.Fatalf("Get() error = %v", err)
		}
		for k, w := range want {
			if got.Data[k] != w {
				t.Errorf("Get().Data[%q] = %.40q; want %.40q", k, got.Data[k], w)
			}
		}
		if len(got.Data) != len(want) {
			t.Errorf("Get() has %d keys; want %d", len(got.Data), len(want))
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const n = 20
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			versions []int
			errs     []error
		)
		for i := range n {
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				v, err := s.Put(ctx, "race/one", map[string]string{"i": string(rune('a' + i))})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				versions = append(versions, v)
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent Put() errors: %v", errs)
		}
		slices.Sort(versions)
		want := make([]int, n)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(versions, want) {
			t.Errorf("concurrent Put() versions = %v; want %v", versions, want)
		}
		if got, err := s.Get(ctx, "race/one"); err != nil || got.Version != n {
			t.Errorf("Get() after concurrent Puts = v%d, %v; want v%d", got.Version, err, n)
		}
	})
}
