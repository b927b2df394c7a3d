#!/usr/bin/env bash
# gateway-overhead.sh - measure what the gateway adds to an authenticated
# read: GET /api/v1/agents?limit=1 through the gateway (Bearer token) versus
# the same request sent directly to the token service, then print both
# results and the difference (gateway minus direct) in req/s and latency.
#
# The gateway validates the access token and forwards a signed internal
# context header; a direct request must carry that header itself, so
# DIRECT_HEADER must hold the full "X-Agentidp-Context: ..." line (produced
# by a helper command for the same client/scope).
#
# Environment:
#   GATEWAY_URL    gateway base URL               (default http://127.0.0.1:8080)
#   SERVICE_URL    token service base URL         (default http://127.0.0.1:8081)
#   CLIENT_ID      client used to get the token   (required)
#   CLIENT_SECRET  its secret                     (required)
#   SCOPE          scope for the token            (default: none)
#   DIRECT_HEADER  "X-Agentidp-Context: ..."      (required)
#   CONCURRENCY    workers for both runs          (default 16)
#   DURATION       measured time per run          (default 10s)
#   WARMUP         discarded warmup per run       (default 1s)
#   OUT_DIR        keep JSON results here         (default: a temp dir, printed)
#   LOADGEN        prebuilt loadgen binary        (default: go run ./cmd/loadgen)
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GATEWAY_URL="${GATEWAY_URL:-http://127.0.0.1:8080}"
SERVICE_URL="${SERVICE_URL:-http://127.0.0.1:8081}"
CLIENT_ID="${CLIENT_ID:?set CLIENT_ID to a registered client}"
CLIENT_SECRET="${CLIENT_SECRET:?set CLIENT_SECRET}"
SCOPE="${SCOPE:-}"
DIRECT_HEADER="${DIRECT_HEADER:?set DIRECT_HEADER to the signed internal context header line}"
CONCURRENCY="${GW_CONCURRENCY:-16}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gateway-overhead.XXXXXX")}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

path="/api/v1/agents?limit=1"
common=(-c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP" -header "Accept: application/json")

echo "=== direct: $SERVICE_URL$path ==="
loadgen -url "$SERVICE_URL$path" "${common[@]}" -header "$DIRECT_HEADER" \
	-label direct -json-out "$OUT_DIR/direct.json"
echo

echo "=== via gateway: $GATEWAY_URL$path ==="
loadgen -url "$GATEWAY_URL$path" "${common[@]}" \
	-token-url "$GATEWAY_URL/oauth2/token" -client-id "$CLIENT_ID" \
	-client-secret "$CLIENT_SECRET" -scope "$SCOPE" \
	-label gateway -json-out "$OUT_DIR/gateway.json"
echo

echo "=== gateway overhead (gateway - direct) ==="
loadgen -compare "$OUT_DIR/direct.json" "$OUT_DIR/gateway.json"
echo "JSON results: $OUT_DIR"
