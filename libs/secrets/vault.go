package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// VaultConfig says how to reach Vault's KV v2 engine.
type VaultConfig struct {
	// Address is Vault's URL, e.g. https://vault.internal:8200 (VAULT_ADDR).
	Address string
	// Token is a static Vault token (VAULT_TOKEN). When empty, RoleID and
	// SecretID are required and the store logs in with AppRole.
	Token string
	// RoleID and SecretID are the AppRole credentials (VAULT_ROLE_ID,
	// VAULT_SECRET_ID), used at auth/approle/login.
	RoleID   string
	SecretID string
	// Mount is the KV v2 mount (VAULT_MOUNT). Default "secret".
	Mount string
	// PathPrefix is prepended to every path under the mount
	// (VAULT_PATH_PREFIX). Default "agentidp".
	PathPrefix string
	// Timeout bounds each HTTP request (VAULT_TIMEOUT). Default 10s.
	Timeout time.Duration
}

const (
	defaultVaultMount   = "secret"
	defaultVaultPrefix  = "agentidp"
	defaultVaultTimeout = 10 * time.Second
	// errBodyLimit caps how much of a Vault error message is quoted.
	errBodyLimit = 200
)

// Vault is the Store backed by HashiCorp Vault KV v2. Safe for concurrent
// use. It does no network I/O until first used, so a service starts while
// Vault is still coming up (its readiness check, Ping, says so).
type Vault struct {
	client  *vault.Client // KV requests, carries the current token
	login   *vault.Client // AppRole logins, never carries a token
	mount   string
	prefix  string
	timeout time.Duration
	approle bool
	roleID  string
	secret  string

	mu        sync.Mutex
	token     string    // current token ("" until the first AppRole login)
	refreshAt time.Time // AppRole: log in again after this (zero = never)
	now       func() time.Time
}

var _ Store = (*Vault)(nil)

// NewVault returns a Vault store for cfg. It validates cfg but does not
// contact Vault.
func NewVault(cfg VaultConfig) (*Vault, error) {
	if cfg.Address == "" {
		return nil, errors.New("secrets: vault address is required")
	}
	if u, err := url.Parse(cfg.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("secrets: vault address %q: must be an http(s) URL", cfg.Address)
	}
	if cfg.Token == "" && (cfg.RoleID == "" || cfg.SecretID == "") {
		return nil, errors.New("secrets: vault needs a token, or an AppRole role_id and secret_id")
	}
	if cfg.Mount == "" {
		cfg.Mount = defaultVaultMount
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = defaultVaultPrefix
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	cfg.PathPrefix = strings.Trim(cfg.PathPrefix, "/")
	if err := ValidatePath(cfg.Mount); err != nil {
		return nil, fmt.Errorf("secrets: vault mount: %w", err)
	}
	if err := ValidatePath(cfg.PathPrefix); err != nil {
		return nil, fmt.Errorf("secrets: vault path prefix: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultVaultTimeout
	}

	vc := vault.DefaultConfig() // also reads VAULT_CACERT & co. for TLS
	if vc.Error != nil {
		return nil, fmt.Errorf("secrets: vault client config: %w", vc.Error)
	}
	vc.Address = cfg.Address
	vc.Timeout = cfg.Timeout
	// No hidden retries (1-1.5 s each): a sealed or unreachable Vault is
	// reported at once as ErrUnavailable and the caller decides; retrying a
	// Put could also write two versions.
	vc.MaxRetries = 0
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("secrets: vault client: %w", err)
	}
	client.ClearToken() // NewClient picks up VAULT_TOKEN from the process; cfg decides
	login, err := client.Clone()
	if err != nil {
		return nil, fmt.Errorf("secrets: vault client: %w", err)
	}
	login.ClearToken()
	v := &Vault{
		client:  client,
		login:   login,
		mount:   cfg.Mount,
		prefix:  cfg.PathPrefix,
		timeout: cfg.Timeout,
		approle: cfg.Token == "",
		roleID:  cfg.RoleID,
		secret:  cfg.SecretID,
		now:     time.Now,
	}
	if !v.approle {
		v.token = cfg.Token
		client.SetToken(cfg.Token)
	}
	return v, nil
}

func (v *Vault) dataPath(path string) string { return v.mount + "/data/" + v.prefix + "/" + path }

func (v *Vault) metadataPath(path string) string {
	if path == "" {
		return v.mount + "/metadata/" + v.prefix
	}
	return v.mount + "/metadata/" + v.prefix + "/" + path
}

// currentToken returns the token to use, logging in with AppRole first when
// there is none yet or it is due for renewal.
func (v *Vault) currentToken(ctx context.Context) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.approle || (v.token != "" && (v.refreshAt.IsZero() || v.now().Before(v.refreshAt))) {
		return v.token, nil
	}
	return v.loginLocked(ctx)
}

// relogin replaces the token after a 403, unless another request already
// did so since failed was used. It reports whether the caller should retry.
func (v *Vault) relogin(ctx context.Context, failed string) (bool, error) {
	if !v.approle {
		return false, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.token != failed {
		return true, nil
	}
	if _, err := v.loginLocked(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// loginLocked performs the AppRole login; v.mu is held.
func (v *Vault) loginLocked(ctx context.Context) (string, error) {
	body, err := json.Marshal(map[string]string{"role_id": v.roleID, "secret_id": v.secret})
	if err != nil {
		return "", errors.New("secrets: vault approle login: encode request")
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	resp, err := v.login.Logical().WriteRawWithContext(ctx, "auth/approle/login", body)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		err = mapVaultError("approle login", err)
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrPermissionDenied) {
			// 400 "invalid role or secret ID" and the like.
			err = fmt.Errorf("%w: %w", ErrPermissionDenied, err)
		}
		return "", err
	}
	var out struct {
		Auth *struct {
			ClientToken   string `json:"client_token"`
			LeaseDuration int    `json:"lease_duration"`
		} `json:"auth"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Auth == nil || out.Auth.ClientToken == "" {
		return "", errors.New("secrets: vault approle login: response has no client token")
	}
	v.token = out.Auth.ClientToken
	v.client.SetToken(v.token)
	v.refreshAt = time.Time{}
	if ttl := time.Duration(out.Auth.LeaseDuration) * time.Second; ttl > 0 {
		// Log in again at two thirds of the lease, well before it expires;
		// a 403 in between (revoked token) also triggers a login.
		v.refreshAt = v.now().Add(ttl * 2 / 3)
	}
	return v.token, nil
}

// do runs one request with the current token, logging in again and retrying
// once on 403 under AppRole. The returned response (non-nil when err is nil)
// must be closed by the caller.
func (v *Vault) do(ctx context.Context, op string, call func(ctx context.Context, l *vault.Logical) (*vault.Response, error)) (*vault.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := v.currentToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("secrets: vault %s: %w", op, err)
		}
		rctx, cancel := context.WithTimeout(ctx, v.timeout)
		resp, err := call(rctx, v.client.Logical())
		if err == nil {
			// Read the body before the timeout context is cancelled.
			buf, rerr := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
			resp.Body.Close()
			cancel()
			if rerr != nil {
				return nil, fmt.Errorf("%w: vault %s: read response: %w", ErrUnavailable, op, rerr)
			}
			resp.Body = io.NopCloser(strings.NewReader(string(buf)))
			return resp, nil
		}
		if resp != nil {
			resp.Body.Close()
		}
		cancel()
		var re *vault.ResponseError
		if attempt == 0 && errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			retry, lerr := v.relogin(ctx, tok)
			if lerr != nil {
				return nil, fmt.Errorf("secrets: vault %s: %w", op, lerr)
			}
			if retry {
				continue
			}
		}
		return nil, mapVaultError(op, err)
	}
}

// mapVaultError turns a client error into one wrapping the package's
// sentinels. Vault's own error strings are quoted (they name paths and
// reasons, never values); the request URL and headers are not.
func mapVaultError(op string, err error) error {
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		// Connection refused, reset, DNS, TLS, timeout: Vault is unreachable.
		// Context errors stay matchable (errors.Is(err, context.Canceled)).
		for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
			if errors.Is(err, ctxErr) {
				return fmt.Errorf("%w: vault %s: %w", ErrUnavailable, op, ctxErr)
			}
		}
		return fmt.Errorf("%w: vault %s: %s", ErrUnavailable, op, transportReason(err))
	}
	reason := truncate(strings.Join(re.Errors, "; "), errBodyLimit)
	switch {
	case re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("secrets: vault %s: %w", op, ErrNotFound)
	case re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: vault %s: status %d: %s", ErrPermissionDenied, op, re.StatusCode, reason)
	case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
		return fmt.Errorf("%w: vault %s: status %d: %s", ErrUnavailable, op, re.StatusCode, reason)
	default:
		return fmt.Errorf("secrets: vault %s: status %d: %s", op, re.StatusCode, reason)
	}
}

// transportReason describes a transport error by its cause only (the
// url.Error's URL and method are dropped; they carry no secret but add noise).
func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// kvMetadata is the metadata object of a KV v2 version.
type kvMetadata struct {
	CreatedTime  string `json:"created_time"`
	DeletionTime string `json:"deletion_time"`
	Destroyed    bool   `json:"destroyed"`
	Version      int    `json:"version"`
}

// Put implements Store: POST <mount>/data/<prefix>/<path> {"data": {...}}.
func (v *Vault) Put(ctx context.Context, path string, data map[string]string) (int, error) {
	if err := ValidatePath(path); err != nil {
		return 0, err
	}
	if data == nil {
		data = map[string]string{}
	}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return 0, fmt.Errorf("secrets: vault put %q: encode data", path)
	}
	op := "put " + strconv.Quote(path)
	resp, err := v.do(ctx, op, func(ctx context.Context, l *vault.Logical) (*vault.Response, error) {
		return l.WriteRawWithContext(ctx, v.dataPath(path), body)
	})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Data *kvMetadata `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Data == nil || out.Data.Version < 1 {
		return 0, fmt.Errorf("secrets: vault %s: response has no version", op)
	}
	return out.Data.Version, nil
}

// Get implements Store.
func (v *Vault) Get(ctx context.Context, path string) (Secret, error) {
	if err := ValidatePath(path); err != nil {
		return Secret{}, err
	}
	return v.read(ctx, path, 0)
}

// GetVersion implements Store: GET <mount>/data/<prefix>/<path>?version=N.
func (v *Vault) GetVersion(ctx context.Context, path string, version int) (Secret, error) {
	if err := ValidatePath(path); err != nil {
		return Secret{}, err
	}
	if version < 1 { // version=0 would mean "latest" to Vault
		return Secret{}, fmt.Errorf("secrets: vault get %q version %d: %w", path, version, ErrNotFound)
	}
	return v.read(ctx, path, version)
}

func (v *Vault) read(ctx context.Context, path string, version int) (Secret, error) {
	op := "get " + strconv.Quote(path)
	var params map[string][]string
	if version > 0 {
		op += " version " + strconv.Itoa(version)
		params = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	resp, err := v.do(ctx, op, func(ctx context.Context, l *vault.Logical) (*vault.Response, error) {
		return l.ReadRawWithDataWithContext(ctx, v.dataPath(path), params)
	})
	if err != nil {
		return Secret{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Data *struct {
			Data     map[string]json.RawMessage `json:"data"`
			Metadata kvMetadata                 `json:"metadata"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Data == nil {
		return Secret{}, fmt.Errorf("secrets: vault %s: malformed response", op)
	}
	md := out.Data.Metadata
	if out.Data.Data == nil || md.DeletionTime != "" || md.Destroyed {
		// Soft-deleted or destroyed version: metadata without data.
		return Secret{}, fmt.Errorf("secrets: vault %s: %w", op, ErrNotFound)
	}
	if version > 0 && md.Version != version {
		return Secret{}, fmt.Errorf("secrets: vault %s: response is version %d", op, md.Version)
	}
	s := Secret{Data: make(map[string]string, len(out.Data.Data)), Version: md.Version}
	for k, raw := range out.Data.Data {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			// Written by another tool as a number, object...: keep its JSON.
			str = string(raw)
		}
		s.Data[k] = str
	}
	if md.CreatedTime != "" {
		t, err := time.Parse(time.RFC3339Nano, md.CreatedTime)
		if err != nil {
			return Secret{}, fmt.Errorf("secrets: vault %s: malformed created_time", op)
		}
		s.CreatedAt = t.UTC()
	}
	return s, nil
}

// List implements Store: LIST <mount>/metadata/<prefix>/<prefix arg>/.
func (v *Vault) List(ctx context.Context, prefix string) ([]string, error) {
	base, err := listBase(prefix)
	if err != nil {
		return nil, err
	}
	op := "list " + strconv.Quote(prefix)
	resp, err := v.do(ctx, op, func(ctx context.Context, l *vault.Logical) (*vault.Response, error) {
		// GET ?list=true is the documented equivalent of the LIST verb.
		return l.ReadRawWithDataWithContext(ctx, v.metadataPath(base), map[string][]string{"list": {"true"}})
	})
	if errors.Is(err, ErrNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data *struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("secrets: vault %s: malformed response", op)
	}
	keys := []string{}
	if out.Data != nil {
		keys = append(keys, out.Data.Keys...)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements Store: DELETE <mount>/metadata/<prefix>/<path> removes
// every version and the metadata.
func (v *Vault) Delete(ctx context.Context, path string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	resp, err := v.do(ctx, "delete "+strconv.Quote(path), func(ctx context.Context, l *vault.Logical) (*vault.Response, error) {
		return l.DeleteRawWithContext(ctx, v.metadataPath(path))
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Ping implements Store: sys/health says initialised and unsealed (200, or
// 429 for a standby), and under AppRole a login has succeeded.
func (v *Vault) Ping(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	resp, err := v.login.Logical().ReadRawWithDataWithContext(rctx, "sys/health", nil)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		err = mapVaultError("health", err)
		if !errors.Is(err, ErrUnavailable) { // 501 not initialised etc.
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if _, err := v.currentToken(ctx); err != nil {
		return fmt.Errorf("secrets: vault ping: %w", err)
	}
	return nil
}
