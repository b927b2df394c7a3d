// Package policies holds the gateway's authorisation policy (OPA Rego) and
// the route → scope table it reads, embedded so the gateway binary carries
// a known-good policy even when no policy directory is configured.
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

// FS holds authz.rego and data/scopes.json.
//
//go:embed authz.rego data/scopes.json
var FS embed.FS
