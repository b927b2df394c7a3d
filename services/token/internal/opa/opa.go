// Package opa evaluates the token service's delegation policy
// (policies/delegation.rego) with the embedded OPA engine. The query is
// prepared once, at start; each exchange is one evaluation.
package opa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/agentidp/agentidp/policies"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// ErrEvaluation reports that the policy produced no decision; the caller
// must refuse the exchange.
var ErrEvaluation = errors.New("delegation policy evaluation failed")

// Delegation is the prepared delegation policy; it implements
// domain.DelegationPolicy and is safe for concurrent use.
type Delegation struct {
	query rego.PreparedEvalQuery

	// Decisions are pure functions of the input and the policy never
	// changes while the service runs, so repeated inputs (an agent
	// exchanging the same subject token again) are answered from a
	// bounded cache, emptied when full.
	mu    sync.Mutex
	cache map[string]domain.PolicyDecision
}

// decisionCacheSize bounds the decision cache.
const decisionCacheSize = 8192

var _ domain.DelegationPolicy = (*Delegation)(nil)

// NewDelegation prepares the delegation policy from fsys (policies.FS when
// nil) and checks that it decides.
func NewDelegation(ctx context.Context, fsys fs.FS) (*Delegation, error) {
	if fsys == nil {
		fsys = policies.FS
	}
	module, err := fs.ReadFile(fsys, policies.DelegationPath)
	if err != nil {
		return nil, fmt.Errorf("read delegation policy: %w", err)
	}
	pq, err := rego.New(rego.Query(policies.DelegationQuery), rego.Module(policies.DelegationPath, string(module))).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare delegation policy: %w", err)
	}
	p := &Delegation{query: pq, cache: map[string]domain.PolicyDecision{}}
	if _, err := p.Decide(ctx, domain.DelegationInput{}); err != nil {
		return nil, fmt.Errorf("delegation policy smoke test: %w", err)
	}
	return p, nil
}

func strs(v []string) *ast.Array {
	terms := make([]*ast.Term, len(v))
	for i, s := range v {
		terms[i] = ast.StringTerm(s)
	}
	return ast.NewArray(terms...)
}

// value converts the input to an AST value directly (no JSON round trip).
func value(in domain.DelegationInput) ast.Value {
	return ast.NewObject(
		ast.Item(ast.StringTerm("subject"), ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("sub"), ast.StringTerm(in.Subject.Sub)),
			ast.Item(ast.StringTerm("organization_id"), ast.StringTerm(in.Subject.OrganizationID)),
			ast.Item(ast.StringTerm("scopes"), ast.NewTerm(strs(in.Subject.Scopes))),
			ast.Item(ast.StringTerm("chain_ids"), ast.NewTerm(strs(in.Subject.ChainIDs))),
		))),
		ast.Item(ast.StringTerm("actor"), ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("sub"), ast.StringTerm(in.Actor.Sub)),
			ast.Item(ast.StringTerm("organization_id"), ast.StringTerm(in.Actor.OrganizationID)),
		))),
		ast.Item(ast.StringTerm("chain"), ast.NewTerm(strs(in.Chain))),
		ast.Item(ast.StringTerm("scopes"), ast.NewTerm(strs(in.Scopes))),
		ast.Item(ast.StringTerm("requested_scopes"), ast.NewTerm(strs(in.RequestedScopes))),
		ast.Item(ast.StringTerm("audience"), ast.NewTerm(strs(in.Audience))),
		ast.Item(ast.StringTerm("depth"), ast.IntNumberTerm(in.Depth)),
		ast.Item(ast.StringTerm("max_depth"), ast.IntNumberTerm(in.MaxDepth)),
	)
}

// Decide implements domain.DelegationPolicy.
// Decide evaluates the policy for in (or answers from the cache).
func (p *Delegation) Decide(ctx context.Context, in domain.DelegationInput) (domain.PolicyDecision, error) {
	input := value(in)
	key := input.String()
	p.mu.Lock()
	d, ok := p.cache[key]
	p.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := p.eval(ctx, input)
	if err != nil {
		return d, err
	}
	p.mu.Lock()
	if len(p.cache) >= decisionCacheSize {
		p.cache = make(map[string]domain.PolicyDecision, decisionCacheSize)
	}
	p.cache[key] = d
	p.mu.Unlock()
	return d, nil
}

func (p *Delegation) eval(ctx context.Context, input ast.Value) (domain.PolicyDecision, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return domain.PolicyDecision{}, fmt.Errorf("%w: %v", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return domain.PolicyDecision{}, fmt.Errorf("%w: %d results", ErrEvaluation, len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return domain.PolicyDecision{}, fmt.Errorf("%w: decision is %T", ErrEvaluation, rs[0].Expressions[0].Value)
	}
	allow, ok1 := m["allow"].(bool)
	reason, ok2 := m["reason"].(string)
	if !ok1 || !ok2 {
		return domain.PolicyDecision{}, fmt.Errorf("%w: malformed decision %v", ErrEvaluation, m)
	}
	return domain.PolicyDecision{Allow: allow, Reason: reason}, nil
}
