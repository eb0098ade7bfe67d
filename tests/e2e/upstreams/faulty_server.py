"""A deliberately faulty Streamable HTTP upstream for toolgate's fault tests. It answers
`initialize` and `tools/list` properly, then misbehaves on `tools/call` by tool name:

- `ok`: a normal result;
- `garbage`: HTTP 200, `application/json`, a body that is not JSON;
- `slow`: answers after `SLOW_SECONDS` (default 5);
- `cut`: an SSE answer that sends one progress notification, then closes the stream;
- `http500`: HTTP 500 with a text body;
- `die`: the process exits at once without answering.

    python faulty_server.py --port 0      # prints "faulty-server: listening on http://HOST:PORT/mcp"

Plain `http.server` on purpose: no MCP SDK would misbehave like this.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in ("ok", "garbage", "slow", "cut", "http500", "die")]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.send(405, b"")

    def do_DELETE(self) -> None:  # noqa: N802
        self.send(200, b"")

    def do_POST(self) -> None:  # noqa: N802
        msg = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if "id" not in msg:
            self.send(202, b"")
            return
        rid, method = msg["id"], msg.get("method")
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "faulty", "version": "1"}}
            self.send(200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode(),
                      extra={"Mcp-Session-Id": "faulty-session"})
            return
        if method == "tools/list":
            self.send(200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}}).encode())
            return
        if method != "tools/call":
            self.send(200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {}}).encode())
            return
        tool = msg["params"]["name"]
        ok = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": f"{tool} done"}]}}).encode()
        if tool == "garbage":
            self.send(200, b"this is not json {{{")
        elif tool == "slow":
            time.sleep(float(os.environ.get("SLOW_SECONDS", "5")))
            self.send(200, ok)
        elif tool == "cut":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "starting"}}
            self.wfile.write(f"event: message\ndata: {json.dumps(note)}\n\n".encode())
            self.wfile.flush()
            self.close_connection = True
        elif tool == "http500":
            self.send(500, b"internal trouble", "text/plain")
        elif tool == "die":
            os._exit(3)
        else:
            self.send(200, ok)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    host, port = httpd.server_address[:2]
    print(f"faulty-server: listening on http://{host}:{port}/mcp", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
