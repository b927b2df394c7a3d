# lib.sh - helpers sourced by the bench scripts (not executable on its own).
#
# loadgen ARGS...   runs $LOADGEN if set (a prebuilt binary), otherwise
#                   "go run ./cmd/loadgen" from the bench module directory.
# urlencode STRING  prints STRING form-urlencoded (RFC 3986 unreserved kept).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

loadgen() {
	if [[ -n "${LOADGEN:-}" ]]; then
		"$LOADGEN" "$@"
	else
		(cd "$BENCH_DIR" && go run ./cmd/loadgen "$@")
	fi
}

urlencode() {
	local s="$1" out="" c i
	local LC_ALL=C
	for ((i = 0; i < ${#s}; i++)); do
		c="${s:i:1}"
		case "$c" in
		[A-Za-z0-9._~-]) out+="$c" ;;
		*) out+="$(printf '%%%02X' "'$c")" ;;
		esac
	done
	printf '%s' "$out"
}
