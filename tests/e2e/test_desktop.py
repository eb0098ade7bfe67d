"""What a desktop user hits (issue 26), the gateway's side: approvals that expire after the
agent left are audited, one-shot sessions are closed sooner, and messages say what they
mean."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from helpers import INITIALIZE, MCP_HEADERS, demo_server


def test_an_approval_that_expires_after_the_agent_left_is_audited(gateways: Any) -> None:
    """Item 5: every state change of an approval is an audit record, whoever is waiting."""
    policy = {"version": "1", "default": "deny",
              "tools": {"refund_payment": {"action": "require_approval", "approval": {"timeout": "2s"}}}}
    gw = gateways.new([demo_server("demo", "p")], {"p": policy})
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {gw.grant('demo')}", Accept="application/json")
    r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
    headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "refund_payment", "arguments": {"payment_id": "pay_5001", "amount": 1, "reason": "duplicate"}}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url("demo"), json=call, headers=headers, timeout=0.5)  # the agent leaves
    deadline = time.monotonic() + 20
    while True:
        events = [r["decision"] for r in gw.audit_records("--kind", "approval")]
        if "expired" in events or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert events == ["requested", "expired"], events
    listed = json.loads(gw.cli("approvals list", "--all", "--json").stdout)
    assert [a["status"] for a in listed] == ["expired"], listed


def metric(gw: Any, name: str, server: str) -> float:
    import re

    text = httpx.get(gw.base_url + "/metrics", timeout=10).text
    m = re.search(rf'^toolgate_{name}\{{server="{server}"\}} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def test_one_shot_sessions_are_closed_sooner(gateways: Any) -> None:
    """Item 4: a client that initializes, lists and leaves without DELETE (the Inspector's
    HTTP mode) keeps no stdio child for long (`session_idle_brief`); a session in real use
    is kept; open sessions show in /metrics and the status API."""
    from helpers import DEMO_POLICY_FILE

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, extra={"session_idle_brief": "1s"})
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {gw.grant('demo')}")

    def session(requests: int) -> dict[str, str]:
        r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
        h = dict(headers, **{"Mcp-Session-Id": r.headers["mcp-session-id"]})
        httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h, timeout=30)
        for i in range(requests):
            httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "id": 10 + i, "method": "tools/list"}, headers=h, timeout=30)
        return h

    session(1)
    kept = session(3)
    assert metric(gw, "upstream_channels", "demo") == 2
    out = gw.cli("admin-tokens create", "--name", "v", "--role", "viewer", "--json").stdout
    viewer = json.loads(out.strip().splitlines()[-1])["token"]
    status = httpx.get(gw.base_url + "/api/v1/status", headers={"Authorization": f"Bearer {viewer}"}, timeout=10).json()
    assert status["sessions"] == [{"server": "demo", "open": 2, "channels": 2}], status
    deadline = time.monotonic() + 25
    while metric(gw, "upstream_channels", "demo") != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metric(gw, "upstream_channels", "demo") == 1
    r = httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "id": 99, "method": "ping"}, headers=kept, timeout=30)
    assert r.status_code == 200, r.text


def test_a_legacy_sse_client_is_told_which_transport_is_served(gateways: Any) -> None:
    """Item 7: a legacy HTTP+SSE client opening its event stream at /mcp/{server} hears that
    toolgate speaks Streamable HTTP there, not only `missing Mcp-Session-Id`."""
    from helpers import DEMO_POLICY_FILE

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()})
    token = gw.grant("demo")
    r = httpx.get(gw.url("demo"), headers={"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "Streamable HTTP" in message and "legacy HTTP+SSE" in message, message
    # Without a token, authentication still comes first.
    assert httpx.get(gw.url("demo"), headers={"Accept": "text/event-stream"}, timeout=10).status_code == 401


def test_scan_recognises_a_legacy_sse_url(upstreams: Any, tmp_path: Any) -> None:
    """Item 7: `toolgate scan URL` on an HTTP+SSE-only server says which transport it found
    and lists the tools over it, rather than `answered "initialize" with HTTP 404`."""
    import subprocess

    from helpers import toolgate_bin

    upstream = upstreams.recording("legacy-sse")
    proc = subprocess.run([str(toolgate_bin()), "scan", "--format", "json", upstream.url], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "legacy HTTP+SSE" in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    names = {n for n in ["echo", "add", "slow_progress"] if f'"{n}"' in text}
    assert names == {"echo", "add", "slow_progress"}, text[:1000]


def test_a_tool_listed_only_to_clients_with_a_capability_is_not_held_as_new(gateways: Any) -> None:
    """Item 7: a server lists `summarise` only to clients that declare `sampling`. The first
    such client sees it (pinned as reviewed, recorded), it is not held as new; a later
    change of its definition would still be held."""
    import sys
    from pathlib import Path

    server = {"name": "caps", "policy": "p", "command": sys.executable,
              "args": [str(Path(__file__).parent / "upstreams" / "caps_server.py")]}
    gw = gateways.new([server], {"p": {"version": "1", "default": "allow"}})
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {gw.grant('caps')}", Accept="application/json")

    def listed(capabilities: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        init = json.loads(json.dumps(INITIALIZE))
        init["params"]["capabilities"] = capabilities
        r = httpx.post(gw.url("caps"), json=init, headers=headers, timeout=30)
        h = dict(headers, **{"Mcp-Session-Id": r.headers["mcp-session-id"]})
        r = httpx.post(gw.url("caps"), json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=h, timeout=30)
        return [t["name"] for t in r.json()["result"]["tools"]], h

    assert listed({})[0] == ["lookup"]
    names, h = listed({"sampling": {}})
    assert names == ["lookup", "summarise"], names
    r = httpx.post(gw.url("caps"), json={"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                         "params": {"name": "summarise", "arguments": {}}}, headers=h, timeout=30)
    assert "summarise done" in r.text, r.text
    assert listed({"sampling": {}, "roots": {}})[0] == ["lookup", "summarise"]
    assert "HELD" not in gw.cli("tools list", "caps", "--changed").stdout
    pins = [r for r in gw.audit_records("--kind", "pin") if r.get("tool") == "summarise"]
    assert [p["decision"] for p in pins] == ["approved"], pins


def test_tools_of_toolgate_run_are_listed_and_approved_without_a_config(tmp_path: Any) -> None:
    """`toolgate tools list|approve` work on what `toolgate run` pinned in the user's store,
    with no toolgate.toml (as `approvals` and `audit` already did)."""
    from helpers import DEMO_POLICY_FILE, run
    from test_stdio_run import stdio_client, toolgate

    async def scenario() -> None:
        async with stdio_client(tmp_path, DEMO_POLICY_FILE) as client:
            await client.list_tools()

    run(scenario)
    listed = toolgate(tmp_path, "tools", "list", "demo").stdout
    assert "list_patients" in listed and "pinned" in listed, listed
    missing = toolgate(tmp_path, "tools", "list", "nothing-here", check=False)
    assert missing.returncode != 0 and "no tools pinned under that name" in missing.stderr, missing.stderr


def test_a_large_file_read_through_server_filesystem(gateways: Any, tmp_path: Any) -> None:
    """Item 2: a 12 MB file read through the reference filesystem server (a line of about
    19 MB on its stdout, over the old fixed 16 MiB) passes under the default `max_answer`; under a lower one, that one
    request gets an error naming the limit and the session goes on."""
    from helpers import NODE_DIR

    root = tmp_path / "files"
    root.mkdir()
    big = root / "big.txt"
    # 12 MB whose quotes, backslashes and tabs JSON-escape to about 19 MB on one line.
    big.write_text('say "hi" to C:\\tmp\tand go\n' * 480_000)
    server = {"name": "fs", "policy": "p", "command": str(NODE_DIR / "node_modules" / ".bin" / "mcp-server-filesystem"),
              "args": [str(root)]}
    policy = {"p": {"version": "1", "default": "allow"}}

    def session(gw: Any) -> dict[str, str]:
        headers = dict(MCP_HEADERS, Authorization=f"Bearer {gw.grant('fs')}", Accept="application/json")
        r = httpx.post(gw.url("fs"), json=INITIALIZE, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        httpx.post(gw.url("fs"), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers, timeout=30)
        return headers

    def read(gw: Any, headers: dict[str, str], rid: int) -> dict[str, Any]:
        tools = httpx.post(gw.url("fs"), json={"jsonrpc": "2.0", "id": rid, "method": "tools/list"}, headers=headers, timeout=60).json()
        names = [t["name"] for t in tools["result"]["tools"]]
        tool = "read_text_file" if "read_text_file" in names else "read_file"
        body = {"jsonrpc": "2.0", "id": rid + 1, "method": "tools/call", "params": {"name": tool, "arguments": {"path": str(big)}}}
        return httpx.post(gw.url("fs"), json=body, headers=headers, timeout=120).json()

    gw = gateways.new([server], policy)
    h = session(gw)
    answer = read(gw, h, 2)
    assert len(answer["result"]["content"][0]["text"]) >= 12_000_000, str(answer)[:300]

    small = gateways.new([server], policy, extra={"max_answer": "4MiB"})
    h = session(small)
    answer = read(small, h, 2)
    assert "max_answer (4194304 bytes)" in answer["error"]["message"], str(answer)[:300]
    r = httpx.post(small.url("fs"), json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["result"]["tools"], r.text[:300]
