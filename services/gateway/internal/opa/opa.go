// Package opa evaluates the gateway's authorisation policy with the embedded
// OPA engine. The query is prepared once per policy version; a new version
// (from a watched directory) replaces it atomically, and a version that
// fails to compile never replaces a working one.
package opa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/policies"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Input is what the policy decides on.
type Input struct {
	Method         string
	Path           string
	Scopes         []string // sorted
	Subject        string
	OrganizationID string
	Actors         []string
}

// Decision is the policy's answer.
type Decision struct {
	Allow  bool
	Reason string
}

// ErrEvaluation reports that the policy could not produce a decision; the
// caller must deny (the gateway answers 503).
var ErrEvaluation = errors.New("policy evaluation failed")

// Engine holds the current prepared policy and a bounded decision cache.
type Engine struct {
	current   atomic.Pointer[version]
	cacheSize int
	logger    *slog.Logger
}

// version is one prepared policy with its own decision cache, so a reload
// drops every cached decision at once.
type version struct {
	query rego.PreparedEvalQuery

	mu    sync.RWMutex
	cache map[string]Decision
}

// Load compiles authz.rego and data/scopes.json from fsys.
func (e *Engine) Load(ctx context.Context, fsys fs.FS) error {
	module, err := fs.ReadFile(fsys, policies.PolicyPath)
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	scopes, err := fs.ReadFile(fsys, policies.ScopesPath)
	if err != nil {
		return fmt.Errorf("read scopes: %w", err)
	}
	var table map[string][]string
	if err := json.Unmarshal(scopes, &table); err != nil {
		return fmt.Errorf("%s: %w", policies.ScopesPath, err)
	}
	var data map[string]any
	if err := json.NewDecoder(bytes.NewReader(scopes)).Decode(&data); err != nil {
		return fmt.Errorf("%s: %w", policies.ScopesPath, err)
	}
	store := inmem.NewFromObjectWithOpts(map[string]any{"scopes": data}, inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(policies.Query),
		rego.Module(policies.PolicyPath, string(module)),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("prepare policy: %w", err)
	}
	v := &version{query: pq, cache: make(map[string]Decision)}
	// A policy that compiles but cannot decide (e.g. a wrong rule name) is
	// as broken as one that does not compile.
	if _, err := v.eval(ctx, Input{Method: "GET", Path: "/"}); err != nil {
		return fmt.Errorf("policy smoke test: %w", err)
	}
	e.current.Store(v)
	return nil
}

// New returns an engine loaded from fsys (policies.FS by default).
func New(ctx context.Context, fsys fs.FS, cacheSize int, logger *slog.Logger) (*Engine, error) {
	if fsys == nil {
		fsys = policies.FS
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cacheSize: cacheSize, logger: logger}
	if err := e.Load(ctx, fsys); err != nil {
		return nil, err
	}
	return e, nil
}

// Loaded reports whether a policy is in place.
func (e *Engine) Loaded() bool { return e.current.Load() != nil }

// Decide evaluates the policy for in. The decision is a pure function of
// the input, so the whole input is the cache key (cacheSize 0 disables it).
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	v := e.current.Load()
	if v == nil {
		return Decision{}, fmt.Errorf("%w: no policy loaded", ErrEvaluation)
	}
	if e.cacheSize <= 0 {
		return v.eval(ctx, in)
	}
	kp := keyPool.Get().(*[]byte)
	key := appendKey((*kp)[:0], in)
	v.mu.RLock()
	d, ok := v.cache[string(key)]
	v.mu.RUnlock()
	if ok {
		*kp = key
		keyPool.Put(kp)
		return d, nil
	}
	d, err := v.eval(ctx, in)
	if err == nil {
		v.mu.Lock()
		if len(v.cache) >= e.cacheSize {
			clear(v.cache) // crude but bounded; a full cache is rare
		}
		v.cache[string(key)] = d
		v.mu.Unlock()
	}
	*kp = key
	keyPool.Put(kp)
	return d, err
}

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func appendKey(b []byte, in Input) []byte {
	b = append(b, in.Method...)
	b = append(b, 0)
	b = append(b, in.Path...)
	b = append(b, 0)
	b = append(b, in.Subject...)
	b = append(b, 0)
	b = append(b, in.OrganizationID...)
	for _, s := range in.Scopes {
		b = append(b, 0, 's')
		b = append(b, s...)
	}
	for _, a := range in.Actors {
		b = append(b, 0, 'a')
		b = append(b, a...)
	}
	return b
}

var (
	keyMethod  = ast.StringTerm("method")
	keyPath    = ast.StringTerm("path")
	keyScopes  = ast.StringTerm("scopes")
	keySubject = ast.StringTerm("subject")
	keyOrg     = ast.StringTerm("organization_id")
	keyActors  = ast.StringTerm("actors")
	termAllow  = ast.StringTerm("allow")
	termReason = ast.StringTerm("reason")
)

func stringArray(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func (v *version) eval(ctx context.Context, in Input) (Decision, error) {
	// Building the AST input directly skips OPA's reflection-based
	// conversion of Go values.
	input := ast.NewObject(
		ast.Item(keyMethod, ast.StringTerm(in.Method)),
		ast.Item(keyPath, ast.StringTerm(in.Path)),
		ast.Item(keyScopes, stringArray(in.Scopes)),
		ast.Item(keySubject, ast.StringTerm(in.Subject)),
		ast.Item(keyOrg, ast.StringTerm(in.OrganizationID)),
		ast.Item(keyActors, stringArray(in.Actors)),
	)
	rs, err := v.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("%w: %d results", ErrEvaluation, len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("%w: decision is %T, want object", ErrEvaluation, rs[0].Expressions[0].Value)
	}
	allow, ok1 := m["allow"].(bool)
	reason, ok2 := m["reason"].(string)
	if !ok1 || !ok2 {
		return Decision{}, fmt.Errorf("%w: decision lacks allow/reason", ErrEvaluation)
	}
	return Decision{Allow: allow, Reason: reason}, nil
}

// Watch reloads the policy from dir whenever authz.rego or
// data/scopes.json changes (mtime or size, polled every interval) until ctx
// ends. A broken new version is logged and the old one kept.
func (e *Engine) Watch(ctx context.Context, dir string, interval time.Duration) {
	// No initial stamp: the first poll reloads once, so a change made
	// between the initial load and this call is not missed.
	var last []int64
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := stamp(dir)
		if last != nil && slices.Equal(now, last) {
			continue
		}
		first := last == nil
		last = now
		if err := e.Load(ctx, os.DirFS(dir)); err != nil {
			e.logger.Error("policy reload failed; keeping the previous policy", "dir", dir, "err", err)
			continue
		}
		if !first {
			e.logger.Info("policy reloaded", "dir", dir)
		}
	}
}

func stamp(dir string) []int64 {
	out := make([]int64, 0, 4)
	for _, name := range []string{policies.PolicyPath, policies.ScopesPath} {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			out = append(out, -1, -1)
			continue
		}
		out = append(out, fi.ModTime().UnixNano(), fi.Size())
	}
	return out
}
