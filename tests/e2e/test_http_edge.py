"""What toolgate answers before MCP (auth, routing, body checks), its startup lines, and
config path resolution; raw HTTP with httpx where no SDK client would get that far."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from helpers import (
    INITIALIZE,
    MCP_HEADERS,
    QUICKSTART_RE,
    SERVER_LINE_RE,
    assert_allowed,
    demo_server,
    mcp_client,
    run,
    tool_names,
)

SMALL_POLICY = {"version": "1", "default": "deny", "tools": {"list_patients": {}}}


@pytest.fixture
def two_servers(gateways: Any) -> Any:
    return gateways.new(
        [demo_server("demo", "small"), demo_server("other", "small")],
        {"small": SMALL_POLICY},
        extra={"max_body": "64KiB"},
    )


def post(url: str, token: str | None, body: Any = INITIALIZE, headers: dict[str, str] | None = None) -> httpx.Response:
    all_headers = dict(MCP_HEADERS)
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers=all_headers, timeout=30.0)


def test_401_without_token(two_servers: Any) -> None:
    response = post(two_servers.url("demo"), None)
    assert response.status_code == 401, response.text
    assert "www-authenticate" in response.headers
    assert response.headers["www-authenticate"].lower().startswith("bearer"), response.headers["www-authenticate"]


def test_401_with_bad_token(two_servers: Any) -> None:
    for token in ["tg_not-a-real-token", "garbage"]:
        response = post(two_servers.url("demo"), token)
        assert response.status_code == 401, response.text
        assert "www-authenticate" in response.headers
    # Not a bearer scheme at all.
    response = post(two_servers.url("demo"), None, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401, response.text


def test_403_with_token_for_another_server(two_servers: Any) -> None:
    other = two_servers.grant("other", "other-token")
    response = post(two_servers.url("demo"), other)
    assert response.status_code == 403, response.text
    # ...and the same token works where it belongs.
    response = post(two_servers.url("other"), other)
    assert response.status_code == 200, response.text


def test_404_unknown_server(two_servers: Any) -> None:
    token = two_servers.grant("demo", "demo-token")
    response = post(two_servers.url("no-such-server"), token)
    assert response.status_code == 404, response.text


def test_415_406_413(two_servers: Any) -> None:
    token = two_servers.grant("demo", "body-checks")
    url = two_servers.url("demo")
    response = post(url, token, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415, response.text
    response = post(url, token, headers={"Accept": "text/html"})
    assert response.status_code == 406, response.text
    big = dict(INITIALIZE, params=dict(INITIALIZE["params"], padding="x" * 100_000))
    response = post(url, token, body=big)
    assert response.status_code == 413, response.text


def test_revoked_grant_is_refused(two_servers: Any) -> None:
    grant = two_servers.grant_json("demo", "to-revoke")
    assert post(two_servers.url("demo"), grant["token"]).status_code == 200
    two_servers.cli("grants revoke", str(grant["id"]))
    response = post(two_servers.url("demo"), grant["token"])
    assert response.status_code == 401, response.text


def test_grants_json_shape(two_servers: Any) -> None:
    grant = two_servers.grant_json("demo", "shape-test", policy="small")
    assert {"id", "label", "server", "policy", "token", "expires_at"} <= set(grant), grant
    assert grant["label"] == "shape-test" and grant["server"] == "demo" and grant["policy"] == "small", grant


def test_startup_lines_and_quickstart_grant(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "small")], {"small": SMALL_POLICY})
    out = gw.stdout
    servers = dict(SERVER_LINE_RE.findall(out))
    assert servers.get("demo") == gw.url("demo"), out
    assert f"toolgate: dashboard at {gw.base_url}/ (sign in with a token from" in out, out
    page = httpx.get(gw.base_url + "/", timeout=10)
    assert page.status_code == 200 and "toolgate" in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    quickstart = dict(QUICKSTART_RE.findall(out))
    assert "demo" in quickstart, f"first start with an empty store prints a quickstart grant:\n{out}"

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), quickstart["demo"]) as client:
            assert await tool_names(client) == {"list_patients"}
            assert_allowed(await client.call_tool("list_patients", {}))

    run(scenario)
    gw.restart()
    assert not QUICKSTART_RE.search(gw.stdout), "the quickstart grant is printed on the first start only"


def test_relative_paths_resolve_against_the_config_folder(gateways: Any, tmp_path: Any) -> None:
    elsewhere = tmp_path / "elsewhere"
    gw = gateways.new([demo_server("demo", "small")], {"small": SMALL_POLICY}, relative_paths=True, cwd=elsewhere)
    token = gw.grant("demo", "relative-test")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            assert_allowed(await client.call_tool("list_patients", {}))

    run(scenario)
    assert gw.db_path.exists(), "sqlite://toolgate.db must be created next to toolgate.toml"
    assert not (elsewhere / "toolgate.db").exists(), "the store must not follow the working directory"


def test_healthz(two_servers: Any) -> None:
    response = httpx.get(f"{two_servers.base_url}/healthz", timeout=10.0)
    assert response.status_code == 200, response.text
    assert re.match(r"^http://127\.0\.0\.1:\d+$", two_servers.base_url)
