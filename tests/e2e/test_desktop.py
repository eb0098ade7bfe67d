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
