"""`/metrics` in the Prometheus text format, after real calls through the gateway."""

from __future__ import annotations

import re
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
    assert "toolgate_pending_approvals 0" in text
    assert text.rstrip().endswith("# EOF")
