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
#   DIRECT_HEADER  "X-Agentidp-Context: ..."      (required unless DIRECT_HEADER_CMD)
#   DIRECT_HEADER_CMD  command printing that line, run before every direct
#                  run (a signed context is valid for 60 s, so long or
#                  repeated runs need a fresh one)
#   CONCURRENCY    workers for both runs          (default 16)
#   DURATION       measured time per run          (default 10s)
#   WARMUP         discarded warmup per run       (default 1s)
#   ROUNDS         direct/gateway pairs, run alternately (default 1); with
#                  more than one, the median of the per-round p50 deltas is
#                  printed too, which is far steadier than one pair at c=1
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
DIRECT_HEADER_CMD="${DIRECT_HEADER_CMD:-}"
[[ -n "$DIRECT_HEADER_CMD" ]] || DIRECT_HEADER="${DIRECT_HEADER:?set DIRECT_HEADER (or DIRECT_HEADER_CMD) to the signed internal context header line}"
CONCURRENCY="${GW_CONCURRENCY:-16}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gateway-overhead.XXXXXX")}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

path="/api/v1/agents?limit=1"
common=(-c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP" -header "Accept: application/json")

ROUNDS="${ROUNDS:-1}"
# p50 FILE prints the p50 latency (ms) of a loadgen -json-out file.
p50() { sed -n 's/^ *"p50": \([-0-9.eE+]*\),\{0,1\}$/\1/p' "$1" | head -n 1; }
deltas=()
for round in $(seq 1 "$ROUNDS"); do
	suffix=""
	((ROUNDS > 1)) && suffix="-$round" && echo "##### round $round of $ROUNDS"
	echo "=== direct: $SERVICE_URL$path ==="
	[[ -z "$DIRECT_HEADER_CMD" ]] || DIRECT_HEADER="$(bash -c "$DIRECT_HEADER_CMD")"
	loadgen -url "$SERVICE_URL$path" "${common[@]}" -header "$DIRECT_HEADER" \
		-label direct -json-out "$OUT_DIR/direct$suffix.json"
	echo

	echo "=== via gateway: $GATEWAY_URL$path ==="
	loadgen -url "$GATEWAY_URL$path" "${common[@]}" \
		-token-url "$GATEWAY_URL/oauth2/token" -client-id "$CLIENT_ID" \
		-client-secret "$CLIENT_SECRET" -scope "$SCOPE" \
		-label gateway -json-out "$OUT_DIR/gateway$suffix.json"
	echo

	echo "=== gateway overhead (gateway - direct) ==="
	loadgen -compare "$OUT_DIR/direct$suffix.json" "$OUT_DIR/gateway$suffix.json"
	if ((ROUNDS > 1)); then
		cp "$OUT_DIR/direct$suffix.json" "$OUT_DIR/direct.json"
		cp "$OUT_DIR/gateway$suffix.json" "$OUT_DIR/gateway.json"
		deltas+=("$(awk -v d="$(p50 "$OUT_DIR/direct$suffix.json")" -v g="$(p50 "$OUT_DIR/gateway$suffix.json")" \
			'BEGIN { printf "%.3f %.3f %+.3f", d, g, g - d }')")
	fi
	echo
done
if ((ROUNDS > 1)); then
	echo "=== p50 per round (ms): direct gateway added ==="
	printf '%s\n' "${deltas[@]}" | tee "$OUT_DIR/rounds.txt"
	sort -t' ' -k3,3g "$OUT_DIR/rounds.txt" |
		awk '{ a[NR] = $3 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "median added p50: %+.3f ms over %d rounds\n", m, NR }' |
		tee "$OUT_DIR/median.txt"
fi
echo "JSON results: $OUT_DIR"
