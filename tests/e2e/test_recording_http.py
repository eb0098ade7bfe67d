"""Through toolgate to a Python `MCPServer` (mcp 2.3.0) over Streamable HTTP, in three
modes (sessions with SSE answers, sessions with JSON answers, stateless): the basic
list/allow/deny set, progress, and which headers reach the upstream."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from helpers import (
    assert_allowed,
    assert_denied,
    expect_mcp_error,
    http_server,
    mcp_client,
    recorded_requests,
    run,
    tool_names,
)

RECORDING_POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["shutdown_server"],
    "tools": {
        "echo": {"require": [{"path": "args.text", "op": "exists", "value": True}]},
        "add": {"deny_if": [{"path": "args.a", "op": "gt", "value": 1000}]},
        "delete_everything": {"action": "deny", "reason": "Nothing is deleted by an agent."},
        "slow_progress": {},
        "seen_headers": {},
    },
}


@pytest.fixture(params=["sse", "json", "stateless"])
def recording(request: pytest.FixtureRequest, upstreams: Any) -> Any:
    return upstreams.recording(request.param)


def gateway_to(gateways: Any, recording: Any) -> Any:
    """A gateway in front of the recording server, with upstream credentials in the config."""
    secret = secrets.token_hex(8)
    gw = gateways.new(
        [
            http_server(
                "rec",
                "recording",
                recording.url,
                headers={"Authorization": f"Bearer up-secret-{secret}", "X-Upstream-Key": f"key-{secret}"},
            )
        ],
        {"recording": RECORDING_POLICY},
    )
    gw.upstream_secret = secret
    return gw


@pytest.fixture
def through(gateways: Any, recording: Any) -> Any:
    return gateway_to(gateways, recording)


def test_list_allow_deny(through: Any) -> None:
    token = through.grant("rec", "basic")

    async def scenario() -> None:
        async with mcp_client(through.url("rec"), token) as client:
            assert await tool_names(client) == {"echo", "add", "slow_progress", "seen_headers"}
            assert assert_allowed(await client.call_tool("echo", {"text": "hello"})) == "hello"
            result = await client.call_tool("add", {"a": 2, "b": 40})
            assert_allowed(result)
            assert result.structured_content == {"result": 42.0}, "structured content passes through"
            assert_denied(await client.call_tool("add", {"a": 5000, "b": 1}), "/tools/add/deny_if/0")
            assert_denied(
                await client.call_tool("delete_everything", {"confirm": True}),
                "/tools/delete_everything/action",
                "Nothing is deleted by an agent.",
            )
            assert_denied(await client.call_tool("server_time", {}), "(default deny)")
            assert_denied(await client.call_tool("echo", {}), "/tools/echo/require/0")
            await expect_mcp_error(client.call_tool("shutdown_server", {}), -32602)

    run(scenario)


def test_progress(gateways: Any, upstreams: Any) -> None:
    # Only with SSE answers: an upstream that answers with plain JSON (json_response) has no
    # channel for notifications during a request, so it sends no progress at all.
    through = gateway_to(gateways, upstreams.recording("sse"))
    token = through.grant("rec", "progress")

    async def scenario() -> list[tuple[float, float | None, str | None]]:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        async with mcp_client(through.url("rec"), token) as client:
            result = await client.call_tool("slow_progress", {"steps": 3}, progress_callback=on_progress)
            assert_allowed(result, contains="done after 3 steps")
        return seen

    assert run(scenario) == [(1, 3, "step 1/3"), (2, 3, "step 2/3"), (3, 3, "step 3/3")]


def test_agent_authorization_is_never_forwarded(through: Any, recording: Any) -> None:
    token = through.grant("rec", "headers")
    secret = through.upstream_secret

    async def scenario() -> dict[str, str]:
        async with mcp_client(through.url("rec"), token) as client:
            result = await client.call_tool("seen_headers", {})
            assert_allowed(result)
            return json.loads(result.content[0].text)["headers"]

    headers = run(scenario)
    assert headers["authorization"] == f"Bearer up-secret-{secret}", "the configured upstream header is sent"
    assert headers["x-upstream-key"] == f"key-{secret}"
    assert token not in json.dumps(headers), "the agent's token reached the upstream"
    # Every HTTP request this gateway made upstream (initialize, notifications, GET, DELETE...).
    ours = [r for r in recorded_requests(recording) if r["headers"].get("x-upstream-key") == f"key-{secret}"]
    assert ours, "no upstream request carried the configured headers"
    for request in ours:
        assert request["headers"].get("authorization") == f"Bearer up-secret-{secret}", request
    assert all(token not in json.dumps(r) for r in recorded_requests(recording)), "agent token seen upstream"
