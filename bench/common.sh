# Shared by the load runs (bench/proxy.sh, bench/replicas.sh); sourced, not run.
# Puts oha on PATH (installing it with cargo into bench/.tools when missing) and defines
# free_port and the request every run sends: a tools/call of get_patient on the demo server.
if ! command -v oha >/dev/null; then
  export PATH="$PWD/bench/.tools/bin:$PATH"
  command -v oha >/dev/null || cargo install oha --locked --root bench/.tools
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# shellcheck disable=SC2034 # used by the scripts that source this file
H_CT='Content-Type: application/json'
# shellcheck disable=SC2034
H_AC='Accept: application/json, text/event-stream'
# shellcheck disable=SC2034
H_PV='MCP-Protocol-Version: 2025-11-25'
# shellcheck disable=SC2034
INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
# shellcheck disable=SC2034
CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_patient","arguments":{"patient_id":"pat_1001"}}}'
