"""`toolgate run`: stdio mode for desktop clients, driven by the official Python SDK's stdio
client (which starts toolgate as its server, as a desktop client does); toolgate starts the
bundled demo server as its child. Same enforcement, audit and approvals as the gateway;
approvals come from another process (the CLI), with the user store toolgate uses when there
is no toolgate.toml."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from helpers import DEMO_POLICY_FILE, assert_allowed, assert_denied, expect_mcp_error, run, toolgate_bin

REFUND = {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}


def user_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), TOOLGATE_OPERATOR="e2e-operator")
    env.pop("XDG_DATA_HOME", None)
    return env


def toolgate(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI as a user in another terminal: no toolgate.toml in the folder."""
    proc = subprocess.run([str(toolgate_bin()), *args], capture_output=True, text=True, cwd=home,
                          env=user_env(home), timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"toolgate {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def stdio_client(home: Path, policy: Path) -> Any:
    import mcp
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=str(toolgate_bin()),
        args=["run", "--policy", str(policy), "--name", "demo", "--", "toolgate", "demo", "--stdio"],
        env=user_env(home),
        cwd=str(home),
    )
    return mcp.Client(params, mode="legacy")


def test_stdio_mode_enforces_the_policy_and_audits(tmp_path: Path, demo_policy: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with stdio_client(tmp_path, DEMO_POLICY_FILE) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "list_patients" in names
            assert "export_patient_data" not in names, "hidden"
            assert "delete_patient_record" not in names, "always denied"
            assert_allowed(await client.call_tool("list_patients", {"limit": 1}))
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")
            assert_denied(await client.call_tool("delete_patient_record", {"patient_id": "pat_1001"}),
                          "/tools/delete_patient_record/action",
                          demo_policy["tools"]["delete_patient_record"]["reason"])
            await expect_mcp_error(client.call_tool("export_patient_data", {"patient_id": "pat_1001"}), -32602)

    run(scenario)
    store = tmp_path / ".local" / "share" / "toolgate"
    assert (store / "toolgate.db").exists() and (store / "toolgate-audit.db").exists()
    out = toolgate(tmp_path, "audit", "query", "--server", "demo", "--kind", "call", "--format", "jsonl").stdout
    calls = [json.loads(line) for line in out.splitlines()]
    judged = {c["tool"]: (c["decision"], c["rule"]) for c in calls if c.get("method") == "tools/call"}
    assert judged["list_patients"] == ("allow", "/tools/list_patients")
    assert judged["list_providers"] == ("deny", "(default deny)")
    assert judged["export_patient_data"] == ("deny", "(hidden)")
    assert all(c["grant_label"] == "stdio" and c["identity"] == "e2e-operator" for c in calls)
    assert toolgate(tmp_path, "audit", "verify").stdout.startswith("ok: ")


def test_stdio_mode_approval_from_another_terminal(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "version": "1", "default": "deny",
        "tools": {"refund_payment": {"action": "require_approval", "approval": {"timeout": "30s"}}},
    }))

    async def scenario() -> None:
        async with stdio_client(tmp_path, policy) as client:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            deadline = time.monotonic() + 15
            while True:
                waiting = json.loads((await asyncio.to_thread(toolgate, tmp_path, "approvals", "list", "--json")).stdout)
                if waiting:
                    break
                assert time.monotonic() < deadline, "no approval appeared"
                await asyncio.sleep(0.2)
            assert waiting[0]["arguments"] == REFUND and waiting[0]["server"] == "demo"
            await asyncio.to_thread(toolgate, tmp_path, "approvals", "approve", waiting[0]["id"])
            assert_allowed(await asyncio.wait_for(call, 20), "pay_5001")

    run(scenario)
    out = toolgate(tmp_path, "audit", "query", "--kind", "approval", "--format", "jsonl").stdout
    events = sorted((json.loads(line) for line in out.splitlines()), key=lambda r: (r["at_ms"], r["seq"]))
    assert [e["decision"] for e in events] == ["requested", "approved", "used"]
    assert events[1]["approver"] == "e2e-operator"


def test_run_refuses_to_start_with_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1", "default": "sometimes"}')
    proc = toolgate(tmp_path, "run", "--policy", str(bad), "--", "toolgate", "demo", "--stdio", check=False)
    assert proc.returncode == 2
    assert "/default" in proc.stderr and "does not start" in proc.stderr
    assert proc.stdout == "", "stdout carries only MCP messages"
