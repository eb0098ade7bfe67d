#!/usr/bin/env bash
# Soak: DURATION seconds (default 600) of mixed load through a release toolgate in front of
# the demo server (stateless HTTP): allowed, denied, rate-limited and approval calls, with
# the gateway's RSS and open files sampled every 10 s. See bench/soak.py for the verdict.
# Needs the e2e venv (tests/e2e/run.sh creates it) for httpx.
# Diagnostics: SOAK_AUDIT=false turns the audit log off; SOAK_WRAP="heaptrack -o FILE" runs
# the gateway under a wrapper (its RSS is then read from the wrapped toolgate process).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
PY=tests/e2e/.work/venv/bin/python
[ -x "$PY" ] || { echo "soak: run tests/e2e/run.sh once first (it makes the venv with httpx)"; exit 2; }
WORK=$(mktemp -d)
trap 'kill ${GW_PID:-} $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release -p toolgate
BIN=$PWD/target/release/toolgate
UP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" demo --http "127.0.0.1:$UP" --stateless 2>"$WORK/demo.log" &
cat > "$WORK/policy.json" <<'JSON'
{"version": "1", "default": "deny",
 "tools": {"get_patient": {},
           "search_patients": {"limits": [{"counter": "search", "window": "minute", "max": 20}]},
           "refund_payment": {"action": "require_approval", "approval": {"timeout": "1m"}}}}
JSON
cat > "$WORK/toolgate.toml" <<TOML
listen = "127.0.0.1:0"
store = "sqlite://$WORK/toolgate.db"
[audit]
enabled = ${SOAK_AUDIT:-true}
[policies]
soak = "$WORK/policy.json"
[[servers]]
name = "demo"
policy = "soak"
url = "http://127.0.0.1:$UP/mcp"
TOML
# shellcheck disable=SC2086 # SOAK_WRAP is a command line
RUST_LOG=warn ${SOAK_WRAP:-} "$BIN" serve --config "$WORK/toolgate.toml" >"$WORK/serve.out" 2>"$WORK/serve.err" &
GW_PID=$!
for _ in $(seq 300); do grep -q 'listening on' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
[ -z "${SOAK_WRAP:-}" ] || GW_PID=$(pgrep -n -f "$BIN serve --config $WORK/toolgate.toml")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/mcp" && break; sleep 0.1; done
ADMIN=$("$BIN" admin-tokens create --config "$WORK/toolgate.toml" --name soak --role policy_manager --json | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
SOAK_GW="$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)/mcp/demo" \
SOAK_TOKEN=$(grep -o 'tg_[0-9a-f]*' "$WORK/serve.out" | head -1) \
SOAK_ADMIN=$ADMIN SOAK_PID=$GW_PID DURATION=$DURATION "$PY" bench/soak.py
