"""The 2026-07-28 (modern, stateless) era through toolgate: the Python SDK client in mode
"2026-07-28" (and "auto") against a Python `MCPServer` over Streamable HTTP, which serves
both eras. No initialize, no session: every request is judged on its own. Also the era's
HTTP rules: `Mcp-Method`/`Mcp-Name` must match the body (400, -32020) and GET/DELETE are
405; a modern request to a stdio server gets a clear error naming the mismatch."""

from __future__ import annotations

from typing import Any

import httpx
import mcp

from helpers import MCP_HEADERS, assert_allowed, assert_denied, demo_server, http_server, run, tool_names

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["shutdown_server"],
    "tools": {"echo": {}, "add": {"deny_if": [{"path": "args.a", "op": "gt", "value": 100}]}, "seen_headers": {}},
}
MODERN = "2026-07-28"


def modern_client(url: str, token: str, mode: str = MODERN, **callbacks: Any) -> Any:
    """The Python SDK's client in `mode`; `callbacks` (elicitation_callback, ...) as
    `mcp.Client` takes them."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0))
    return mcp.Client(streamable_http_client(url, http_client=http), mode=mode, cache=None, **callbacks)


def test_a_modern_client_through_toolgate(gateways: Any, upstreams: Any) -> None:
    upstream = upstreams.recording("sse")
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": POLICY})
    token = gw.grant("rec", "modern")

    async def scenario(mode: str) -> None:
        async with modern_client(gw.url("rec"), token, mode) as client:
            assert await tool_names(client) == {"echo", "add", "seen_headers"}
            assert_allowed(await client.call_tool("echo", {"text": "stateless"}), "stateless")
            assert_allowed(await client.call_tool("add", {"a": 2, "b": 3}), "5")
            assert_denied(await client.call_tool("add", {"a": 500, "b": 1}), "/tools/add/deny_if/0")
            assert_denied(await client.call_tool("delete_everything", {}), "(default deny)")

    run(lambda: scenario(MODERN))
    run(lambda: scenario("auto"))
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert len(calls) == 8
    # Forwarded as they are: both sides spoke 2026-07-28 (mode "auto" too, after its probe).
    assert {(c.get("client_era"), c.get("upstream_era")) for c in calls} == {("2026-07-28", "2026-07-28")}, calls
    # Mode 2026-07-28 never initializes: its four calls are stateless, one "session" each.
    stateless = [c for c in calls[:4] if c["session"].startswith("modern-")]
    assert len(stateless) == 4 and len({c["session"] for c in stateless}) == 4, calls[:4]


def test_modern_http_rules(gateways: Any, upstreams: Any) -> None:
    upstream = upstreams.recording("sse")
    gw = gateways.new([http_server("rec", "p", upstream.url), demo_server("demo", "p")], {"p": POLICY})
    token = gw.grant("rec", "modern-rules")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": MODERN})
    meta = {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}} | meta}

    r = httpx.post(gw.url("rec"), json=call, headers=headers | {"Mcp-Method": "tools/list"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020 and r.json()["id"] == 3, r.text
    r = httpx.post(gw.url("rec"), json=call, headers=headers | {"Mcp-Method": "tools/call", "Mcp-Name": "add"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020, r.text
    for method in ("GET", "DELETE"):
        r = httpx.request(method, gw.url("rec"), headers=headers, timeout=30)
        assert r.status_code == 405 and r.headers["allow"] == "POST", (method, r.status_code, r.text)

    # A stdio server has no 2026-07-28 era: toolgate relays the request over a legacy session
    # of its own (test_era_translation.py); here the demo itself answers that it has no `echo`.
    demo_token = gw.grant("demo", "modern-demo")
    demo_headers = headers | {"Authorization": f"Bearer {demo_token}", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
    r = httpx.post(gw.url("demo"), json=call, headers=demo_headers, timeout=30)
    assert r.status_code == 200 and '"tool not found"' in r.text and '"id":3' in r.text, r.text


def test_a_modern_request_to_a_legacy_sse_upstream_goes_over_a_legacy_session(
    gateways: Any, upstreams: Any
) -> None:
    upstream = upstreams.recording("legacy-sse")
    gw = gateways.new([{"name": "legacy", "policy": "p", "sse_url": upstream.url}], {"p": POLICY})
    token = gw.grant("legacy", "modern-to-sse")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": MODERN})
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}}
    r = httpx.post(gw.url("legacy"), json=call, headers=headers | {"Mcp-Method": "tools/call", "Mcp-Name": "echo"}, timeout=30)
    # toolgate holds a legacy session to the server and relays the request over it; the
    # result gets the `resultType` the 2026-07-28 era requires.
    assert r.status_code == 200 and '"id":9' in r.text, r.text
    assert '"resultType":"complete"' in r.text and '"text":"x"' in r.text, r.text
