package opa_test

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/policies"
	"github.com/agentidp/agentidp/services/gateway/internal/opa"
)

func copyPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{policies.PolicyPath, policies.ScopesPath} {
		b, err := fs.ReadFile(policies.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name), string(b))
	}
	return dir
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var agentsList = opa.Input{Method: "GET", Path: "/api/v1/agents", Scopes: []string{"agents:read"}, Subject: "a", OrganizationID: "o"}

func decide(t *testing.T, e *opa.Engine, in opa.Input) opa.Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide(%+v): %v", in, err)
	}
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmbeddedPolicy(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 16} {
		e, err := opa.New(context.Background(), nil, size, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ { // repeated: the cache must give the same answers
			if d := decide(t, e, agentsList); !d.Allow {
				t.Errorf("cache %d: Got(%+v) = %+v; want allow", size, agentsList, d)
			}
			in := agentsList
			in.Method = "POST"
			if d := decide(t, e, in); d.Allow || d.Reason != "missing scope agents:write" {
				t.Errorf("cache %d: Got(%+v) = %+v; want deny missing agents:write", size, in, d)
			}
			in.Path = "/api/v1/unknown"
			if d := decide(t, e, in); d.Allow || d.Reason != "no policy for route" {
				t.Errorf("cache %d: Got(%+v) = %+v; want deny no policy", size, in, d)
			}
		}
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t)
	e, err := opa.New(context.Background(), os.DirFS(dir), 64, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); e.Watch(ctx, dir, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	if d := decide(t, e, agentsList); !d.Allow {
		t.Fatalf("Got(%+v) = %+v; want allow before change", agentsList, d)
	}
	// The list now needs admin:orgs.
	write(t, filepath.Join(dir, policies.ScopesPath), `{"GET /api/v1/agents": ["admin:orgs"]}`)
	waitFor(t, "changed scopes.json to apply", func() bool { return !decide(t, e, agentsList).Allow })
	if d := decide(t, e, agentsList); d.Reason != "missing scope admin:orgs" {
		t.Errorf("Got(%+v) = %+v; want reason missing scope admin:orgs", agentsList, d)
	}

	// A broken policy keeps the previous one.
	write(t, filepath.Join(dir, policies.PolicyPath), "package agentidp.authz\n\ndecision := {{{ broken")
	time.Sleep(200 * time.Millisecond)
	if d := decide(t, e, agentsList); d.Allow || d.Reason != "missing scope admin:orgs" {
		t.Errorf("after broken rego: Got(%+v) = %+v; want previous policy's deny", agentsList, d)
	}
	write(t, filepath.Join(dir, policies.ScopesPath), `{"GET /api/v1/agents": `)
	time.Sleep(200 * time.Millisecond)
	if d := decide(t, e, agentsList); d.Allow || d.Reason != "missing scope admin:orgs" {
		t.Errorf("after broken json: Got(%+v) = %+v; want previous policy's deny", agentsList, d)
	}
}

func TestLoadRejectsBrokenPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, file, content, want string }{
		{"syntax", policies.PolicyPath, "package agentidp.authz\nx := {", "prepare policy"},
		{"no decision rule", policies.PolicyPath, "package agentidp.authz\nother := 1", "smoke test"},
		{"scopes not a map", policies.ScopesPath, `["GET /x"]`, policies.ScopesPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyPolicy(t)
			write(t, filepath.Join(dir, tc.file), tc.content)
			_, err := opa.New(context.Background(), os.DirFS(dir), 0, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Got(New) err = %v; want containing %q", err, tc.want)
			}
		})
	}
}

func BenchmarkPolicyEval(b *testing.B) {
	ctx := context.Background()
	pattern := opa.Input{Method: "POST", Path: "/api/v1/agents/0195f1a2-7c1e-7000-8000-000000000001/credentials/0195f1a2-7c1e-7000-8000-000000000002/rotate",
		Scopes: []string{"agents:read", "agents:write"}, Subject: "a", OrganizationID: "o"}
	for _, bc := range []struct {
		name  string
		cache int
		in    opa.Input
	}{
		{"static/nocache", 0, agentsList},
		{"pattern/nocache", 0, pattern},
		{"static/cached", 1024, agentsList},
		{"pattern/cached", 1024, pattern},
	} {
		e, err := opa.New(ctx, nil, bc.cache, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
