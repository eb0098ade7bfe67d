"""`/metrics` in the Prometheus text format, after real calls through the gateway; JSON logs
with request ids."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from helpers import assert_allowed, assert_denied, demo_server, mcp_client, run


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in:\n{text}")


def test_metrics_count_calls_decisions_and_latency(gateways: Any, demo_policy: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "metrics")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            for _ in range(3):
                assert_allowed(await client.call_tool("list_patients", {"limit": 1}))
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")

    run(scenario)
    r = httpx.get(gw.base_url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    text = r.text
    assert sample(text, "toolgate_tool_calls_total", server="demo", tool="list_patients", decision="allow") == 3
    assert sample(text, "toolgate_tool_calls_total", server="demo", tool="list_providers", decision="deny") == 1
    assert sample(text, "toolgate_upstream_outcomes_total", server="demo", outcome="ok") == 3
    assert sample(text, "toolgate_decision_seconds_count", server="demo") == 4
    assert sample(text, "toolgate_upstream_seconds_count", server="demo") == 3
    assert sample(text, "toolgate_requests_total", server="demo", method="tools/call") == 4
    assert sample(text, "toolgate_upstream_up", server="demo") == 1
    assert "toolgate_pending_approvals 0" in text
    assert text.rstrip().endswith("# EOF")


def test_json_logs_carry_request_ids(gateways: Any, demo_policy: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("TOOLGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("RUST_LOG", "info")
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "logs")
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    url = gw.url("demo")
    with httpx.Client(timeout=20) as http:
        init = http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "logs", "version": "1"}},
        })
        assert init.status_code == 200, init.text
        assert init.headers["x-request-id"].startswith("req_"), init.headers
        session = {**headers, "mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        http.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = http.post(url, headers={**session, "x-request-id": "e2e-req-42"}, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_providers", "arguments": {}},
        })
        assert call.status_code == 200 and call.headers["x-request-id"] == "e2e-req-42", call.headers
        bad = http.post(url, headers={**session, "x-request-id": "a bad id with spaces " + "x" * 200}, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/list",
        })
        assert bad.headers["x-request-id"].startswith("req_"), "an unsafe id is replaced"
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in gw.stderr_path.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        mine = [r for r in records if r.get("span", {}).get("id") == "e2e-req-42"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine, f"no log line carries the request id:\n{lines[-20:]}"
    denied = [r for r in mine if r["fields"].get("message") == "tools/call denied"]
    assert denied and denied[0]["fields"]["tool"] == "list_providers", mine
    assert all("level" in r and "timestamp" in r for r in records)
