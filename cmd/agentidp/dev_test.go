package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
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
