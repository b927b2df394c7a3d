#!/bin/sh
# Copy the OPA policy and scope map into the chart (a chart cannot read files
# outside its directory). deploy/helm/charttest fails when the copies drift.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$root/deploy/helm/agentidp/files/data"
cp "$root/policies/authz.rego" "$root/deploy/helm/agentidp/files/authz.rego"
cp "$root/policies/data/scopes.json" "$root/deploy/helm/agentidp/files/data/scopes.json"
echo "policy files copied into deploy/helm/agentidp/files/"
