// Package policies holds the gateway's authorisation policy (OPA Rego),
// the route → scope table it reads and the token service's delegation
// policy, embedded so the binaries carry a known-good policy even when no
// policy directory is configured.
package policies

import "embed"

// Paths of the policy files inside FS (and inside an OPA_POLICY_DIR).
const (
	// PolicyPath is the Rego module (package agentidp.authz).
	PolicyPath = "authz.rego"
	// ScopesPath is the route table loaded as data.scopes.
	ScopesPath = "data/scopes.json"
)

// Query is the rule the gateway evaluates; it yields {"allow", "reason"}.
const Query = "data.agentidp.authz.decision"

// DelegationPath is the token service's delegation policy (package
// agentidp.delegation), which decides every token exchange.
const DelegationPath = "delegation.rego"

// DelegationQuery is the rule the token service evaluates for a token
// exchange; it yields {"allow", "reason"}.
const DelegationQuery = "data.agentidp.delegation.decision"

// FS holds authz.rego, data/scopes.json and delegation.rego.
//
//go:embed authz.rego data/scopes.json delegation.rego
var FS embed.FS
