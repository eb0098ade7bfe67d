"""Bad input to `/mcp/{server}`: each case gets a defined HTTP status and, where there is a
JSON-RPC answer, a defined error code; afterwards the gateway is still up, still serves a
normal call, and its audit log still verifies. Raw HTTP (httpx): no SDK sends these."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from helpers import INITIALIZE, MCP_HEADERS, demo_server

POLICY = {"version": "1", "default": "deny", "tools": {"list_patients": {}, "search_patients": {}}}

PARSE, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602


def call(name: Any, arguments: Any = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name} if name is not None else {}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params} | extra


def nested(depth: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_patients","arguments":{"a":' + b"[" * depth + b"]" * depth + b"}}}"


# (id, body (bytes or JSON value), extra headers, expected HTTP status, expected JSON-RPC error code or None)
CASES: list[tuple[str, Any, dict[str, str], int, int | None]] = [
    ("malformed-json", b'{"jsonrpc": "2.0", "id": 1,', {}, 400, PARSE),
    ("trailing-garbage", b'{"jsonrpc":"2.0","id":1,"method":"ping"} xyz', {}, 400, PARSE),
    ("empty-body", b"", {}, 400, PARSE),
    ("whitespace-body", b"   \n ", {}, 400, PARSE),
    ("utf8-bom", b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}', {}, 400, PARSE),
    ("invalid-utf8", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_patients","arguments":{"q":"\xff\xfe"}}}', {}, 400, PARSE),
    ("nan", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', {}, 400, PARSE),
    ("json-string", "just a string", {}, 400, INVALID_REQUEST),
    ("json-null", None, {}, 400, INVALID_REQUEST),
    ("json-number", 42, {}, 400, INVALID_REQUEST),
    ("empty-batch", [], {}, 400, INVALID_REQUEST),
    ("batch", [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}], {}, 400, INVALID_REQUEST),
    ("wrong-jsonrpc", {"jsonrpc": "1.0", "id": 1, "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("missing-jsonrpc", {"id": 1, "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("missing-method", {"jsonrpc": "2.0", "id": 1}, {}, 400, INVALID_REQUEST),
    ("method-not-string", {"jsonrpc": "2.0", "id": 1, "method": 5}, {}, 400, INVALID_REQUEST),
    ("id-array", {"jsonrpc": "2.0", "id": [1], "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("id-object", {"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("id-bool", {"jsonrpc": "2.0", "id": True, "method": "ping"}, {}, 400, INVALID_REQUEST),
    # MCP ids are strings or integers: a fractional id is refused at once (an upstream may
    # never echo it; the request would wait for the upstream timeout).
    ("id-float", {"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("id-exponent", {"jsonrpc": "2.0", "id": 1e3, "method": "ping"}, {}, 400, INVALID_REQUEST),
    ("id-huge", {"jsonrpc": "2.0", "id": 2**64, "method": "ping"}, {}, 400, INVALID_REQUEST),
    # A method that must be judged, sent without an id (or with a null one), is refused:
    # relayed as a notification it would run unjudged and unaudited.
    ("call-without-id", {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "list_patients"}}, {}, 400, INVALID_REQUEST),
    ("call-null-id", {"jsonrpc": "2.0", "id": None, "method": "tools/call", "params": {"name": "list_patients"}}, {}, 400, INVALID_REQUEST),
    ("duplicate-keys", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', {}, 400, PARSE),
    ("params-array", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ["list_patients"]}, {}, 200, INVALID_PARAMS),
    # The envelope is read; the arguments are too deep to judge: refused, not forwarded.
    ("deep-nesting-100000", nested(100_000), {}, 200, INVALID_PARAMS),
    ("call-without-name", call(None, {}), {}, 200, INVALID_PARAMS),
    ("call-name-number", call(5, {}), {}, 200, INVALID_PARAMS),
    ("call-arguments-array", call("list_patients", [1, 2]), {}, 200, INVALID_PARAMS),
    ("call-arguments-string", call("list_patients", "limit=1"), {}, 200, INVALID_PARAMS),
    # `arguments: null` is judged as no arguments (`{}`) and passed on.
    ("call-arguments-null", {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "list_patients", "arguments": None}}, {}, 200, None),
    ("call-unlisted-tool", call("drop_database", {}), {}, 200, None),
    ("call-huge-name", call("x" * 100_000, {}), {}, 200, None),
    ("huge-string-id", {"jsonrpc": "2.0", "id": "i" * 100_000, "method": "ping"}, {}, 200, None),
    ("huge-string-argument", call("search_patients", {"query": "q" * 1_000_000}), {}, 200, None),
    ("unknown-method", {"jsonrpc": "2.0", "id": 1, "method": "no/such/method"}, {}, 200, METHOD_NOT_FOUND),
    ("over-max-body", call("search_patients", {"query": "q" * (5 * 1024 * 1024)}), {}, 413, INVALID_REQUEST),
    ("content-type-text", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Content-Type": "text/plain"}, 415, INVALID_REQUEST),
    ("content-type-form", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Content-Type": "application/x-www-form-urlencoded"}, 415, INVALID_REQUEST),
    ("accept-html", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Accept": "text/html"}, 406, INVALID_REQUEST),
    ("bad-protocol-version-header", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"MCP-Protocol-Version": "yesterday"}, 400, INVALID_REQUEST),
    ("foreign-origin", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Origin": "https://evil.example"}, 403, INVALID_REQUEST),
    ("unknown-session", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Mcp-Session-Id": "tgs_00000000000000000000000000000000"}, 404, -32001),
    ("response-nobody-asked-for", {"jsonrpc": "2.0", "id": 424242, "result": {}}, {}, 202, None),
    ("charset-ok", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Content-Type": "application/json; charset=utf-8"}, 200, None),
]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import GatewayFactory

    factory = GatewayFactory(tmp_path_factory.mktemp("bad-input"))
    gw = factory.new([demo_server("demo", "p")], {"p": POLICY}, extra={"body_timeout": "2s"})
    token = gw.grant("demo", "bad-input")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
    httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers, timeout=30)
    yield gw, headers
    factory.stop_all()


def answer_of(r: httpx.Response) -> dict[str, Any] | None:
    if r.status_code == 202 or not r.content:
        return None
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if "result" in msg or "error" in msg:
                    return msg
        return None
    return r.json()


@pytest.mark.parametrize("name,body,extra,status,code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_defined_answer(session: Any, name: str, body: Any, extra: dict[str, str], status: int, code: int | None) -> None:
    gw, headers = session
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    # Every case is answered at once: nothing here waits for the upstream's timeout.
    r = httpx.post(gw.url("demo"), content=content, headers=headers | extra, timeout=10)
    assert r.status_code == status, f"{name}: HTTP {r.status_code}: {r.text[:300]}"
    msg = answer_of(r)
    if code is not None:
        assert msg is not None and "error" in msg, f"{name}: expected JSON-RPC error {code}, got {r.text[:300]}"
        assert msg["error"]["code"] == code, f"{name}: {msg['error']}"
        assert msg["error"]["message"], name
    if name == "call-unlisted-tool":
        assert msg is not None and msg["result"]["isError"] is True
    assert httpx.get(gw.base_url + "/healthz", timeout=10).status_code == 200, f"{name}: the gateway went down"


def test_a_100_mb_body_is_refused_without_reading_it_all(session: Any) -> None:
    gw, headers = session
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (100 * 1024 * 1024) + b'"}}'
    try:
        r = httpx.post(gw.url("demo"), content=body, headers=headers, timeout=60)
        assert r.status_code == 413, r.text[:200]
    except httpx.HTTPError:
        pass  # the gateway may close the connection once the limit is passed: also a refusal
    assert httpx.get(gw.base_url + "/healthz", timeout=10).status_code == 200


def test_a_slowloris_body_times_out(session: Any) -> None:
    gw, headers = session
    host, port = gw.base_url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    try:
        head = f"POST /mcp/demo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + b'{"jsonrpc":')
        started = time.monotonic()
        data = s.recv(4096)
        waited = time.monotonic() - started
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
        assert waited < 25, f"held for {waited:.0f} s"
    finally:
        s.close()


def test_after_all_that_the_gateway_serves_and_its_audit_verifies(session: Any) -> None:
    gw, headers = session
    r = httpx.post(gw.url("demo"), json=call("list_patients", {"limit": 1}), headers=headers, timeout=30)
    msg = answer_of(r)
    assert r.status_code == 200 and msg is not None and not msg["result"].get("isError"), r.text[:300]
    assert gw.cli("audit verify").stdout.startswith("ok: ")
