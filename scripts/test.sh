#!/usr/bin/env bash
# The test command (README): vet and race-test every module of the
# workspace, then check that each module builds and vets on its own
# (GOWORK=off), as a per-service image build would.
#
# PostgreSQL and Redis are found through AGENTIDP_TEST_POSTGRES_URL and
# AGENTIDP_TEST_REDIS_URL (default: the local servers). Outside CI, tests
# that need one that is absent are skipped and say why; with CI=true they fail.
#
# Every run ends with a summary (scripts/testsummary): the failures, each
# skipped test with its reason, and the line "N passed, N failed, N skipped".
# With CI=true a test skipped for a missing dependency fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
results="$tmp/test.json"
go build -o "$tmp/testsummary" ./scripts/testsummary
finish() {
  rc=$?
  if [ -s "$results" ]; then
    echo "== summary"
    "$tmp/testsummary" -summarize "$results" || rc=1
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap finish EXIT

modules=$(go list -m -f '{{.Dir}}' | sed "s#^$PWD/##" | sort)
pkgs=$(for m in $modules; do echo "./$m/..."; done)

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi

echo "== go vet (workspace)"
# shellcheck disable=SC2086
go vet $pkgs

# The e2e kill-and-recover test runs a real nats-server process: install it
# once (as .ci/run does for stripe-mock) rather than skip the test.
echo "== nats-server (e2e TestKillRecovery)"
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
if [ ! -x "$gobin/nats-server" ]; then
  CGO_ENABLED=0 GOFLAGS=-mod=mod go install github.com/nats-io/nats-server/v2@v2.15.2 ||
    echo "could not install nats-server: TestKillRecovery will skip (and fail with CI=true)"
fi

echo "== go test -race (workspace, without e2e)"
# shellcheck disable=SC2086
go test -json -race -count=1 -timeout 20m ${TEST_FLAGS:-} $(echo "$pkgs" | grep -v '^./e2e/') |
  "$tmp/testsummary" -record "$results"

# The end-to-end tests run the services as separate binaries; the test
# process itself only hosts the embedded nats-server and HTTP clients. The
# race detector there reports races inside nats-server (stream update vs
# consumer create, in its own code), not in ours, so e2e runs without it.
echo "== go test (e2e, separate processes)"
# shellcheck disable=SC2086
go test -json -count=1 -timeout 20m ${TEST_FLAGS:-} ./e2e/... | "$tmp/testsummary" -record "$results"

echo "== per-module build with GOWORK=off"
for m in $modules; do
  (cd "$m" && GOWORK=off go build ./... && GOWORK=off go vet ./...) || { echo "module $m does not build on its own"; exit 1; }
done
echo "all modules build on their own"

echo "== static binaries (CGO_ENABLED=0, as the images build them) start with --help"
make -s binaries
for b in bin/*; do
  "$b" --help >/dev/null || { echo "$b --help failed"; exit 1; }
  echo "$b --help ok"
done
