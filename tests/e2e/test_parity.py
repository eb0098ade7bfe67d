"""Parity: `toolgate serve` (Streamable HTTP) and `toolgate run` (stdio) enforce through one
call path. The same cases, in the same order, go through both fronts with the official
Python SDK as the client and the bundled demo server as the upstream; what the agent sees
(allowed, denied and by which rule, hidden) and what the audit log records (kind, method,
tool, decision, rule, approver, outcome) must be equal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import demo_server, mcp_client, run, settled_audit
from test_stdio_run import stdio_client, toolgate

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["export_patient_data"],
    "tools": {
        "list_patients": {},
        "delete_patient_record": {"action": "deny", "reason": "Staff only."},
        "send_patient_email": {"require": [{"path": "args.to", "op": "regex", "value": "^[^@\\s]+@[^@\\s]+$"}]},
        "get_patient": {"limits": [{"counter": "gp", "window": "minute", "max": 1, "scope": "grant"}]},
        "refund_payment": {"action": "require_approval", "approval": {"timeout": "3s"}},
        "list_payments": {"action": "require_approval", "approval": {"timeout": "60s"}},
        "list_invoices": {"action": "require_approval", "approval": {"timeout": "60s"}},
    },
}

CASES: list[tuple[str, dict[str, Any]]] = [
    ("list_patients", {"limit": 1}),
    ("list_providers", {}),
    ("delete_patient_record", {"patient_id": "pat_1001"}),
    ("export_patient_data", {"patient_id": "pat_1001"}),
    ("send_patient_email", {"patient_id": "pat_1001", "to": "not an address", "subject": "s", "body": "b"}),
    ("get_patient", {"patient_id": "pat_1001"}),
    ("get_patient", {"patient_id": "pat_1001"}),
    ("refund_payment", {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}),
    ("list_payments", {"limit": 1}),
    ("list_invoices", {"limit": 1}),
]


def seen(result: Any) -> tuple[Any, ...]:
    """What the agent saw, without what differs by nature (ids, times)."""
    if isinstance(result, Exception):
        return ("error", getattr(result, "code", None))
    meta = (result.meta or {}).get("toolgate", {}) if result.meta else {}
    return ("error" if result.is_error else "ok", meta.get("decision"), meta.get("rule"))


async def drive(client: Any, cli: Callable[..., subprocess.CompletedProcess[str]]) -> list[tuple[Any, ...]]:
    from mcp.shared.exceptions import MCPError

    out = []
    for tool, args in CASES:
        if tool in ("list_payments", "list_invoices"):
            # Held, then approved (list_payments) or denied (list_invoices) from another terminal.
            call = asyncio.create_task(client.call_tool(tool, args))
            deadline = time.monotonic() + 15
            while not (waiting := json.loads((await asyncio.to_thread(cli, "approvals", "list", "--json")).stdout)):
                assert time.monotonic() < deadline, "no approval appeared"
                await asyncio.sleep(0.2)
            if tool == "list_payments":
                await asyncio.to_thread(cli, "approvals", "approve", waiting[0]["id"], "--as", "parity-approver")
            else:
                await asyncio.to_thread(cli, "approvals", "deny", waiting[0]["id"], "--as", "parity-approver",
                                        "--reason", "not now")
            out.append(seen(await asyncio.wait_for(call, 20)))
            continue
        try:
            out.append(seen(await client.call_tool(tool, args)))
        except MCPError as exc:
            out.append(seen(exc))
    return out


def recorded(cli: Callable[..., subprocess.CompletedProcess[str]]) -> list[tuple[Any, ...]]:
    # Denials and outcomes are committed just after the answer: read once settled.
    settled = settled_audit(lambda command, *args: cli(*command.split(), *args))
    records = sorted(settled, key=lambda r: r["seq"])
    keep = []
    for r in records:
        if r.get("kind") == "call" and r.get("method") != "tools/call":
            continue  # initialize, tools/list, notifications: their number depends on the client
        keep.append((r.get("kind"), r.get("tool"), r.get("decision"), r.get("rule"), r.get("approver"),
                     r.get("outcome")))
    return keep


def test_serve_and_run_answer_and_record_the_same(gateways: Any, tmp_path: Path) -> None:
    gw = gateways.new([demo_server("demo", "p")], {"p": POLICY})
    token = gw.grant("demo", "parity")

    def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return gw.cli(" ".join(args[:2]), *args[2:])

    async def over_http() -> list[tuple[Any, ...]]:
        async with mcp_client(gw.url("demo"), token) as client:
            return await drive(client, serve_cli)

    home = tmp_path / "home"
    home.mkdir()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))

    def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return toolgate(home, *args)

    async def over_stdio() -> list[tuple[Any, ...]]:
        async with stdio_client(home, policy) as client:
            return await drive(client, run_cli)

    http_seen = run(over_http)
    stdio_seen = run(over_stdio)
    assert http_seen == stdio_seen, f"serve: {http_seen}\nrun:   {stdio_seen}"
    # The cases did what they are named for.
    assert http_seen[0][0] == "ok" and http_seen[5][0] == "ok" and http_seen[8][0] == "ok", http_seen
    assert [s[2] for s in http_seen[1:3]] == ["(default deny)", "/tools/delete_patient_record/action"]
    assert http_seen[3] == ("error", -32602)
    assert http_seen[6][2] == "/tools/get_patient/limits/0"
    assert http_seen[9] == ("error", "deny", "(approval denied)"), http_seen[9]
    http_records, stdio_records = recorded(serve_cli), recorded(run_cli)
    assert http_records == stdio_records, f"serve: {http_records}\nrun:   {stdio_records}"
    assert ("approval", "list_payments", "approved", "/tools/list_payments/action", "parity-approver", None) in http_records
