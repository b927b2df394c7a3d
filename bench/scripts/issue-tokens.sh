#!/usr/bin/env bash
# issue-tokens.sh - benchmark OAuth2 client-credentials token issuance
# through the gateway at several concurrencies (closed loop, keep-alive).
#
# Each run POSTs "grant_type=client_credentials[&scope=...]" to
# $GATEWAY_URL/oauth2/token with HTTP basic auth (client ID and secret
# form-urlencoded first, as RFC 6749 2.3.1 requires) and expects 200.
#
# Environment (all optional except the credentials):
#   GATEWAY_URL    gateway base URL            (default http://127.0.0.1:8080)
#   CLIENT_ID      registered client ID        (required)
#   CLIENT_SECRET  its secret                  (required)
#   SCOPE          requested scope             (default: none)
#   DURATION       measured time per run       (default 10s)
#   WARMUP         discarded warmup per run    (default 1s)
#   CONCURRENCY    worker counts to run        (default "1 16 64")
#   OUT_DIR        keep JSON results here      (default: a temp dir, printed)
#   LOADGEN        prebuilt loadgen binary     (default: go run ./cmd/loadgen)
#
# Example:
#   CLIENT_ID=bench CLIENT_SECRET=s3cret bench/scripts/issue-tokens.sh
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GATEWAY_URL="${GATEWAY_URL:-http://127.0.0.1:8080}"
CLIENT_ID="${CLIENT_ID:?set CLIENT_ID to a registered client}"
CLIENT_SECRET="${CLIENT_SECRET:?set CLIENT_SECRET}"
SCOPE="${SCOPE:-}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
CONCURRENCY="${CONCURRENCY:-1 16 64}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/issue-tokens.XXXXXX")}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

body="grant_type=client_credentials"
if [[ -n "$SCOPE" ]]; then
	body+="&scope=$(urlencode "$SCOPE")"
fi
auth="$(urlencode "$CLIENT_ID"):$(urlencode "$CLIENT_SECRET")"

for c in $CONCURRENCY; do
	echo "=== token issuance, c=$c ==="
	loadgen -url "$GATEWAY_URL/oauth2/token" -method POST -body "$body" \
		-header "Content-Type: application/x-www-form-urlencoded" \
		-header "Accept: application/json" \
		-basic-auth "$auth" -c "$c" -d "$DURATION" -warmup "$WARMUP" \
		-label "issue-tokens-c$c" -json-out "$OUT_DIR/issue-tokens-c$c.json"
	echo
done
echo "JSON results: $OUT_DIR"
