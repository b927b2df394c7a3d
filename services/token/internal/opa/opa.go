// Package opa evaluates the token service's delegation policy
// (policies/delegation.rego) with the embedded OPA engine. The query is
// prepared once, at start; each exchange is one evaluation.
package opa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

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
}

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
	p := &Delegation{query: pq}
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
func (p *Delegation) Decide(ctx context.Context, in domain.DelegationInput) (domain.PolicyDecision, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(value(in)))
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
