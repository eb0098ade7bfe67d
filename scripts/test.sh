#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { echo; echo "==> $*"; }

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "pure crates stay pure"
scripts/check-purity.sh

step "no module cycles in the gateway"
python3 scripts/check-cycles.py

step "a private redis-server and PostgreSQL for the shared backends' tests"
REDIS_DIR=$(mktemp -d)
PG_DIR=$(mktemp -d)
chmod 755 "$PG_DIR"
trap 'scripts/redis.sh stop "$REDIS_DIR"; scripts/postgres.sh stop "$PG_DIR"; rm -rf "$REDIS_DIR" "$PG_DIR"' EXIT
TOOLGATE_TEST_REDIS_URL=$(scripts/redis.sh start "$REDIS_DIR")
TOOLGATE_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$PG_DIR")
export TOOLGATE_TEST_REDIS_URL TOOLGATE_TEST_POSTGRES_URL
echo "redis at $TOOLGATE_TEST_REDIS_URL, postgres at $TOOLGATE_TEST_POSTGRES_URL"

step "unit, integration and golden tests"
cargo test --workspace

step "benches compile"
cargo bench -p toolgate-policy -p toolgate-detect -p toolgate-store --no-run

step "fuzz: the envelope, SSE, policy and config parsers ${FUZZ_SECONDS:-60} s each with libFuzzer, two at a time"
make fuzz-smoke FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

if [ -x tests/e2e/run.sh ]; then
  step "end-to-end tests with real MCP clients and servers"
  tests/e2e/run.sh
fi
echo
echo "==> all tests passed"
