package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// syncBuffer is an io.Writer the test reads while runDev writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// devRun is one `agentidp dev` running in the test process.
type devRun struct {
	out, errOut *syncBuffer
	done        chan error
	cancel      context.CancelFunc
	err         error
	finished    bool
}

// startDev runs `agentidp dev` with args until the test ends.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	go func() { d.done <- runDev(ctx, args, d.out, d.errOut) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop cancels the run and returns what runDev returned.
func (d *devRun) stop(t *testing.T) error {
	t.Helper()
	d.cancel()
	if !d.finished {
		select {
		case d.err = <-d.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("agentidp dev did not stop; output:\n%s", d.out)
		}
		d.finished = true
	}
	return d.err
}

// waitRunning waits for the start-up line, failing the test if runDev
// returns first.
func (d *devRun) waitRunning(t *testing.T) {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for !strings.Contains(d.out.String(), "AgentIdP is running") {
		select {
		case err := <-d.done:
			d.err, d.finished = err, true
			t.Fatalf("agentidp dev ended before it was running: %v\nstdout:\n%s\nstderr:\n%s", err, d.out, d.errOut)
		case <-deadline:
			t.Fatalf("agentidp dev not running; stdout:\n%s", d.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait returns runDev's result when it ends by itself (a start-up error).
func (d *devRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case d.err = <-d.done:
		d.finished = true
		return d.err
	case <-time.After(90 * time.Second):
		t.Fatalf("agentidp dev did not end; stdout:\n%s", d.out)
		return nil
	}
}

func loopbackArgs(dir string, extra ...string) []string {
	return append([]string{"--data", dir, "--addr", "127.0.0.1:0", "--internal-addr", "127.0.0.1:0", "--log-level", "error"}, extra...)
}

// TestAttackDevNATSListenerRequiresAuth: `agentidp dev --nats-listen` used
// to open NATS to whoever reached the port, who could read every event and
// purge a revocation from the KV mirror. Now the listener wants the
// generated credentials, and an unauthenticated non-loopback listener is
// refused.
func TestAttackDevNATSListenerRequiresAuth(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, loopbackArgs(dir, "--nats-listen", ":0")...)
	d.waitRunning(t)
	m := regexp.MustCompile(`NATS listening on (\S+) \(user and password in (\S+)\)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("no NATS listener line in:\n%s", d.out)
	}
	url, credsPath := m[1], m[2]
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Errorf("listener %s: want loopback when no host is given", url)
	}
	if credsPath != filepath.Join(dir, natsCredentialsFile) {
		t.Errorf("credentials at %s, want %s", credsPath, filepath.Join(dir, natsCredentialsFile))
	}
	fi, err := os.Stat(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}

	// Without credentials, or with a wrong password: refused at connect,
	// so neither the stream nor the revocations bucket can be touched.
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: %v, want an authorization violation", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo("agentidp-dev", "wrong"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}

	// With the generated credentials: the stream and the bucket are there.
	var creds devNATSCredentials
	b, err := os.ReadFile(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.UserInfo(creds.User, creds.Password), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("connect with the generated credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "AGENTIDP"); err != nil {
		t.Errorf("stream AGENTIDP with credentials: %v", err)
	}
	if _, err := js.KeyValue(ctx, "agentidp_revocations"); err != nil {
		t.Errorf("bucket agentidp_revocations with credentials: %v", err)
	}
	nc.Close()
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// A second start keeps the same credentials.
	b2, err := os.ReadFile(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	d2 := startDev(t, loopbackArgs(dir, "--nats-listen", "127.0.0.1:0")...)
	d2.waitRunning(t)
	if b3, _ := os.ReadFile(credsPath); !bytes.Equal(b2, b3) {
		t.Error("credentials changed on restart")
	}
	_ = d2.stop(t)

	// Non-loopback without authentication: refused before anything starts.
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "example.com:4222", "192.0.2.1:4222"} {
		fresh := t.TempDir()
		d := startDev(t, loopbackArgs(fresh, "--nats-listen", addr, "--nats-no-auth")...)
		err := d.wait(t)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--nats-listen %s --nats-no-auth: %v, want a refusal naming the loopback rule", addr, err)
		}
		if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
			t.Errorf("--nats-listen %s --nats-no-auth: refused start left %d files in the data directory", addr, len(entries))
		}
	}
}

var (
	runningRE = regexp.MustCompile(`AgentIdP is running at (\S+) `)
	clientRE  = regexp.MustCompile(`client_id:\s+(\S+)\s+client_secret:\s+(\S+)`)
)

func (d *devRun) gatewayURL(t *testing.T) string {
	t.Helper()
	m := runningRE.FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("no gateway URL in:\n%s", d.out)
	}
	return m[1]
}

// adminCredentials returns the client id and secret printed in out.
func adminCredentials(t *testing.T, out string) (id, secret string) {
	t.Helper()
	m := clientRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no credentials in:\n%s", out)
	}
	return m[1], m[2]
}

// tokenFor asks the gateway for a client_credentials token and returns
// the status code and the access token.
func tokenFor(t *testing.T, gw, id, secret, scope string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequest(http.MethodPost, gw+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.AccessToken
}

// TestBusyPortLeavesNoHalfBootstrappedData: a first start that ends on a
// busy port used to create the admin agent and print its secret first, so
// the next start said the admin existed and the secret was lost. Now every
// port is bound before anything is written.
func TestBusyPortLeavesNoHalfBootstrappedData(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, flagName := range []string{"--addr", "--internal-addr", "--nats-listen"} {
		t.Run(flagName, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := loopbackArgs(dir, "--nats-listen", "127.0.0.1:0")
			for i, a := range args {
				if a == flagName {
					args[i+1] = busy.Addr().String()
				}
			}
			d := startDev(t, args...)
			err := d.wait(t)
			if err == nil || !strings.Contains(err.Error(), busy.Addr().String()+": the address is already in use") || !strings.Contains(err.Error(), flagName+" HOST:PORT") {
				t.Fatalf("start on a busy port: %v; want an error naming the address and %s", err, flagName)
			}
			t.Logf("busy port: %v", err)
			// Linux: the error names the process holding the port (this one).
			if runtime.GOOS == "linux" && !strings.Contains(err.Error(), fmt.Sprintf("in use by process %d (", os.Getpid())) {
				t.Errorf("busy-port error %q does not name process %d", err, os.Getpid())
			}
			if mv := map[string]string{"--addr": "make run ADDR=", "--internal-addr": "make run INTERNAL_ADDR=", "--nats-listen": "make run NATS_LISTEN="}[flagName]; !strings.Contains(err.Error(), mv) {
				t.Errorf("busy-port error %q does not say how to choose another address with %s", err, mv)
			}
			if strings.Contains(d.out.String(), "client_secret") {
				t.Fatalf("a failed start printed a secret:\n%s", d.out)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a failed start wrote the data directory (stat: %v)", err)
			}

			d2 := startDev(t, loopbackArgs(dir, "--nats-listen", "127.0.0.1:0")...)
			d2.waitRunning(t)
			id, secret := adminCredentials(t, d2.out.String())
			if code, _ := tokenFor(t, d2.gatewayURL(t), id, secret, ""); code != http.StatusOK {
				t.Fatalf("token with the secret of the start after the failed one: %d", code)
			}
		})
	}
}

// TestAdminResetCredentialsRecoversLostSecret: a lost admin secret could
// only be replaced by deleting the data directory. `agentidp admin
// reset-credentials --data DIR` revokes the old credential, prints a new
// secret once and leaves an audit trail.
func TestAdminResetCredentialsRecoversLostSecret(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, loopbackArgs(dir)...)
	d.waitRunning(t)
	id, oldSecret := adminCredentials(t, d.out.String())
	if code, _ := tokenFor(t, d.gatewayURL(t), id, oldSecret, ""); code != http.StatusOK {
		t.Fatalf("token with the first secret: %d", code)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"agentidp", "admin", "reset-credentials", "--data", dir}, noEnv, &out, &out); err != nil {
		t.Fatalf("reset-credentials: %v\n%s", err, &out)
	}
	if !strings.Contains(out.String(), "revoked 1 credential(s) of agent "+id) {
		t.Errorf("reset output:\n%s\nwant one credential of %s revoked", &out, id)
	}
	newID, newSecret := adminCredentials(t, out.String())
	if newID != id || newSecret == oldSecret {
		t.Fatalf("reset gave %s/%s; want the same agent and a new secret", newID, newSecret)
	}

	d2 := startDev(t, loopbackArgs(dir)...)
	d2.waitRunning(t)
	if strings.Contains(d2.out.String(), "client_secret") {
		t.Errorf("the restart printed a secret again:\n%s", d2.out)
	}
	gw := d2.gatewayURL(t)
	if code, _ := tokenFor(t, gw, id, oldSecret, ""); code != http.StatusUnauthorized {
		t.Errorf("token with the revoked secret: %d, want 401", code)
	}
	code, tok := tokenFor(t, gw, id, newSecret, "audit:read")
	if code != http.StatusOK {
		t.Fatalf("token with the new secret: %d", code)
	}
	// The audit log records the reset: the revocation and the new credential.
	for _, action := range []string{"credential.revoked", "credential.generated"} {
		want := map[string]int{"credential.revoked": 1, "credential.generated": 2}[action] // bootstrap's and the reset's
		deadline := time.Now().Add(30 * time.Second)
		for {
			n := auditCount(t, gw, tok, id, action)
			if n == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit %s for %s: %d events, want %d", action, id, n, want)
			}
			time.Sleep(50 * time.Millisecond) // the analytics consumer catches up asynchronously
		}
	}

	// An unknown agent, and a directory without data: clear errors.
	if err := run(context.Background(), []string{"agentidp", "admin", "reset-credentials", "--data", dir, "--agent", "01234567-0000-7000-8000-000000000000"}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), "no agent") {
		t.Errorf("unknown agent: %v", err)
	}
	empty := t.TempDir()
	if err := run(context.Background(), []string{"agentidp", "admin", "reset-credentials", "--data", empty}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), "not an agentidp dev data directory") {
		t.Errorf("empty directory: %v", err)
	}
}

func noEnv(string) string { return "" }

func auditCount(t *testing.T, gw, tok, agentID, action string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gw+"/api/v1/audit?agentId="+agentID+"&action="+action, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Total int `json:"total"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/audit: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l.Total
}
