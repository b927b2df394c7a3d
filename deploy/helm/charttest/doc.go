// Package charttest renders the AgentIdP Helm chart (deploy/helm/agentidp)
// with the helm binary and checks the manifests by decoding each one
// strictly into the Kubernetes API types: an unknown or misspelt field is a
// test failure, not a silently ignored key.
//
// The helm binary is taken from $HELM or PATH. Without it the tests skip,
// unless CI=true, where they fail.
package charttest
