"""A stdio MCP server that, like many real ones, lists a tool only to clients with a
capability: `summarise` (which would use sampling) only when the client declared
`sampling` in `initialize`. Plain JSON-RPC lines: the behaviour is the point.

    python caps_server.py
"""

from __future__ import annotations

import json
import sys

caps: dict = {}
for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    rid, method = msg["id"], msg["method"]
    if method == "initialize":
        caps = msg["params"].get("capabilities", {})
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "caps", "version": "1"}}
    elif method == "tools/list":
        tools = [{"name": "lookup", "description": "Look a key up.", "inputSchema": {"type": "object"}}]
        if "sampling" in caps:
            tools.append({"name": "summarise", "description": "Summarise a text with the client's model.",
                          "inputSchema": {"type": "object"}})
        result = {"tools": tools}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": f"{msg['params']['name']} done"}]}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}) + "\n")
    sys.stdout.flush()
