"""Trace export: with `[tracing] otlp_endpoint`, each judged `tools/call` becomes one span
posted over OTLP/HTTP (JSON) to a collector (here a small HTTP server the test runs, which
keeps what it receives). A `traceparent` in the request's `_meta` makes the span a child
of the agent's span; a call without one starts a trace of its own."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from helpers import demo_server

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                collector.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict[str, Any]]:
        out = []
        for path, body in self.posts:
            assert path == "/v1/traces", path
            for rs in body["resourceSpans"]:
                service = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
                assert service["service.name"] == "toolgate-e2e", service
                for ss in rs["scopeSpans"]:
                    out += ss["spans"]
        return out


def attrs(span: dict[str, Any]) -> dict[str, str]:
    return {a["key"]: a["value"]["stringValue"] for a in span["attributes"]}


def test_calls_are_exported_as_spans_continuing_the_agents_trace(gateways: Any, demo_policy: Any) -> None:
    collector = Collector()
    try:
        gw = gateways.new([demo_server()], {"demo": demo_policy},
                          extra={"tracing": {"otlp_endpoint": collector.url, "service_name": "toolgate-e2e"}})
        token = gw.grant("demo", "tracing")
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
                   "accept": "application/json, text/event-stream"}
        url = gw.url("demo")
        with httpx.Client(timeout=20) as http:
            init = http.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "tracing", "version": "1"}},
            })
            assert init.status_code == 200, init.text
            session = {**headers, "mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
            http.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})

            def call(n: int, tool: str, meta: dict[str, Any] | None) -> None:
                params: dict[str, Any] = {"name": tool, "arguments": {"limit": 1} if tool == "list_patients" else {}}
                if meta:
                    params["_meta"] = meta
                r = http.post(url, headers=session, json={"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params})
                assert r.status_code == 200, r.text

            call(2, "list_patients", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
            call(3, "list_providers", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
            call(4, "list_patients", None)
            call(5, "list_patients", {"traceparent": "not a trace context"})
        deadline = time.monotonic() + 10
        while len(collector.spans()) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        spans = collector.spans()
        assert len(spans) == 4, spans
        by_tool = {}
        for s in spans:
            by_tool.setdefault(attrs(s)["mcp.tool"], []).append(s)
        child = next(s for s in by_tool["list_patients"] if s["traceId"] == TRACE)
        assert child["parentSpanId"] == PARENT and child["kind"] == 2, child
        assert child["name"] == "tools/call list_patients"
        a = attrs(child)
        assert (a["mcp.server"], a["toolgate.grant"], a["toolgate.decision"], a["toolgate.outcome"]) == (
            "demo", "tracing", "allow", "ok"), a
        assert child["status"]["code"] == 0, "unset: nothing failed"
        assert int(child["endTimeUnixNano"]) >= int(child["startTimeUnixNano"]) > 1_700_000_000 * 10**9
        [denied] = by_tool["list_providers"]
        assert denied["traceId"] == TRACE and attrs(denied)["toolgate.decision"] == "deny", denied
        assert attrs(denied)["toolgate.rule"] == "(default deny)" and denied["status"]["code"] == 2, denied
        fresh = [s for s in by_tool["list_patients"] if s["traceId"] != TRACE]
        assert len(fresh) == 2, by_tool["list_patients"]
        for s in fresh:
            assert len(s["traceId"]) == 32 and s["traceId"] != "0" * 32 and "parentSpanId" not in s, s
        assert fresh[0]["traceId"] != fresh[1]["traceId"]
    finally:
        collector.server.shutdown()
