package secrets_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/secretstest"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
)

func newVault(t *testing.T, cfg secrets.VaultConfig) *secrets.Vault {
	t.Helper()
	v, err := secrets.NewVault(cfg)
	if err != nil {
		t.Fatalf("NewVault() error = %v", err)
	}
	return v
}

func tokenConfig(srv *vaulttest.Server) secrets.VaultConfig {
	return secrets.VaultConfig{Address: srv.URL, Token: srv.RootToken, Timeout: 2 * time.Second}
}

func approleConfig(srv *vaulttest.Server) secrets.VaultConfig {
	return secrets.VaultConfig{Address: srv.URL, RoleID: srv.RoleID, SecretID: srv.SecretID, Timeout: 2 * time.Second}
}

func TestVaultToken(t *testing.T) {
	t.Parallel()
	secretstest.Run(t, func(t *testing.T) secrets.Store {
		// MaxVersions 30 so that the 20 concurrent Puts all stay readable.
		return newVault(t, tokenConfig(vaulttest.StartWithOptions(t, vaulttest.Options{MaxVersions: 30})))
	})
}

func TestVaultAppRole(t *testing.T) {
	t.Parallel()
	secretstest.Run(t, func(t *testing.T) secrets.Store {
		// A non-default mount and a nested prefix, over AppRole.
		srv := vaulttest.StartWithOptions(t, vaulttest.Options{Mount: "kv", MaxVersions: 30})
		cfg := approleConfig(srv)
		cfg.Mount, cfg.PathPrefix = "kv", "svc/token"
		return newVault(t, cfg)
	})
}

func TestVaultWireFormat(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := vaulttest.Start(t)
	v := newVault(t, tokenConfig(srv))
	if _, err := v.Put(ctx, "token/signing-keys/k1", map[string]string{"jwk": "x"}); err != nil {
		t.Fatalf("Put() error = %v", err)
	}
	if _, err := v.GetVersion(ctx, "token/signing-keys/k1", 1); err != nil {
		t.Fatalf("GetVersion() error = %v", err)
	}
	if _, err := v.List(ctx, "token"); err != nil {
		t.Fatalf("List() error = %v", err)
	}
	if err := v.Delete(ctx, "token/signing-keys/k1"); err != nil {
		t.Fatalf("Delete() error = %v", err)
	}
	want := []string{
		"PUT /v1/secret/data/agentidp/token/signing-keys/k1",
		"GET /v1/secret/data/agentidp/token/signing-keys/k1?version=1",
		"GET /v1/secret/metadata/agentidp/token?list=true",
		"DELETE /v1/secret/metadata/agentidp/token/signing-keys/k1",
	}
	if got := srv.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q; want %q", got, want)
	}
}

// TestVaultDeletedVersions covers versions soft-deleted or destroyed by an
// operator through Vault itself: metadata without data → ErrNotFound.
func TestVaultDeletedVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := vaulttest.Start(t)
	v := newVault(t, tokenConfig(srv))
	for range 3 {
		if _, err := v.Put(ctx, "hooks/w", map[string]string{"s": "x"}); err != nil {
			t.Fatalf("Put() error = %v", err)
		}
	}
	raw := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/v1/secret/"+path, strings.NewReader(body))
		req.Header.Set("X-Vault-Token", srv.RootToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s %s = %v, %v; want 204", method, path, resp, err)
		}
		resp.Body.Close()
	}
	raw(http.MethodDelete, "data/agentidp/hooks/w", "")                  // soft-delete latest (3)
	raw(http.MethodPost, "destroy/agentidp/hooks/w", `{"versions":[1]}`) // destroy 1
	if _, err := v.Get(ctx, "hooks/w"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("Get(latest soft-deleted) error = %v; want ErrNotFound", err)
	}
	for _, n := range []int{1, 3} {
		if _, err := v.GetVersion(ctx, "hooks/w", n); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("GetVersion(%d) error = %v; want ErrNotFound", n, err)
		}
	}
	if got, err := v.GetVersion(ctx, "hooks/w", 2); err != nil || got.Version != 2 {
		t.Errorf("GetVersion(2) = v%d, %v; want v2", got.Version, err)
	}
}

func TestVaultMaxVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := newVault(t, tokenConfig(vaulttest.StartWithOptions(t, vaulttest.Options{MaxVersions: 2})))
	for range 3 {
		if _, err := v.Put(ctx, "k", map[string]string{"s": "x"}); err != nil {
			t.Fatalf("Put() error = %v", err)
		}
	}
	if _, err := v.GetVersion(ctx, "k", 1); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("GetVersion(pruned) error = %v; want ErrNotFound", err)
	}
}

func TestVaultSealed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		cfg  func(*vaulttest.Server) secrets.VaultConfig
	}{{"token", tokenConfig}, {"approle", approleConfig}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := vaulttest.Start(t)
			v := newVault(t, mode.cfg(srv))
			if _, err := v.Put(ctx, "a", map[string]string{"k": "v"}); err != nil {
				t.Fatalf("Put() error = %v", err)
			}
			srv.SetSealed(true)
			checkAll(t, v, secrets.ErrUnavailable, "Vault is sealed")
			srv.SetSealed(false)
			if _, err := v.Get(ctx, "a"); err != nil {
				t.Errorf("Get() after unseal error = %v", err)
			}
			if err := v.Ping(ctx); err != nil {
				t.Errorf("Ping() after unseal = %v", err)
			}
		})
	}
}

// checkAll runs every Store method and wants each error to wrap want.
func checkAll(t *testing.T, v *secrets.Vault, want error, mention string) {
	t.Helper()
	ctx := context.Background()
	errs := map[string]error{"Ping": v.Ping(ctx)}
	_, errs["Put"] = v.Put(ctx, "a", map[string]string{"k": "v"})
	_, errs["Get"] = v.Get(ctx, "a")
	_, errs["GetVersion"] = v.GetVersion(ctx, "a", 1)
	_, errs["List"] = v.List(ctx, "")
	errs["Delete"] = v.Delete(ctx, "a")
	for name, err := range errs {
		if !errors.Is(err, want) {
			t.Errorf("%s() error = %v; want %v", name, err, want)
		} else if mention != "" && name != "Ping" && !strings.Contains(err.Error(), mention) {
			t.Errorf("%s() error = %q; want it to mention %q", name, err, mention)
		}
	}
}

func TestVaultDown(t *testing.T) {
	t.Parallel()
	t.Run("unavailable switch", func(t *testing.T) {
		t.Parallel()
		srv := vaulttest.Start(t)
		v := newVault(t, tokenConfig(srv))
		srv.SetUnavailable(true)
		checkAll(t, v, secrets.ErrUnavailable, "")
		srv.SetUnavailable(false)
		if err := v.Ping(context.Background()); err != nil {
			t.Errorf("Ping() after recovery = %v", err)
		}
	})
	t.Run("server closed", func(t *testing.T) {
		t.Parallel()
		srv := vaulttest.Start(t)
		v := newVault(t, tokenConfig(srv))
		srv.Close()
		checkAll(t, v, secrets.ErrUnavailable, "")
	})
	t.Run("approle login while closed", func(t *testing.T) {
		t.Parallel()
		srv := vaulttest.Start(t)
		v := newVault(t, approleConfig(srv))
		srv.Close()
		checkAll(t, v, secrets.ErrUnavailable, "")
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		srv := vaulttest.Start(t)
		cfg := tokenConfig(srv)
		cfg.Timeout = time.Nanosecond
		v := newVault(t, cfg)
		if _, err := v.Get(context.Background(), "a"); !errors.Is(err, secrets.ErrUnavailable) {
			t.Errorf("Get() with 1ns timeout error = %v; want ErrUnavailable", err)
		}
	})
}

func TestVaultBadCredentials(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	tests := []struct {
		name   string
		cfg    secrets.VaultConfig
		secret string
	}{
		{"wrong token", secrets.VaultConfig{Address: srv.URL, Token: "hvs.wrong-token-XYZ123"}, "hvs.wrong-token-XYZ123"},
		{"wrong secret id", secrets.VaultConfig{Address: srv.URL, RoleID: srv.RoleID, SecretID: "wrong-secret-id-ABC987"}, "wrong-secret-id-ABC987"},
		{"wrong role id", secrets.VaultConfig{Address: srv.URL, RoleID: "nope-role", SecretID: srv.SecretID}, srv.SecretID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVault(t, tc.cfg)
			ctx := context.Background()
			_, errPut := v.Put(ctx, "a", map[string]string{"k": "value-XYZ"})
			_, errGet := v.Get(ctx, "a")
			errList := func() error { _, err := v.List(ctx, ""); return err }()
			for name, err := range map[string]error{"Put": errPut, "Get": errGet, "List": errList} {
				if !errors.Is(err, secrets.ErrPermissionDenied) {
					t.Errorf("%s() error = %v; want ErrPermissionDenied", name, err)
					continue
				}
				if msg := err.Error(); strings.Contains(msg, tc.secret) || strings.Contains(msg, "value-XYZ") {
					t.Errorf("%s() error %q leaks a credential or value", name, msg)
				}
			}
		})
	}
}

func TestVaultAppRoleRelogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := vaulttest.Start(t)
	v := newVault(t, approleConfig(srv))
	if _, err := v.Put(ctx, "a", map[string]string{"k": "v1"}); err != nil {
		t.Fatalf("Put() error = %v", err)
	}
	if got := srv.Logins(); got != 1 {
		t.Fatalf("Logins() = %d; want 1", got)
	}
	srv.RevokeTokens()
	if got, err := v.Get(ctx, "a"); err != nil || got.Data["k"] != "v1" {
		t.Fatalf("Get() after revocation = %v, %v; want a re-login and v1", got.Data, err)
	}
	if got := srv.Logins(); got != 2 {
		t.Errorf("Logins() = %d; want 2", got)
	}
}

func TestVaultAppRoleRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// 1s lease: the store logs in again after ~0.67s, before the server
	// refuses the token.
	srv := vaulttest.StartWithOptions(t, vaulttest.Options{TokenTTL: time.Second})
	v := newVault(t, approleConfig(srv))
	if _, err := v.Put(ctx, "a", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Put() error = %v", err)
	}
	time.Sleep(800 * time.Millisecond)
	if _, err := v.Get(ctx, "a"); err != nil {
		t.Fatalf("Get() error = %v", err)
	}
	if got := srv.Logins(); got != 2 {
		t.Errorf("Logins() = %d; want 2 (proactive re-login)", got)
	}
	reqs := srv.Requests()
	for _, r := range reqs {
		if strings.Contains(r, "403") {
			t.Errorf("unexpected request %q", r)
		}
	}
}

func TestNewVaultValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  secrets.VaultConfig
	}{
		{"no address", secrets.VaultConfig{Token: "t"}},
		{"bad address", secrets.VaultConfig{Address: "vault:8200", Token: "t"}},
		{"no credentials", secrets.VaultConfig{Address: "http://127.0.0.1:1"}},
		{"half approle", secrets.VaultConfig{Address: "http://127.0.0.1:1", RoleID: "r"}},
		{"bad mount", secrets.VaultConfig{Address: "http://127.0.0.1:1", Token: "t", Mount: "a/../b"}},
		{"bad prefix", secrets.VaultConfig{Address: "http://127.0.0.1:1", Token: "t", PathPrefix: "a b"}},
	}
	for _, tc := range tests {
		if _, err := secrets.NewVault(tc.cfg); err == nil {
			t.Errorf("%s: NewVault() error = nil; want an error", tc.name)
		} else if tc.cfg.Token != "" && strings.Contains(err.Error(), "=t") {
			t.Errorf("%s: NewVault() error %q mentions the token", tc.name, err)
		}
	}
}

func TestVaultCallerCancel(t *testing.T) {
	t.Parallel()
	v := newVault(t, tokenConfig(vaulttest.Start(t)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Get(ctx, "a"); !errors.Is(err, context.Canceled) || !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Get(cancelled ctx) error = %v; want context.Canceled and ErrUnavailable", err)
	}
}
