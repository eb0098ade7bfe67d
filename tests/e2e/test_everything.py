"""The basic list/allow/deny set, through toolgate, against the reference everything server
(npm @modelcontextprotocol/server-everything) over stdio and over streamableHttp."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import (
    EVERYTHING_BIN,
    assert_allowed,
    assert_denied,
    everything_stdio_server,
    expect_mcp_error,
    http_server,
    mcp_client,
    run,
    tool_names,
)

EVERYTHING_POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["get-env"],
    "tools": {
        "echo": {},
        "get-sum": {
            "deny_if": [{"path": "args.a", "op": "gt", "value": 100}],
            "on_deny": "Sums over 100 are not for agents.",
        },
        "trigger-long-running-operation": {},
        "get-tiny-image": {"action": "deny", "reason": "No images."},
    },
}
ENV_POLICY = {"version": "1", "default": "deny", "tools": {"get-env": {}}}


@pytest.fixture(params=["stdio", "streamableHttp"])
def everything(request: pytest.FixtureRequest, gateways: Any, upstreams: Any) -> Any:
    if request.param == "stdio":
        server = everything_stdio_server("everything", "everything", env={"TOOLGATE_E2E_UPSTREAM": "from-config"})
    else:
        server = http_server("everything", "everything", upstreams.everything_http().url)
    return gateways.new([server], {"everything": EVERYTHING_POLICY, "env": ENV_POLICY})


def test_list_tools_is_filtered(everything: Any) -> None:
    token = everything.grant("everything", "list")

    async def scenario() -> set[str]:
        async with mcp_client(everything.url("everything"), token) as client:
            return await tool_names(client)

    assert run(scenario) == {"echo", "get-sum", "trigger-long-running-operation"}


def test_allow_deny_hidden(everything: Any) -> None:
    token = everything.grant("everything", "calls")

    async def scenario() -> None:
        async with mcp_client(everything.url("everything"), token) as client:
            assert assert_allowed(await client.call_tool("echo", {"message": "hi there"})) == "Echo: hi there"
            result = await client.call_tool("get-sum", {"a": 2, "b": 3})
            assert assert_allowed(result) == "The sum of 2 and 3 is 5."
            result = await client.call_tool("get-sum", {"a": 500, "b": 3})
            denial = assert_denied(result, "/tools/get-sum/deny_if/0", "Sums over 100 are not for agents.")
            assert denial.why and "500" in denial.why, denial.text
            assert_denied(await client.call_tool("get-tiny-image", {}), "/tools/get-tiny-image/action", "No images.")
            assert_denied(await client.call_tool("get-annotated-message", {"messageType": "error"}), "(default deny)")
            await expect_mcp_error(client.call_tool("get-env", {}), -32602)

    run(scenario)


def test_progress(everything: Any) -> None:
    token = everything.grant("everything", "progress")

    async def scenario() -> list[tuple[float, float | None]]:
        seen: list[tuple[float, float | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total))

        async with mcp_client(everything.url("everything"), token) as client:
            result = await client.call_tool(
                "trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress
            )
            assert_allowed(result, contains="Long running operation completed")
        return seen

    assert run(scenario) == [(1, 3), (2, 3), (3, 3)]


def test_stdio_env_reaches_the_upstream(gateways: Any) -> None:
    """`env` in a stdio server's config is the child's environment (upstream credentials)."""
    server = everything_stdio_server("everything", "env", env={"TOOLGATE_E2E_UPSTREAM": "from-config"})
    gw = gateways.new([server], {"env": ENV_POLICY})
    token = gw.grant("everything", "env")

    async def scenario() -> dict[str, str]:
        async with mcp_client(gw.url("everything"), token) as client:
            return json.loads(assert_allowed(await client.call_tool("get-env", {})))

    env = run(scenario)
    assert env.get("TOOLGATE_E2E_UPSTREAM") == "from-config"


def test_bare_command_is_found_on_path(gateways: Any) -> None:
    """`command = "node"` (no path) is looked up on PATH, as a shell would, like
    `command = "npx"` in a user's config."""
    entry = EVERYTHING_BIN.resolve()  # node_modules/@modelcontextprotocol/server-everything/dist/index.js
    server = {"name": "everything", "policy": "everything", "command": "node", "args": [str(entry), "stdio"]}
    gw = gateways.new([server], {"everything": EVERYTHING_POLICY})
    token = gw.grant("everything", "bare-command")

    async def scenario() -> str:
        async with mcp_client(gw.url("everything"), token) as client:
            return assert_allowed(await client.call_tool("echo", {"message": "via PATH"}))

    assert run(scenario) == "Echo: via PATH"
