#!/usr/bin/env bash
# Load run on loopback: the same tools/call directly against the demo server (stateless
# Streamable HTTP, JSON answers) and through toolgate (a policy with a predicate and a
# limit, counters written to SQLite), at concurrency 1 and 32. Prints requests/s, p50 and
# p99 for both and their ratios. Bounded: DURATION seconds per run (default 10).
# Usage: bench/proxy.sh            (installs oha with cargo if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if ! command -v oha >/dev/null; then
  export PATH="$PWD/bench/.tools/bin:$PATH"
  command -v oha >/dev/null || cargo install oha --locked --root bench/.tools
fi
cargo build --release -p toolgate
BIN=$PWD/target/release/toolgate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
"$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
cat > "$WORK/toolgate.toml" <<TOML
listen = "127.0.0.1:0"
store = "sqlite://$WORK/toolgate.db"
[policies]
bench = "${POLICY:-$PWD/bench/policy.json}"
[[servers]]
name = "demo"
policy = "bench"
url = "http://127.0.0.1:$UP/mcp"
TOML
RUST_LOG=warn "$BIN" serve --config "$WORK/toolgate.toml" >"$WORK/serve.out" 2>"$WORK/serve.err" &
for _ in $(seq 100); do grep -q 'listening on' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
GW=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
TOKEN=$(grep -o 'tg_[0-9a-f]*' "$WORK/serve.out" | head -1)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done

H_CT='Content-Type: application/json'
H_AC='Accept: application/json, text/event-stream'
H_PV='MCP-Protocol-Version: 2025-11-25'
INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
SID=$(curl -s -D - -o /dev/null -H "$H_CT" -H "$H_AC" -H "Authorization: Bearer $TOKEN" "$GW/mcp/demo" -d "$INIT" | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
[ -n "$SID" ] || { echo "bench: could not open a session through toolgate"; cat "$WORK/serve.err"; exit 2; }
CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_patient","arguments":{"patient_id":"pat_1001"}}}'

# Sanity: both paths answer the call with a result.
curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" "http://127.0.0.1:$UP/mcp" -d "$CALL" | grep -q '"result"' || { echo "bench: direct call failed"; exit 2; }
curl -s -H "$H_CT" -H "$H_AC" -H "$H_PV" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SID" "$GW/mcp/demo" -d "$CALL" | grep -q '"result"' || { echo "bench: proxied call failed"; exit 2; }

run() { # name concurrency url extra-headers...
  local name=$1 c=$2 url=$3; shift 3
  oha -z "${DURATION}s" -c "$c" --no-tui --output-format json -m POST -H "$H_CT" -H "$H_AC" -H "$H_PV" "$@" -d "$CALL" "$url" > "$WORK/$name.json"
}
for c in 1 32; do
  run "direct-c$c" "$c" "http://127.0.0.1:$UP/mcp"
  run "proxied-c$c" "$c" "$GW/mcp/demo" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SID"
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
print(f"{'conc':>4} | {'direct req/s':>12} {'p50':>8} {'p99':>8} | {'proxied req/s':>13} {'p50':>8} {'p99':>8} | {'thru ratio':>10} {'added p50':>9}")
for c in (1, 32):
    d = load(f"direct-c{c}"); p = load(f"proxied-c{c}")
    print(f"{c:>4} | {d[0]:>12.0f} {d[1]:>8.0f} {d[2]:>8.0f} | {p[0]:>13.0f} {p[1]:>8.0f} {p[2]:>8.0f} | {p[0]/d[0]:>10.2f} {p[1]-d[1]:>9.0f}")
    for name, r in (("direct", d), ("proxied", p)):
        bad = {k: v for k, v in r[3].items() if k != "200"}
        if bad: print(f"     warning: {name} c={c} non-200 answers: {bad}")
PY
