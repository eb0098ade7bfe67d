#!/usr/bin/env bash
# A counter reservation through Redis on loopback: starts a private redis-server, runs the
# criterion bench `crates/store/benches/redis.rs` (two limits per call, as a tool limit
# plus an all_tools limit), stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$(mktemp -d)
trap 'scripts/redis.sh stop "$DIR"; rm -rf "$DIR"' EXIT
TOOLGATE_BENCH_REDIS_URL=$(scripts/redis.sh start "$DIR")
export TOOLGATE_BENCH_REDIS_URL
cargo bench -p toolgate-store --bench redis -- --warm-up-time 1 --measurement-time 5 "$@"
