#!/usr/bin/env bash
# The proxy benchmark, one run, pinned: the load generator (oha) on core 0; the upstream and
# the proxy under test share core 1, so the CPU a proxy spends per call shows directly as
# throughput the upstream loses. The same `tools/call get_patient` goes
#   - directly to the upstream (the bundled demo server, rmcp, stateless Streamable HTTP,
#     JSON answers),
#   - through toolgate in its default configuration (SQLite store and counters, audit on,
#     `sync = "batched"`), under bench/policy.json (a regex `require`, a `deny_if`, a limit),
#   - through toolgate with `[audit] sync = "full"` (fsync before forwarding),
#   - through toolgate with the audit off,
#   - through a bare relay (bench floor: the same crates forwarding bytes, no policy),
#   - through toolgate with its store and counters in Redis (a private redis-server on the
#     proxy's core, as replicas would share; REDIS=0 skips it),
#   - through mcp-proxy 0.6.0 from crates.io (a peer; a plain relay, no policy),
# at concurrency 1 and 32, ROUNDS rounds (default 3) of DURATION seconds (default 6) each,
# interleaved so drift on this shared machine hits every target alike. Prints medians:
# requests/s, p50, the ratio to the direct call of the same round, the added p50, and the
# proxy's CPU time per call (utime + stime from /proc over the run / calls; for `redis`,
# the gateway's and redis-server's together).
# Usage: bench/proxy.sh     (installs oha and mcp-proxy into bench/.tools when missing;
#                            PEER=0 skips mcp-proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
PEER=${PEER:-1}
REDIS=${REDIS:-1}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ "$REDIS" = 1 ] && scripts/redis.sh stop "$WORK/redis"; rm -rf "$WORK"' EXIT

# shellcheck source=bench/common.sh
. bench/common.sh
if [ "$PEER" = 1 ] && ! command -v mcp-proxy >/dev/null; then
  cargo install mcp-proxy --version 0.6.0 --locked --root bench/.tools
fi
cargo build --release -p toolgate
cargo build --release -p toolgate-gateway --example bare_relay
BIN=$PWD/target/release/toolgate
RELAY_BIN=$PWD/target/release/examples/bare_relay
LOAD="taskset -c 0"
PIN="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then LOAD=""; PIN=""; echo "bench: one core only: not pinned"; fi

wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "bench: $1 never said '$2'"; cat "$1"; exit 2; }

UP=$(free_port)
$PIN "$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done
declare -A URL PID HDRS

start_gateway() { # name [audit toml lines]
  local name=$1 dir="$WORK/$1"; shift
  mkdir -p "$dir"
  {
    echo "listen = \"127.0.0.1:0\""
    echo "store = \"${STORE_URL:-sqlite://$dir/toolgate.db}\""
    echo "[audit]"
    printf '%s\n' "$@"
    echo "[policies]"
    echo "bench = \"${POLICY:-$PWD/bench/policy.json}\""
    echo "[[servers]]"
    echo "name = \"demo\""
    echo "policy = \"bench\""
    echo "url = \"http://127.0.0.1:$UP/mcp\""
  } > "$dir/toolgate.toml"
  RUST_LOG=warn $PIN "$BIN" serve --config "$dir/toolgate.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
  PID[$name]=$!
  wait_for "$dir/serve.out" 'listening on'
  local gw token sid
  gw=$(grep -o 'http://[0-9.:]*' "$dir/serve.out" | head -1)
  token=$(grep -o 'tg_[0-9a-f]*' "$dir/serve.out" | head -1)
  sid=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" -H "Authorization: Bearer $token" "$gw/mcp/demo" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
  [ -n "$sid" ] || { echo "bench: could not open a session through toolgate ($name)"; cat "$dir/serve.err"; exit 2; }
  URL[$name]="$gw/mcp/demo"
  HDRS[$name]="Authorization: Bearer $token|Mcp-Session-Id: $sid"
}
start_gateway toolgate            # the defaults: audit on, sync = "batched"
start_gateway sync-full 'sync = "full"'
start_gateway audit-off 'enabled = false'
TARGETS_REDIS=""
if [ "$REDIS" = 1 ]; then
  RURL=$(scripts/redis.sh start "$WORK/redis")
  taskset -pc 1 "$(cat "$WORK/redis/redis.pid")" >/dev/null 2>&1 || true
  STORE_URL=${RURL%/*}/5 start_gateway redis "path = \"$WORK/redis-audit.db\""
  TARGETS_REDIS=" redis"
  REDIS_PID=$(cat "$WORK/redis/redis.pid")
fi

RELAY_PORT=$(free_port)
$PIN "$RELAY_BIN" "127.0.0.1:$RELAY_PORT" "http://127.0.0.1:$UP/mcp" >"$WORK/relay.out" 2>&1 &
PID[relay]=$!
wait_for "$WORK/relay.out" listening
URL[relay]="http://127.0.0.1:$RELAY_PORT/mcp"
HDRS[relay]=""
URL[direct]="http://127.0.0.1:$UP/mcp"
HDRS[direct]=""
TARGETS="direct toolgate sync-full audit-off$TARGETS_REDIS relay"

# The peer: its endpoint is `/`, tools are named BACKEND/TOOL, and it keeps sessions.
PEER_CALL=${CALL/\"get_patient\"/\"demo\/get_patient\"}
if [ "$PEER" = 1 ]; then
  PP=$(free_port)
  cat > "$WORK/proxy.toml" <<TOML
[proxy]
name = "bench"
version = "1"
separator = "/"
[proxy.listen]
host = "127.0.0.1"
port = $PP
[[backends]]
name = "demo"
transport = "http"
url = "http://127.0.0.1:$UP/mcp"
TOML
  (cd "$WORK" && RUST_LOG=warn $PIN mcp-proxy --config "$WORK/proxy.toml" >"$WORK/peer.out" 2>&1) &
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PP/" && break; sleep 0.1; done
  PID[mcp-proxy]=$(pgrep -f "mcp-proxy --config $WORK/proxy.toml" | head -1)
  psid=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" "http://127.0.0.1:$PP/" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
  curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" ${psid:+-H "Mcp-Session-Id: $psid"} "http://127.0.0.1:$PP/" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' >/dev/null || true
  URL[mcp-proxy]="http://127.0.0.1:$PP/"
  HDRS[mcp-proxy]=${psid:+"Mcp-Session-Id: $psid"}
  TARGETS="$TARGETS mcp-proxy"
fi

call_for() { [ "$1" = mcp-proxy ] && echo "$PEER_CALL" || echo "$CALL"; }
headers_for() { # name -> oha -H args, one per line
  local IFS='|'; for h in ${HDRS[$1]}; do [ -n "$h" ] && printf -- '-H\n%s\n' "$h"; done; return 0
}
for t in $TARGETS; do
  mapfile -t extra < <(headers_for "$t")
  curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" "${extra[@]}" "${URL[$t]}" -d "$(call_for "$t")" | grep -q '"result"' \
    || { echo "bench: a call through $t failed"; ls "$WORK"; exit 2; }
done

cpu_ticks() { # pid -> utime+stime in clock ticks
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
  awk '{print $14 + $15}' "/proc/$1/stat"
}
for round in $(seq "$ROUNDS"); do
  for c in 1 32; do
    for t in $TARGETS; do
      mapfile -t extra < <(headers_for "$t")
      before=$(( $(cpu_ticks "${PID[$t]:-}") + $( [ "$t" = redis ] && cpu_ticks "$REDIS_PID" || echo 0) ))
      $LOAD oha -z "${DURATION}s" -c "$c" --no-tui --output-format json -m POST -H "$H_CT" -H "$H_AC" -H "$H_PV" \
        "${extra[@]}" -d "$(call_for "$t")" "${URL[$t]}" > "$WORK/$t-c$c-r$round.json"
      after=$(( $(cpu_ticks "${PID[$t]:-}") + $( [ "$t" = redis ] && cpu_ticks "$REDIS_PID" || echo 0) ))
      echo "$((after - before))" > "$WORK/$t-c$c-r$round.cpu"
    done
  done
done

python3 - "$WORK" "$DURATION" "$ROUNDS" "$(getconf CLK_TCK)" "$TARGETS" <<'PY'
import json, os, statistics, sys
work, dur, rounds, tck, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
def load(t, c, r):
    d = json.load(open(os.path.join(work, f"{t}-c{c}-r{r}.json")))
    ticks = int(open(os.path.join(work, f"{t}-c{c}-r{r}.cpu")).read())
    ok = d.get("statusCodeDistribution", {})
    calls = sum(ok.values()) or 1
    return dict(rps=d["summary"]["requestsPerSec"], p50=d["latencyPercentiles"]["p50"] * 1e6,
                cpu=ticks / tck * 1e6 / calls, bad={k: v for k, v in ok.items() if k != "200"})
print(f"tools/call get_patient; oha on core 0, upstream + proxy on core 1; medians of {rounds} x {dur} s; µs")
print(f"{'c':>3} {'path':<10} | {'req/s':>6} {'p50':>6} | {'vs direct':>9} {'added p50':>9} | {'CPU/call':>8}")
for c in (1, 32):
    rows = {t: [load(t, c, r) for r in range(1, rounds + 1)] for t in targets}
    for t in targets:
        runs = rows[t]
        ratio = statistics.median(x["rps"] / d["rps"] for x, d in zip(runs, rows["direct"]))
        added = statistics.median(x["p50"] - d["p50"] for x, d in zip(runs, rows["direct"]))
        cpu = "" if t == "direct" else f"{statistics.median(x['cpu'] for x in runs):8.0f}"
        print(f"{c:>3} {t:<10} | {statistics.median(x['rps'] for x in runs):>6.0f} {statistics.median(x['p50'] for x in runs):>6.0f} | {ratio:>9.2f} {added:>9.0f} | {cpu:>8}")
        for x in runs:
            if x["bad"]: print(f"    warning: {t} c={c} non-200 answers: {x['bad']}")
PY
