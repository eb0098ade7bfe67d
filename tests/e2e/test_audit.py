"""The audit log, end to end: every judged request recorded with its decision and outcome,
the hash chain verified and tampering found by `toolgate audit verify`, argument redaction,
`audit query|export`, `status`, `policy replay`, and no record lost when the gateway is
killed with SIGKILL under load.

Clients are the official Python SDK; upstreams are the bundled demo server (stdio) and a
Python `MCPServer` over Streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from helpers import (
    assert_allowed,
    assert_denied,
    demo_server,
    expect_mcp_error,
    http_server,
    mcp_client,
    run,
    start_recording_server,
    toolgate_bin,
)

OPEN = {"version": "1", "default": "allow", "tools": {"note": {}}}


def by_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


def test_every_request_is_recorded_with_its_decision_and_outcome(gateways: Any, demo_policy: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "audit-alice")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            await client.list_tools()
            assert_allowed(await client.call_tool("list_patients", {"limit": 2}))
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")
            assert_denied(await client.call_tool("delete_patient_record", {"patient_id": "pat_1001"}),
                          "/tools/delete_patient_record/action")
            await expect_mcp_error(client.call_tool("export_patient_data", {"patient_id": "pat_1001"}), -32602)

    run(scenario)
    records = gw.audit_records("--grant", "audit-alice")
    methods = [r.get("method") for r in by_kind(records, "call")]
    assert methods[0] == "initialize", methods
    assert "tools/list" in methods
    calls = {r["tool"]: r for r in by_kind(records, "call") if r.get("method") == "tools/call"}
    allowed = calls["list_patients"]
    assert (allowed["decision"], allowed["rule"]) == ("allow", "/tools/list_patients")
    assert allowed["arg_keys"] == ["limit"] and len(allowed["arg_hash"]) == 64
    assert "args" not in allowed, "values are not stored by default"
    assert allowed["policy"] == "demo" and len(allowed["policy_version"]) == 16
    assert allowed["identity"] == "audit-alice" and allowed["server"] == "demo"
    assert (calls["list_providers"]["decision"], calls["list_providers"]["rule"]) == ("deny", "(default deny)")
    assert calls["delete_patient_record"]["rule"] == "/tools/delete_patient_record/action"
    assert calls["delete_patient_record"]["message"] == demo_policy["tools"]["delete_patient_record"]["reason"]
    assert calls["export_patient_data"]["rule"] == "(hidden)"
    # The forwarded call's outcome is linked to its decision record.
    outcomes = [o for o in by_kind(records, "outcome") if o.get("call_seq") == allowed["seq"]]
    assert len(outcomes) == 1, records
    assert outcomes[0]["outcome"] == "ok" and outcomes[0]["bytes_out"] > 0
    assert outcomes[0]["seq"] > allowed["seq"]
    # Denied calls never reached the tool: no outcome.
    denied_seqs = {calls[t]["seq"] for t in ("list_providers", "delete_patient_record", "export_patient_data")}
    assert not [o for o in by_kind(records, "outcome") if o.get("call_seq") in denied_seqs]

    verify = gw.cli("audit verify")
    assert verify.stdout.startswith("ok: "), verify.stdout
    status = gw.cli("status").stdout
    assert "tools/call: 4" in status and "denied 3 (75.0%)" in status, status
    assert "(default deny)" in status


def test_full_arguments_are_kept_with_redaction(gateways: Any, demo_policy: Any) -> None:
    server = demo_server() | {"audit_arguments": "full", "redact": ["args.query"]}
    gw = gateways.new([server], {"demo": demo_policy})
    token = gw.grant("demo", "audit-full")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            assert_allowed(await client.call_tool("search_patients", {"query": "Maria"}))
            await client.call_tool("list_patients", {"limit": 1, "note": "Bearer abcdefghijklmnopqrstuvwxyz"})

    run(scenario)
    calls = {r["tool"]: r for r in gw.audit_records("--kind", "call") if r.get("tool")}
    assert calls["search_patients"]["args"] == {"query": "[redacted]"}
    assert calls["list_patients"]["args"] == {"limit": 1, "note": "[redacted: bearer token]"}
    # The hash is of the real arguments, so a later replay or approval can match them.
    assert calls["search_patients"]["arg_keys"] == ["query"]


def copy_with(gw: Any, tmp: Path, name: str, tamper: str, params: tuple[Any, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Copy the audit log, tamper with the copy in SQL, and run `audit verify` on it."""
    folder = tmp / name
    folder.mkdir()
    copy = folder / "toolgate-audit.db"
    src = sqlite3.connect(gw.audit_path)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.executescript(tamper) if not params else dst.execute(tamper, params)
    dst.commit()
    dst.close()
    config = folder / "toolgate.toml"
    config.write_text(f'store = "sqlite://{folder / "toolgate.db"}"\n[audit]\npath = "{copy}"\n')
    return subprocess.run([str(toolgate_bin()), "audit", "verify", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)


def test_verify_finds_an_edit_a_deletion_an_insertion_and_a_reorder(gateways: Any, demo_policy: Any, tmp_path: Path) -> None:
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "audit-chain")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            for i in range(4):
                await client.call_tool("list_patients", {"limit": i + 1})
                await client.call_tool("list_providers", {})

    run(scenario)
    gw.stop()  # a quiet file to copy
    records = json.loads(subprocess.run(
        [str(toolgate_bin()), "audit", "query", "--format", "json", "--config", str(gw.config_path)],
        capture_output=True, text=True, check=True).stdout)
    assert len(records) >= 10
    intact = copy_with(gw, tmp_path, "intact", "SELECT 1;")
    assert intact.returncode == 0 and intact.stdout.startswith("ok: "), intact.stdout + intact.stderr

    # An edit: a denial turned into an allow, in the sealed body and the query column alike.
    denied = next(r["seq"] for r in records if r.get("decision") == "deny")
    edit = copy_with(gw, tmp_path, "edit",
                     f"UPDATE audit SET body = replace(body, '\"deny\"', '\"allow\"'), decision = 'allow' WHERE seq = {denied}")
    assert edit.returncode == 1 and f"record #{denied}: edited" in edit.stdout, edit.stdout + edit.stderr

    deletion = copy_with(gw, tmp_path, "delete", "DELETE FROM audit WHERE seq = 5")
    assert deletion.returncode == 1 and "record #6: record #5 is missing" in deletion.stdout, deletion.stdout

    insertion = copy_with(gw, tmp_path, "insert", """
        UPDATE audit SET seq = seq + 1000 WHERE seq >= 4;
        UPDATE audit SET seq = seq - 999 WHERE seq >= 1004;
        INSERT INTO audit (seq, at_ms, kind, grant_id, grant_label, identity, server, method, tool, decision, rule, call_seq, body, hash)
          SELECT 4, at_ms, kind, grant_id, grant_label, identity, server, method, tool, decision, rule, call_seq, body, hash
          FROM audit WHERE seq = 3;
    """)
    assert insertion.returncode == 1 and "record #4" in insertion.stdout, insertion.stdout

    reorder = copy_with(gw, tmp_path, "reorder", """
        UPDATE audit SET seq = -1 WHERE seq = 7;
        UPDATE audit SET seq = 7 WHERE seq = 8;
        UPDATE audit SET seq = 8 WHERE seq = -1;
    """)
    assert reorder.returncode == 1 and "record #7" in reorder.stdout, reorder.stdout


def test_export_streams_every_record_and_replay_reports_a_draft(gateways: Any, demo_policy: Any, tmp_path: Path) -> None:
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "audit-replay")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            for _ in range(3):
                assert_allowed(await client.call_tool("list_invoices", {}))
            assert_allowed(await client.call_tool("get_patient", {"patient_id": "pat_1001"}))
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")

    run(scenario)
    # The outcome and session-close records are committed a few milliseconds after the
    # answers: wait until the log has settled, then the export must hold every record.
    settled = gw.audit_records()
    out = tmp_path / "export.jsonl"
    gw.cli("audit export", "--format", "jsonl", "-o", str(out))
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in exported] == list(range(1, len(exported) + 1))
    assert len(exported) == len(settled) and len(settled) >= 9, (len(exported), len(settled))

    draft = json.loads(json.dumps(demo_policy))
    draft["tools"]["list_invoices"] = {"action": "deny", "reason": "Billing is closed."}
    draft["tools"]["list_providers"] = {}
    draft["tools"]["get_patient"] = {"deny_if": [{"path": "args.patient_id", "op": "eq", "value": "pat_1001"}]}
    draft_path = tmp_path / "draft.json"
    draft_path.write_text(json.dumps(draft))
    report = json.loads(gw.cli("policy replay", str(draft_path), "--since", "1h", "--json").stdout)
    assert report["judged"] == 5, report
    assert [c["tool"] for c in report["newly_denied"]] == ["list_invoices"] * 3
    assert {c["new_rule"] for c in report["newly_denied"]} == {"/tools/list_invoices/action"}
    assert [c["tool"] for c in report["newly_allowed"]] == ["list_providers"]
    assert [c["tool"] for c in report["undecidable"]] == ["get_patient"], "keys only: the value rule cannot be decided"
    text = gw.cli("policy replay", str(draft_path), "--since", "1h").stdout
    assert "newly denied   3" in text and "undecidable    1" in text, text


def test_sigkill_under_load_loses_no_record_of_a_forwarded_call(gateways: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    upstream = start_recording_server(tmp_path, "json", notes=notes)
    try:
        server = http_server("rec", "open", upstream.url) | {"audit_arguments": "full"}
        gw = gateways.new([server], {"open": OPEN})
        token = gw.grant("rec", "kill-test")
        stop_at = time.monotonic() + 2.0

        async def worker(w: int) -> int:
            sent = 0
            try:
                async with mcp_client(gw.url("rec"), token) as client:
                    while time.monotonic() < stop_at + 30:
                        await client.call_tool("note", {"nonce": f"w{w}-{sent}"})
                        sent += 1
            except BaseException:  # the gateway dies under us: that is the point
                pass
            return sent

        async def load() -> list[int]:
            tasks = [asyncio.create_task(worker(w)) for w in range(8)]
            while time.monotonic() < stop_at:
                await asyncio.sleep(0.05)
            gw.kill9()
            return await asyncio.gather(*tasks)

        sent = run(load, timeout=90)
        assert sum(sent) >= 50, f"too little load to prove anything: {sent}"
        seen = set(notes.read_text().split())
        assert len(seen) >= 50, len(seen)
        db = sqlite3.connect(gw.audit_path)
        recorded = {json.loads(body)["args"]["nonce"]
                    for (body,) in db.execute("SELECT body FROM audit WHERE kind = 'call' AND tool = 'note'")}
        db.close()
        missing = seen - recorded
        print(f"SIGKILL after {sum(sent)} answered calls; the upstream saw {len(seen)}, the audit holds {len(recorded)}")
        assert not missing, f"{len(missing)} calls reached the upstream without a durable record: {sorted(missing)[:10]}"
        verify = gw.cli("audit verify")
        assert verify.stdout.startswith("ok: "), verify.stdout
        # The gateway comes back on the same log and keeps the chain.
        gw.start()
        run(lambda: one_call(gw.url("rec"), token))
        assert gw.cli("audit verify").stdout.startswith("ok: ")
    finally:
        upstream.stop()


async def one_call(url: str, token: str) -> None:
    async with mcp_client(url, token) as client:
        assert_allowed(await client.call_tool("note", {"nonce": "after-restart"}), "noted")


def test_tail_follows_new_records(gateways: Any, demo_policy: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": demo_policy})
    token = gw.grant("demo", "audit-tail")
    run(lambda: one_call_demo(gw.url("demo"), token, "list_invoices"))
    follow = subprocess.Popen([str(toolgate_bin()), "audit", "tail", "-f", "-n", "1", "--format", "jsonl",
                               "--config", str(gw.config_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        first = json.loads(follow.stdout.readline())  # the last record so far
        run(lambda: one_call_demo(gw.url("demo"), token, "list_providers"))
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            record = json.loads(follow.stdout.readline())
            seen.append(record)
            if record.get("tool") == "list_providers" and record["kind"] == "call":
                break
        assert seen[-1]["tool"] == "list_providers" and seen[-1]["decision"] == "deny", seen
        assert all(r["seq"] > first["seq"] for r in seen)
    finally:
        follow.kill()
        follow.wait()


async def one_call_demo(url: str, token: str, tool: str) -> None:
    async with mcp_client(url, token) as client:
        await client.call_tool(tool, {})
