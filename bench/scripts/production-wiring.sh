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
#   ROUNDS (default 1) direct/gateway pairs per overhead run, alternated,
#   with the median added p50 printed (use 5 for figures at c=1);
#   SKIP_ISSUE=1 skips the issuance runs; SKIP_INTROSPECT=1 the
#   introspection runs (INTROSPECT_CONCURRENCIES, default "16 64").
#   SKIP_DISTINCT=1 skips the distinct-token runs: MINT_TOKENS (default
#   10000) tokens for the admin (scope agents:read) minted with
#   MINT_CONCURRENCY (default 16) workers, then the authenticated GET through
#   the gateway with loadgen -bearer-file at DISTINCT_CONCURRENCIES (default
#   "1 16"), compared with the reused-token runs.
#   SKIP_LIMITED_ORG=1 skips the limited-organisation run: a pro
#   organisation (50,000 calls/day, so the gateway counts its calls in
#   block reservations on the shared Redis counter), an agent and
#   credential in it, and
#   gateway-overhead.sh for that agent at LIMITED_CONCURRENCY (default 1)
#   for LIMITED_DURATION (default 10s) after LIMITED_WARMUP (default 1s);
#   keep the gateway calls under 50,000 or the tail of the run is 429s.
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
(cd "$root/bench" && go build -o "$work/loadgen" ./cmd/loadgen && go build -o "$work/minttokens" ./cmd/minttokens)
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
	DIRECT_HEADER_CMD="'$bin/agentidp' context --sub '$CLIENT_ID' --org '$ORG_ID' --scopes agents:read --path /api/v1/agents" \
		GW_CONCURRENCY=$c OUT_DIR="$work/reused-c$c" "$here/gateway-overhead.sh"
done

# json_field FILE KEY FORMAT prints the first numeric "KEY": value of a
# loadgen -json-out file (one field per line) with the printf FORMAT, or n/a.
json_field() {
	local v=""
	[[ -f "$1" ]] && v="$(sed -n "s/^ *\"$2\": \([-0-9.eE+]*\),\{0,1\}\$/\1/p" "$1" | head -n 1)"
	awk -v v="${v:-n/a}" -v f="$3" 'BEGIN { if (v == "n/a") printf "n/a"; else printf f, v }'
}
# token_for SCOPE prints a client-credentials access token of the admin.
token_for() {
	curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials --data-urlencode "scope=$1" \
		"$GATEWAY_URL/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
summary=() # "label|c|result.json" rows for the table at the end
for c in ${GW_CONCURRENCIES:-1 16}; do
	summary+=("direct (reused context)|$c|$work/reused-c$c/direct.json" "gateway, reused token|$c|$work/reused-c$c/gateway.json")
done

if [[ -z "${SKIP_DISTINCT:-}" ]]; then
	# Every request carries a different token until the list wraps, so the
	# gateway verifies each token (ES256) once and serves the rest of the
	# run from its verified-token cache (GATEWAY_TOKEN_CACHE_SIZE, 16384 by
	# default, holds all of them).
	mint="${MINT_TOKENS:-10000}"
	echo; echo "== minting $mint distinct tokens (scope agents:read) through the gateway"
	"$work/minttokens" -token-url "$GATEWAY_URL/oauth2/token" -client-id "$CLIENT_ID" -client-secret "$CLIENT_SECRET" \
		-scope agents:read -n "$mint" -c "${MINT_CONCURRENCY:-16}" -o "$work/tokens.txt"
	for c in ${DISTINCT_CONCURRENCIES:-1 16}; do
		echo; echo "== authenticated GET through the gateway, $mint distinct tokens round-robin, c=$c"
		"$LOADGEN" -url "$GATEWAY_URL/api/v1/agents?limit=1" -header "Accept: application/json" \
			-bearer-file "$work/tokens.txt" -c "$c" -d "${DURATION:-10s}" -warmup "${WARMUP:-1s}" \
			-label "gateway-distinct-c$c" -json-out "$work/distinct-c$c.json"
		if [[ -f "$work/reused-c$c/gateway.json" ]]; then
			echo; echo "== distinct tokens vs reused token (distinct - reused), c=$c"
			"$LOADGEN" -compare "$work/reused-c$c/gateway.json" "$work/distinct-c$c.json"
		fi
		summary+=("gateway, $mint distinct tokens|$c|$work/distinct-c$c.json")
	done
fi

if [[ -z "${SKIP_LIMITED_ORG:-}" ]]; then
	# A pro organisation has a daily call limit, so the gateway enforces it
	# with block reservations on the shared Redis counter (unlimited organisations,
	# like the bootstrap one, are only counted in batches).
	echo; echo "== limited organisation: pro org, agent and credential"
	# agents:read too: an agent may only be granted scopes its creator holds.
	admin_token="$(token_for "admin:orgs agents:write agents:read")"
	[[ -n "$admin_token" ]] || { echo "no admin token (scopes admin:orgs agents:write agents:read)"; exit 1; }
	auth=(-H "Authorization: Bearer $admin_token" -H "Content-Type: application/json" -H "Accept: application/json")
	slug="bench-pro-$(date +%s)"
	curl -fsS "${auth[@]}" -d "{\"name\":\"Bench Pro\",\"slug\":\"$slug\",\"planTier\":\"pro\"}" \
		"$GATEWAY_URL/api/v1/organizations" >"$work/pro-org.json"
	PRO_ORG="$(sed -n 's/.*"organizationId":"\([^"]*\)".*/\1/p' "$work/pro-org.json")"
	grep -q '"planTier":"pro"' "$work/pro-org.json" && [[ -n "$PRO_ORG" ]] ||
		{ echo "unexpected organisation: $(cat "$work/pro-org.json")"; exit 1; }
	echo "organisation $slug ($PRO_ORG), tier pro"
	# The token service learns new organisations through NATS KV: retry
	# while it still answers 404 ORGANIZATION_NOT_FOUND (up to 10 s).
	agent_body="{\"email\":\"$slug@bench.example.com\",\"agentType\":\"custom\",\"version\":\"1.0.0\",\"capabilities\":[\"agents:read\"],\"owner\":\"bench\",\"deploymentEnv\":\"development\",\"scopes\":[\"agents:read\"],\"organizationId\":\"$PRO_ORG\"}"
	status="" tries=0
	while :; do
		status="$(curl -sS -o "$work/pro-agent.json" -w '%{http_code}' "${auth[@]}" -d "$agent_body" "$GATEWAY_URL/api/v1/agents")"
		[[ "$status" == 201 ]] && break
		if [[ "$status" == 404 ]] && grep -q ORGANIZATION_NOT_FOUND "$work/pro-agent.json" && ((tries < 100)); then
			tries=$((tries + 1)); sleep 0.1; continue
		fi
		echo "create agent: status $status: $(cat "$work/pro-agent.json")"; exit 1
	done
	PRO_AGENT="$(sed -n 's/.*"agentId":"\([^"]*\)".*/\1/p' "$work/pro-agent.json")"
	echo "agent $PRO_AGENT (created after $tries retries of 100 ms)"
	curl -fsS "${auth[@]}" -d '{}' "$GATEWAY_URL/api/v1/agents/$PRO_AGENT/credentials" >"$work/pro-credential.json"
	PRO_CLIENT_ID="$(sed -n 's/.*"clientId":"\([^"]*\)".*/\1/p' "$work/pro-credential.json")"
	PRO_CLIENT_SECRET="$(sed -n 's/.*"clientSecret":"\([^"]*\)".*/\1/p' "$work/pro-credential.json")"
	[[ -n "$PRO_AGENT" && -n "$PRO_CLIENT_ID" && -n "$PRO_CLIENT_SECRET" ]] ||
		{ echo "no agent id or credential in the responses (see $work/pro-*.json)"; exit 1; }
	lc="${LIMITED_CONCURRENCY:-1}"
	echo; echo "== authenticated GET: gateway vs direct, pro organisation (tier limit enforced), c=$lc"
	DIRECT_HEADER_CMD="'$bin/agentidp' context --sub '$PRO_AGENT' --org '$PRO_ORG' --scopes agents:read --path /api/v1/agents" \
		CLIENT_ID="$PRO_CLIENT_ID" CLIENT_SECRET="$PRO_CLIENT_SECRET" GW_CONCURRENCY="$lc" \
		DURATION="${LIMITED_DURATION:-10s}" WARMUP="${LIMITED_WARMUP:-1s}" OUT_DIR="$work/limited-c$lc" \
		"$here/gateway-overhead.sh"
	if grep -q '"429"' "$work/limited-c$lc/gateway.json"; then
		echo "WARNING: the pro organisation hit its daily call limit (429s): shorten LIMITED_DURATION"
	fi
	if command -v redis-cli >/dev/null; then
		for k in $(redis-cli -u "$REDIS_URL" --scan --pattern "usage:calls:$PRO_ORG:*"); do
			echo "pro organisation calls counted today ($k): $(redis-cli -u "$REDIS_URL" get "$k") of 50000"
		done
	fi
	summary+=("direct, pro org|$lc|$work/limited-c$lc/direct.json" "gateway, pro org (limit enforced)|$lc|$work/limited-c$lc/gateway.json")
fi

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
		echo; echo "== introspection directly at the token service (signed internal context), c=$c"
		"$LOADGEN" -url "$SERVICE_URL/oauth2/introspect" -method POST -body "token=$subject" \
			-header "Content-Type: application/x-www-form-urlencoded" \
			-header "$("$bin/agentidp" context --sub "$CLIENT_ID" --org "$ORG_ID" --scopes tokens:read --method POST --path /oauth2/introspect)" \
			-c "$c" -d "${DURATION:-10s}" -warmup "${WARMUP:-1s}" -label "introspect-direct-c$c" -quiet
	done
fi

if ((${#summary[@]} > 0)); then
	echo; echo "== summary: GET /api/v1/agents?limit=1 (DURATION=${DURATION:-10s}, pro org ${LIMITED_DURATION:-10s})"
	printf '%-36s %3s %10s %9s %9s %9s %9s %7s\n' run c req/s p50_ms p90_ms p99_ms max_ms errors
	for row in "${summary[@]}"; do
		IFS='|' read -r label c file <<<"$row"
		printf '%-36s %3s %10s %9s %9s %9s %9s %7s\n' "$label" "$c" "$(json_field "$file" rps %.1f)" \
			"$(json_field "$file" p50 %.3f)" "$(json_field "$file" p90 %.3f)" "$(json_field "$file" p99 %.3f)" \
			"$(json_field "$file" max %.3f)" "$(json_field "$file" errors %d)"
	done
	# With ROUNDS > 1 the rows above are the last round; the medians are steadier.
	for m in "$work"/reused-c*/median.txt "$work"/limited-c*/median.txt; do
		[[ -f "$m" ]] && echo "$(basename "$(dirname "$m")"): $(cat "$m")"
	done
fi

psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS ${prefix}token CASCADE; DROP SCHEMA IF EXISTS ${prefix}tier CASCADE; DROP SCHEMA IF EXISTS ${prefix}analytics CASCADE" >/dev/null 2>&1 || true
