package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"
)

// repoRoot is the repository root (this package lives in e2e/).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds every service binary and agentidp once per test run, the
// way the images build them (CGO off, each module on its own).
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "agentidp-e2e-bin")
		if buildErr != nil {
			return
		}
		root := repoRoot(t)
		targets := map[string]string{
			"gateway":   "services/gateway/cmd/gateway",
			"token":     "services/token/cmd/token",
			"tier":      "services/tier/cmd/tier",
			"analytics": "services/analytics/cmd/analytics",
			"billing":   "services/billing/cmd/billing",
			"agentidp":  "cmd/agentidp",
		}
		for name, dir := range targets {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), ".")
			cmd.Dir = filepath.Join(root, dir)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// proc is a running binary whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs a binary with env until the test ends (SIGTERM, then kill).
func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, tail(p.output(), 6000))
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// handedOut remembers every address freeAddr has returned in this test
// process: the kernel may offer a just-closed port again, and two services
// told to listen on the same address would make one fail to start while
// the other answers its readiness probe.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address with a currently free port that no
// other caller in this test process has been given.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		handedOut.Lock()
		fresh := !handedOut.addrs[addr]
		handedOut.addrs[addr] = true
		handedOut.Unlock()
		if fresh {
			return addr
		}
	}
	t.Fatal("no fresh loopback port after 100 tries")
	return ""
}

// waitReady polls url until it answers 200 or the process dies.
func waitReady(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready:\n%s", p.name, tail(p.output(), 6000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after 60s:\n%s", p.name, url, tail(p.output(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until the process printed something matching re and
// returns the submatches.
func waitOutput(t *testing.T, p *proc, re *regexp.Regexp) []string {
	t.Helper()
	find := func() []string {
		sc := bufio.NewScanner(bytes.NewReader([]byte(p.output())))
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				return m
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if m := find(); m != nil {
			return m
		}
		select {
		case <-p.done:
			// The process may have printed its last line just before exiting.
			if m := find(); m != nil {
				return m
			}
			t.Fatalf("%s exited without printing %s:\n%s", p.name, re, tail(p.output(), 6000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s never printed %s:\n%s", p.name, re, tail(p.output(), 6000))
	return nil
}
