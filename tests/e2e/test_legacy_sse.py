"""A legacy HTTP+SSE upstream (`sse_url`, the 2024-11-05 transport: GET /sse, then POSTs to
the endpoint it names), a real Python `MCPServer` served with `sse_app()`, behind toolgate,
driven by the Python SDK client: enforcement, filtering, progress, and upstream headers."""

from __future__ import annotations

from typing import Any

from helpers import assert_allowed, assert_denied, mcp_client, run, tool_names

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["shutdown_server"],
    "tools": {
        "echo": {},
        "add": {"deny_if": [{"path": "args.a", "op": "gt", "value": 1000}]},
        "slow_progress": {},
        "seen_headers": {},
        "delete_everything": {"action": "deny", "reason": "Not through an agent."},
    },
}


def test_a_legacy_sse_upstream_behind_toolgate(gateways: Any, upstreams: Any) -> None:
    upstream = upstreams.recording("legacy-sse")
    server = {"name": "legacy", "policy": "p", "sse_url": upstream.url, "headers": {"X-Upstream-Key": "k-123"}}
    gw = gateways.new([server], {"p": POLICY})
    token = gw.grant("legacy", "legacy-sse")

    async def scenario() -> None:
        async with mcp_client(gw.url("legacy"), token) as client:
            assert await tool_names(client) == {"echo", "add", "slow_progress", "seen_headers"}
            assert_allowed(await client.call_tool("echo", {"text": "over sse"}), "over sse")
            assert_allowed(await client.call_tool("add", {"a": 2, "b": 3}), "5")
            assert_denied(await client.call_tool("add", {"a": 5000, "b": 1}), "/tools/add/deny_if/0")
            assert_denied(await client.call_tool("delete_everything", {"confirm": True}), "/tools/delete_everything/action")
            seen: list[float] = []

            async def progress(p: float, total: float | None, message: str | None) -> None:
                seen.append(p)

            result = await client.call_tool("slow_progress", {"steps": 3}, progress_callback=progress)
            assert_allowed(result, "done after 3 steps")
            assert seen == [1, 2, 3], seen
            headers = await client.call_tool("seen_headers", {})
            text = assert_allowed(headers)
            assert "k-123" in text, "the configured upstream header reaches the server"
            assert token not in text, "the agent's token never goes upstream"

    run(scenario)
    calls = {r["tool"]: r["decision"] for r in gw.audit_records("--kind", "call") if r.get("tool")}
    assert calls["echo"] == "allow" and calls["delete_everything"] == "deny"
