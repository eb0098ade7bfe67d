#!/usr/bin/env bash
# Where the gateway's CPU goes under load: the same pinned setup as bench/proxy.sh (oha on
# core 0; the demo upstream and toolgate on core 1), one toolgate in the configuration named
# by VARIANT (default: the default config; `redis`: store and counters in a private
# redis-server on core 1; `audit-off`), C concurrent clients (default 32) for DURATION
# seconds (default 8), with `perf record -g` on the gateway. Prints the top of
# `perf report` by self time, then by DSO (kernel, libc, toolgate), and the CPU per call.
# Usage: bench/profile.sh            VARIANT=redis C=1 bench/profile.sh
# Needs perf (Debian: linux-perf) and a kernel that lets this user profile
# (kernel.perf_event_paranoid <= 1, or root).
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT=${VARIANT:-default}
C=${C:-32}
DURATION=${DURATION:-8}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -d "$WORK/redis" ] && scripts/redis.sh stop "$WORK/redis"; rm -rf "$WORK"' EXIT
# shellcheck source=bench/common.sh
. bench/common.sh
command -v perf >/dev/null || { echo "profile: perf is not installed (Debian: apt-get install linux-perf)"; exit 2; }
cargo build --release -p toolgate
BIN=$PWD/target/release/toolgate
LOAD="taskset -c 0"
PIN="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then LOAD=""; PIN=""; fi

UP=$(free_port)
$PIN "$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done

STORE="sqlite://$WORK/toolgate.db"
AUDIT=""
case "$VARIANT" in
  default) ;;
  audit-off) AUDIT='enabled = false' ;;
  redis)
    RURL=$(scripts/redis.sh start "$WORK/redis")
    taskset -pc 1 "$(cat "$WORK/redis/redis.pid")" >/dev/null 2>&1 || true
    STORE=${RURL%/*}/5
    AUDIT="path = \"$WORK/redis-audit.db\""
    ;;
  *) echo "profile: VARIANT is default, audit-off or redis"; exit 2 ;;
esac
cat > "$WORK/toolgate.toml" <<TOML
listen = "127.0.0.1:0"
store = "$STORE"
[audit]
$AUDIT
[policies]
bench = "$PWD/bench/policy.json"
[[servers]]
name = "demo"
policy = "bench"
url = "http://127.0.0.1:$UP/mcp"
TOML
RUST_LOG=warn $PIN "$BIN" serve --config "$WORK/toolgate.toml" >"$WORK/serve.out" 2>"$WORK/serve.err" &
GW_PID=$!
for _ in $(seq 100); do grep -q 'listening on' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
gw=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
token=$(grep -o 'tg_[0-9a-f]*' "$WORK/serve.out" | head -1)
sid=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" -H "Authorization: Bearer $token" "$gw/mcp/demo" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
[ -n "$sid" ] || { echo "profile: no session"; cat "$WORK/serve.err"; exit 2; }
ARGS=(-H "$H_CT" -H "$H_AC" -H "$H_PV" -H "Authorization: Bearer $token" -H "Mcp-Session-Id: $sid" -m POST -d "$CALL")
# Warm up, then profile a run of its own.
$LOAD oha -z 2s -c "$C" --no-tui "${ARGS[@]}" "$gw/mcp/demo" >/dev/null
before=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
perf record -F 2000 -g -o "$WORK/perf.data" -p "$GW_PID" -- sleep "$DURATION" >/dev/null 2>&1 &
PERF=$!
$LOAD oha -z "${DURATION}s" -c "$C" --no-tui --output-format json "${ARGS[@]}" "$gw/mcp/demo" >"$WORK/oha.json"
wait "$PERF" || true
after=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
calls=$(python3 -c "import json; d=json.load(open('$WORK/oha.json')); print(sum(d['statusCodeDistribution'].values()))")
hz=$(getconf CLK_TCK)
echo "profile: $VARIANT, c=$C, ${DURATION}s: $calls calls, $(( (after - before) * 1000000 / hz / (calls > 0 ? calls : 1) )) µs of gateway CPU per call"
echo "--- by shared object (self time)"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo "--- top symbols (self time)"
perf report -i "$WORK/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -"${TOP:-40}"
