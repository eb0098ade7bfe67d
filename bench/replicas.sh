#!/usr/bin/env bash
# Replicas on loopback: throughput of three toolgate replicas sharing one Redis
# (`store = "redis://…"`: grants, counters) against one replica alone, with the same
# tools/call and bench/policy.json (a predicate and a limit, so every call takes a Redis
# reservation), each replica with its own audit file (sync = full). The load is 30 clients
# in all: one oha at -c 30 against the single replica, three at -c 10 (one per replica) at
# once against the three. The direct call to the demo server is measured in the same run.
# Bounded: DURATION seconds per run (default 10), three runs.
# This machine has two cores: three replicas cannot use more CPU than one here, so the
# ratio shows what sharing Redis costs, not how far replicas scale on more machines.
# Usage: bench/replicas.sh     (installs oha with cargo if it is missing; starts its own
# redis-server through scripts/redis.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; scripts/redis.sh stop "$WORK/redis" || true; rm -rf "$WORK"' EXIT

# shellcheck source=bench/common.sh
. bench/common.sh
cargo build --release -p toolgate
BIN=$PWD/target/release/toolgate
REDIS=$(scripts/redis.sh start "$WORK/redis")

UP=$(free_port)
"$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done
for n in 1 2 3; do
  mkdir -p "$WORK/r$n"
  cat > "$WORK/r$n/toolgate.toml" <<TOML
listen = "127.0.0.1:0"
store = "$REDIS"
[audit]
path = "$WORK/r$n/audit.db"
[policies]
bench = "$PWD/bench/policy.json"
[[servers]]
name = "demo"
policy = "bench"
url = "http://127.0.0.1:$UP/mcp"
TOML
done
TOKEN=$("$BIN" grants create --config "$WORK/r1/toolgate.toml" --server demo --label bench --policy bench --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["token"])')
declare -A GW SID
for n in 1 2 3; do
  RUST_LOG=warn "$BIN" serve --config "$WORK/r$n/toolgate.toml" >"$WORK/r$n/serve.out" 2>"$WORK/r$n/serve.err" &
  for _ in $(seq 100); do grep -q 'listening on' "$WORK/r$n/serve.out" 2>/dev/null && break; sleep 0.1; done
  GW[$n]="$(grep -o 'http://[0-9.:]*' "$WORK/r$n/serve.out" | head -1)/mcp/demo"
  SID[$n]=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" -H "Authorization: Bearer $TOKEN" "${GW[$n]}" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
  [ -n "${SID[$n]}" ] || { echo "bench: no session through replica $n"; cat "$WORK/r$n/serve.err"; exit 2; }
  curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: ${SID[$n]}" "${GW[$n]}" -d "$CALL" | grep -q '"result"' || { echo "bench: call through replica $n failed"; exit 2; }
done

load() { # out concurrency url extra-headers...
  local out=$1 c=$2 url=$3; shift 3
  oha -z "${DURATION}s" -c "$c" --no-tui --output-format json -m POST -H "$H_CT" -H "$H_AC" -H "$H_PV" "$@" -d "$CALL" "$url" > "$WORK/$out.json"
}
load direct 30 "http://127.0.0.1:$UP/mcp"
load one 30 "${GW[1]}" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: ${SID[1]}"
LOADS=()
for n in 1 2 3; do
  load "three-$n" 10 "${GW[$n]}" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: ${SID[$n]}" &
  LOADS+=($!)
done
wait "${LOADS[@]}"

python3 - "$WORK" "$DURATION" <<'PY'
import json, os, sys
work, dur = sys.argv[1], sys.argv[2]
def load(n):
    d = json.load(open(os.path.join(work, n + ".json")))
    bad = {k: v for k, v in d.get("statusCodeDistribution", {}).items() if k != "200"}
    if bad:
        print(f"warning: {n}: non-200 answers {bad}")
    return d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p50"] * 1e3, d["latencyPercentiles"]["p99"] * 1e3
direct, one = load("direct"), load("one")
three = [load(f"three-{n}") for n in (1, 2, 3)]
total = sum(t[0] for t in three)
print(f"tools/call get_patient through toolgate with a Redis store, 30 clients, {dur} s per run, loopback")
print(f"  direct to the demo server: {direct[0]:7.0f} req/s  p50 {direct[1]:.2f} ms  p99 {direct[2]:.2f} ms")
print(f"  one replica:               {one[0]:7.0f} req/s  p50 {one[1]:.2f} ms  p99 {one[2]:.2f} ms  ({one[0]/direct[0]:.2f} of direct)")
print(f"  three replicas:            {total:7.0f} req/s  p50 {max(t[1] for t in three):.2f} ms (worst)  ({total/direct[0]:.2f} of direct)")
print(f"  three replicas / one: {total/one[0]:.2f}")
PY
