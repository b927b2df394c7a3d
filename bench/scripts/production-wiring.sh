#!/usr/bin/env bash
# production-wiring.sh - start gateway, token, tier and analytics as
# separate processes over PostgreSQL, Redis and a current nats-server (as
# they run in Kubernetes, minus the network), bootstrap an admin agent, and
# run issue-tokens.sh and gateway-overhead.sh against them. Everything stops
# when the script ends.
#
# Needs: PostgreSQL and Redis (the local ones by default), and nats-server
# 2.10+ (`go install github.com/nats-io/nats-server/v2@v2.15.2`).
#
# Environment:
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
#   REDIS_URL     default redis://127.0.0.1:6379/0
#   NATS_SERVER   default $(go env GOPATH)/bin/nats-server
#   DURATION, WARMUP, CONCURRENCY are passed to the scenario scripts;
#   GW_CONCURRENCIES (default "1 16") are the gateway-overhead runs;
#   SKIP_ISSUE=1 skips the issuance runs; SKIP_INTROSPECT=1 the
#   introspection runs (INTROSPECT_CONCURRENCIES, default "16 64").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
NATS_SERVER="${NATS_SERVER:-$(go env GOPATH)/bin/nats-server}"
work="$(mktemp -d "${TMPDIR:-/tmp}/agentidp-bench.XXXXXX")"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "logs: $work"
}
trap cleanup EXIT

echo "== building binaries"
(cd "$root" && make -s binaries >/dev/null)
(cd "$root/bench" && go build -o "$work/loadgen" ./cmd/loadgen)
export LOADGEN="$work/loadgen"
bin="$root/bin"

key() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export AGENTIDP_INTERNAL_KEY="$(key)"
export TOKEN_SECRET_PEPPER="$(key)" TOKEN_KEY_ENCRYPTION_KEY="$(key)"
export NATS_URL="nats://127.0.0.1:14222" LOG_LEVEL=warn
prefix="bench_$(date +%s)_"

echo "== nats-server $("$NATS_SERVER" --version)"
"$NATS_SERVER" -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
sleep 0.5

echo "== bootstrap"
DATABASE_URL="$DATABASE_URL" TOKEN_DATABASE_SCHEMA="${prefix}token" TIER_DATABASE_SCHEMA="${prefix}tier" \
	"$bin/agentidp" bootstrap | tee "$work/bootstrap.txt"
CLIENT_ID="$(awk '/client_id:/ {print $2}' "$work/bootstrap.txt")"
CLIENT_SECRET="$(awk '/client_secret:/ {print $2}' "$work/bootstrap.txt")"
ORG_ID="$(sed -n 's/.*organisation "default" (\(.*\)).*/\1/p' "$work/bootstrap.txt")"
export CLIENT_ID CLIENT_SECRET

start() { # name http internal env...
	local name=$1 http=$2 internal=$3; shift 3
	env HTTP_ADDR="127.0.0.1:$http" INTERNAL_ADDR="127.0.0.1:$internal" "$@" "$bin/$name" >"$work/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 100); do
		curl -fs "http://127.0.0.1:$internal/health/ready" >/dev/null 2>&1 && { echo "$name ready"; return; }
		sleep 0.1
	done
	echo "$name not ready"; cat "$work/$name.log"; exit 1
}
start token 18081 19081 DATABASE_URL="$DATABASE_URL" DATABASE_SCHEMA="${prefix}token" REDIS_URL="$REDIS_URL" TOKEN_ISSUER=http://127.0.0.1:18080
start tier 18083 19083 DATABASE_URL="$DATABASE_URL" DATABASE_SCHEMA="${prefix}tier" REDIS_URL="$REDIS_URL"
start analytics 18084 19084 DATABASE_URL="$DATABASE_URL" DATABASE_SCHEMA="${prefix}analytics" REDIS_URL="$REDIS_URL" ANALYTICS_CHECKPOINT_KEY="$(key)"
start gateway 18080 19080 REDIS_URL="$REDIS_URL" GATEWAY_ISSUER=http://127.0.0.1:18080 \
	TOKEN_SERVICE_URL=http://127.0.0.1:18081 TIER_SERVICE_URL=http://127.0.0.1:18083 ANALYTICS_SERVICE_URL=http://127.0.0.1:18084

export GATEWAY_URL=http://127.0.0.1:18080 SERVICE_URL=http://127.0.0.1:18081 SCOPE=agents:read
if [[ -z "${SKIP_ISSUE:-}" ]]; then
	echo; echo "== token issuance through the gateway"
	"$here/issue-tokens.sh"
fi
for c in ${GW_CONCURRENCIES:-1 16}; do
	echo; echo "== authenticated GET: gateway vs direct, c=$c"
	# The signed context is valid for 60 s after signing: sign it per run.
	DIRECT_HEADER="$("$bin/agentidp" context --sub "$CLIENT_ID" --org "$ORG_ID" --scopes agents:read)" \
		GW_CONCURRENCY=$c "$here/gateway-overhead.sh"
done

if [[ -z "${SKIP_INTROSPECT:-}" ]]; then
	# Introspection (RFC 7662) through the gateway: the caller holds
	# tokens:read and introspects one token of its organisation.
	subject="$(curl -fs -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=agents:read \
		"$GATEWAY_URL/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
	for c in ${INTROSPECT_CONCURRENCIES:-16 64}; do
		echo; echo "== introspection through the gateway, c=$c"
		"$LOADGEN" -url "$GATEWAY_URL/oauth2/introspect" -method POST -body "token=$subject" \
			-header "Content-Type: application/x-www-form-urlencoded" \
			-token-url "$GATEWAY_URL/oauth2/token" -client-id "$CLIENT_ID" -client-secret "$CLIENT_SECRET" -scope tokens:read \
			-c "$c" -d "${DURATION:-10s}" -warmup "${WARMUP:-1s}" -label "introspect-c$c" -quiet
	done
fi

psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS ${prefix}token CASCADE; DROP SCHEMA IF EXISTS ${prefix}tier CASCADE; DROP SCHEMA IF EXISTS ${prefix}analytics CASCADE" >/dev/null 2>&1 || true
