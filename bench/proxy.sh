#!/usr/bin/env bash
# Load run on loopback: the same tools/call directly against the demo server (stateless
# Streamable HTTP, JSON answers), through toolgate (a policy with a predicate and a limit,
# counters written to SQLite, every call's audit record durable before it is forwarded),
# through a second toolgate with the audit log off, and through a bare relay (the same
# crates forwarding bytes with no auth, policy, counters or audit: the cost of any extra
# hop, the floor), at concurrency 1 and 32. Prints requests/s, p50 and p99 for each, the
# ratios to the direct call, audit on / off, and what toolgate adds over the bare relay.
# Bounded: DURATION seconds per run (default 10), eight runs.
# Usage: bench/proxy.sh            (installs oha with cargo if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# shellcheck source=bench/common.sh
. bench/common.sh
cargo build --release -p toolgate
cargo build --release -p toolgate-gateway --example bare_relay
BIN=$PWD/target/release/toolgate
RELAY_BIN=$PWD/target/release/examples/bare_relay

UP=$(free_port)
"$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
start_gateway() { # name audit-enabled
  local name=$1 audit=$2 dir="$WORK/$1"
  mkdir -p "$dir"
  cat > "$dir/toolgate.toml" <<TOML
listen = "127.0.0.1:0"
store = "sqlite://$dir/toolgate.db"
[audit]
enabled = $audit
sync = "${AUDIT_SYNC:-full}"
[policies]
bench = "${POLICY:-$PWD/bench/policy.json}"
[[servers]]
name = "demo"
policy = "bench"
url = "http://127.0.0.1:$UP/mcp"
TOML
  RUST_LOG=warn "$BIN" serve --config "$dir/toolgate.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
  for _ in $(seq 100); do grep -q 'listening on' "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
}
start_gateway audit true
start_gateway noaudit false
RELAY_PORT=$(free_port)
"$RELAY_BIN" "127.0.0.1:$RELAY_PORT" "http://127.0.0.1:$UP/mcp" >"$WORK/relay.out" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done

curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" "http://127.0.0.1:$UP/mcp" -d "$CALL" | grep -q '"result"' || { echo "bench: direct call failed"; exit 2; }
for _ in $(seq 50); do grep -q 'listening' "$WORK/relay.out" 2>/dev/null && break; sleep 0.1; done
curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" "http://127.0.0.1:$RELAY_PORT/mcp" -d "$CALL" | grep -q '"result"' || { echo "bench: call through the bare relay failed"; cat "$WORK/relay.out"; exit 2; }
declare -A GW TOKEN SID
for name in audit noaudit; do
  GW[$name]=$(grep -o 'http://[0-9.:]*' "$WORK/$name/serve.out" | head -1)
  TOKEN[$name]=$(grep -o 'tg_[0-9a-f]*' "$WORK/$name/serve.out" | head -1)
  SID[$name]=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" -H "Authorization: Bearer ${TOKEN[$name]}" "${GW[$name]}/mcp/demo" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
  [ -n "${SID[$name]}" ] || { echo "bench: could not open a session through toolgate ($name)"; cat "$WORK/$name/serve.err"; exit 2; }
  curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" -H "Authorization: Bearer ${TOKEN[$name]}" -H "Mcp-Session-Id: ${SID[$name]}" "${GW[$name]}/mcp/demo" -d "$CALL" | grep -q '"result"' || { echo "bench: proxied call failed ($name)"; exit 2; }
done

run() { # name concurrency url extra-headers...
  local name=$1 c=$2 url=$3; shift 3
  oha -z "${DURATION}s" -c "$c" --no-tui --output-format json -m POST -H "$H_CT" -H "$H_AC" -H "$H_PV" "$@" -d "$CALL" "$url" > "$WORK/$name.json"
}
for c in 1 32; do
  run "direct-c$c" "$c" "http://127.0.0.1:$UP/mcp"
  run "relay-c$c" "$c" "http://127.0.0.1:$RELAY_PORT/mcp"
  for name in audit noaudit; do
    run "$name-c$c" "$c" "${GW[$name]}/mcp/demo" -H "Authorization: Bearer ${TOKEN[$name]}" -H "Mcp-Session-Id: ${SID[$name]}"
  done
done

python3 - "$WORK" "$DURATION" <<'PY'
import json, sys, os
work, dur = sys.argv[1], sys.argv[2]
def load(n):
    d = json.load(open(os.path.join(work, n + ".json")))
    s = d["summary"]; p = d["latencyPercentiles"]
    ok = d.get("statusCodeDistribution", {})
    return s["requestsPerSec"], p["p50"] * 1e6, p["p99"] * 1e6, ok
print(f"tools/call get_patient, {dur} s per run, loopback; latencies in microseconds")
print(f"{'conc':>4} {'path':<18} | {'req/s':>7} {'p50':>6} {'p99':>6} | {'vs direct':>9} {'added p50':>9}")
for c in (1, 32):
    d = load(f"direct-c{c}")
    rows = [("direct", d), ("toolgate", load(f"audit-c{c}")), ("toolgate, no audit", load(f"noaudit-c{c}")), ("bare relay", load(f"relay-c{c}"))]
    for name, r in rows:
        print(f"{c:>4} {name:<18} | {r[0]:>7.0f} {r[1]:>6.0f} {r[2]:>6.0f} | {r[0]/d[0]:>9.2f} {r[1]-d[1]:>9.0f}")
        bad = {k: v for k, v in r[3].items() if k != "200"}
        if bad: print(f"     warning: {name} c={c} non-200 answers: {bad}")
    print(f"{c:>4} audit on / off: throughput {rows[1][1][0]/rows[2][1][0]:.2f}, added p50 {rows[1][1][1]-rows[2][1][1]:.0f} us")
    relay = rows[3][1]
    for name, r in rows[1:3]:
        print(f"{c:>4} {name} over the bare relay: throughput {r[0]/relay[0]:.2f}, added p50 {r[1]-relay[1]:.0f} us")
PY
