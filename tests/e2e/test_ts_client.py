"""The TypeScript SDK client (@modelcontextprotocol/sdk 1.32.2, `Client` +
`StreamableHTTPClientTransport`, node/client.mjs) through toolgate."""

from __future__ import annotations

import json
from typing import Any

from helpers import (
    DENIED_PREFIX,
    demo_server,
    http_server,
    parse_denial,
    result_text,
    ts_client,
)

DEMO_SMALL = {
    "version": "1",
    "default": "deny",
    "hide": ["export_patient_data"],
    "tools": {
        "list_patients": {},
        "generate_monthly_report": {},
        "delete_patient_record": {
            "action": "deny",
            "reason": "Patient records are deleted by staff, never by an agent.",
        },
    },
}


def test_ts_client_against_demo(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "small")], {"small": DEMO_SMALL})
    token = gw.grant("demo", "ts-client")
    script = {
        "list": True,
        "calls": [
            {"name": "list_patients"},
            {"name": "delete_patient_record", "arguments": {"patient_id": "pat_1001", "reason": "x"}},
            {"name": "list_providers"},
            {"name": "export_patient_data", "arguments": {"patient_id": "pat_1001"}},
            {"name": "generate_monthly_report", "arguments": {"month": "2026-08"}, "progress": True},
        ],
    }
    out = ts_client(gw.url("demo"), token, script)
    assert out["ok"], out
    assert out["protocolVersion"] == "2025-11-25", out
    assert out["sessionId"], "toolgate mints an Mcp-Session-Id for legacy-era sessions"
    assert set(out["tools"]) == {"list_patients", "generate_monthly_report"}, out["tools"]
    calls = {c["name"]: c for c in out["calls"]}

    allowed = calls["list_patients"]
    assert "result" in allowed and not allowed["result"].get("isError"), allowed
    assert "pat_1001" in result_text(allowed["result"])

    denied = parse_denial(calls["delete_patient_record"]["result"])
    assert denied.rule == "/tools/delete_patient_record/action", denied.text
    assert denied.message == "Patient records are deleted by staff, never by an agent."

    assert parse_denial(calls["list_providers"]["result"]).rule == "(default deny)"
    assert result_text(calls["list_providers"]["result"]).startswith(DENIED_PREFIX)

    hidden = calls["export_patient_data"]
    assert "error" in hidden and hidden["error"]["code"] == -32602, hidden

    report = calls["generate_monthly_report"]
    assert "result" in report and not report["result"].get("isError"), report
    assert [p["progress"] for p in report["progress"]] == [1, 2, 3, 4, 5], report["progress"]
    assert "terminateError" not in out, out


def test_ts_client_without_token_gets_401(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "small")], {"small": DEMO_SMALL})
    out = ts_client(gw.url("demo"), None, {"list": True})
    assert not out["ok"], out
    assert out["error"]["code"] == 401, out


def test_ts_client_session_and_headers_upstream(gateways: Any, upstreams: Any) -> None:
    """toolgate's session id is its own, and the agent's Authorization stays at the gateway."""
    recording = upstreams.recording("sse")
    policy = {"version": "1", "default": "deny", "tools": {"seen_headers": {}, "slow_progress": {}}}
    gw = gateways.new(
        [http_server("rec", "rec", recording.url, headers={"Authorization": "Bearer up-secret-ts"})], {"rec": policy}
    )
    token = gw.grant("rec", "ts-headers")
    script = {
        "calls": [{"name": "seen_headers"}, {"name": "slow_progress", "arguments": {"steps": 2}, "progress": True}]
    }
    out = ts_client(gw.url("rec"), token, script)
    assert out["ok"], out
    seen, slow = out["calls"]
    headers = seen["result"]["structuredContent"]["headers"]
    assert headers["authorization"] == "Bearer up-secret-ts"
    assert token not in json.dumps(headers)
    assert headers.get("mcp-session-id") != out["sessionId"], "the upstream session id must not leak to the agent"
    assert [p["progress"] for p in slow["progress"]] == [1, 2], slow
