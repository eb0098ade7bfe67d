"""Require approval, end to end: a call held while another process (the CLI) approves or
denies it, a timeout, a retry after the agent went away passing once, changed arguments
asking again, two-of-two approvers, the signed webhook, and the audit trail of it all.

Client: the official Python SDK; upstream: the bundled demo server over stdio."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from helpers import assert_allowed, assert_denied, demo_server, mcp_client, run

REFUND = {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}
SECRET = "e2e-webhook-secret-0123456789"


def approval_policy(timeout: str = "30s", approvers: int = 1) -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "tools": {
            "refund_payment": {"action": "require_approval", "approval": {"timeout": timeout, "approvers": approvers}},
            "list_payments": {},
        },
    }


def waiting(gw: Any) -> list[dict[str, Any]]:
    return json.loads(gw.cli("approvals list", "--json").stdout)


async def wait_for_approval(gw: Any, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(waiting, gw)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no approval appeared within {timeout} s"
        await asyncio.sleep(0.2)


def cli(gw: Any, *args: str, check: bool = True) -> Any:
    return gw.cli(*args, check=check)


def test_a_held_call_runs_once_another_process_approves_it(gateways: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": approval_policy()})
    token = gw.grant("demo", "approval-alice")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            [pending] = await wait_for_approval(gw)
            assert pending["tool"] == "refund_payment" and pending["grant"] == "approval-alice"
            assert pending["arguments"] == REFUND, "the approver sees the exact arguments"
            await asyncio.sleep(0.5)
            assert not call.done(), "the call is held until someone decides"
            out = await asyncio.to_thread(cli, gw, "approvals approve", pending["id"], "--as", "bob")
            assert "approved" in out.stdout
            result = await asyncio.wait_for(call, 20)
            assert_allowed(result, "pay_5001")
            # Used once: the same call asks again.
            again = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            [second] = await wait_for_approval(gw)
            assert second["id"] != pending["id"]
            await asyncio.to_thread(cli, gw, "approvals deny", second["id"], "--reason", "one refund is enough", "--as", "bob")
            denial = assert_denied(await asyncio.wait_for(again, 20), "(approval denied)")
            assert "one refund is enough" in denial.message and "bob" in denial.message

    run(scenario)
    # Records are chained in commit order; the gateway and the CLI are two processes, so
    # `at_ms` (then seq) gives the order in which things happened.
    records = sorted(gw.audit_records("--kind", "approval"), key=lambda r: (r["at_ms"], r["seq"]))
    events = [(r["decision"], r.get("approver")) for r in records]
    assert events == [("requested", None), ("approved", "bob"), ("used", "bob"),
                      ("requested", None), ("denied", "bob")], events
    calls = [r for r in gw.audit_records("--tool", "refund_payment", "--kind", "call")]
    assert [c["decision"] for c in calls] == ["require_approval", "allow", "require_approval", "deny"]
    assert calls[1]["approval_id"] == records[0]["approval_id"] and calls[1]["approver"] == "bob"


def test_an_unanswered_approval_times_out(gateways: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": approval_policy(timeout="2s")})
    token = gw.grant("demo", "approval-timeout")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            started = time.monotonic()
            result = await client.call_tool("refund_payment", REFUND)
            assert_denied(result, "(approval timed out)")
            assert time.monotonic() - started >= 1.8

    run(scenario)
    # The expiry is recorded as the denial goes out (not waited for): allow it a moment.
    deadline = time.monotonic() + 5
    while len(gw.audit_records("--kind", "approval")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["decision"] for r in gw.audit_records("--kind", "approval")] == ["requested", "expired"]
    assert waiting(gw) == []
    late = cli(gw, "approvals approve", gw.audit_records("--kind", "approval")[0]["approval_id"], check=False)
    assert late.returncode == 1 and "expired" in late.stderr


def test_a_retry_after_a_disconnect_passes_once_and_new_arguments_ask_again(gateways: Any) -> None:
    gw = gateways.new([demo_server()], {"demo": approval_policy()})
    token = gw.grant("demo", "approval-retry")

    async def leave_while_held() -> str:
        async with mcp_client(gw.url("demo"), token) as client:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            [pending] = await wait_for_approval(gw)
            call.cancel()  # the agent gives up and goes away
            try:
                await call
            except BaseException:
                pass
        return str(pending["id"])

    approval_id = run(leave_while_held)
    assert [a["id"] for a in waiting(gw)] == [approval_id], "the approval stands after the agent left"
    cli(gw, "approvals approve", approval_id)

    async def come_back() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            # Different arguments: no swap after approval, a new approval is needed.
            changed = asyncio.create_task(client.call_tool("refund_payment", REFUND | {"amount": 9999}))
            [fresh] = await wait_for_approval(gw)
            assert fresh["id"] != approval_id and fresh["arguments"]["amount"] == 9999
            await asyncio.to_thread(cli, gw, "approvals deny", fresh["id"], "--reason", "not that one")
            assert_denied(await asyncio.wait_for(changed, 20), "(approval denied)")
            # The same arguments (byte-identical after canonical encoding) pass once, at once.
            started = time.monotonic()
            assert_allowed(await client.call_tool("refund_payment", dict(reversed(list(REFUND.items())))), "pay_5001")
            assert time.monotonic() - started < 5
            # ... and only once.
            again = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            [third] = await wait_for_approval(gw)
            assert third["id"] not in (approval_id, fresh["id"])
            await asyncio.to_thread(cli, gw, "approvals deny", third["id"], "--reason", "done")
            assert_denied(await asyncio.wait_for(again, 20), "(approval denied)")

    run(come_back)


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        _Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_two_of_two_approvers_and_a_signed_webhook(gateways: Any) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        extra = {"approvals": {"webhook": f"http://127.0.0.1:{hook.server_address[1]}/hook", "webhook_secret": SECRET}}
        gw = gateways.new([demo_server()], {"demo": approval_policy(approvers=2)}, extra=extra)
        token = gw.grant("demo", "approval-two")

        async def scenario() -> None:
            async with mcp_client(gw.url("demo"), token) as client:
                call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
                [pending] = await wait_for_approval(gw)
                out = await asyncio.to_thread(cli, gw, "approvals approve", pending["id"], "--as", "alice")
                assert "1 of 2" in out.stdout
                twice = await asyncio.to_thread(cli, gw, "approvals approve", pending["id"], "--as", "alice", check=False)
                assert twice.returncode == 1 and "distinct" in twice.stderr
                await asyncio.sleep(0.5)
                assert not call.done(), "one approver is not enough"
                await asyncio.to_thread(cli, gw, "approvals approve", pending["id"], "--as", "bob")
                assert_allowed(await asyncio.wait_for(call, 20), "pay_5001")

        run(scenario)
        deadline = time.monotonic() + 5
        while not _Hook.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_Hook.received) == 1, _Hook.received
        headers, body = _Hook.received[0]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-toolgate-signature"], expected)
        event = json.loads(body)
        assert event["event"] == "approval.requested" and event["approval"]["tool"] == "refund_payment"
        assert event["approval"]["approvers_needed"] == 2
        used = [r for r in gw.audit_records("--kind", "approval") if r["decision"] == "used"]
        assert used and used[0]["approver"] == "alice, bob"
    finally:
        hook.shutdown()


def admin_token(gw: Any, name: str, role: str) -> str:
    out = gw.cli("admin-tokens create", "--name", name, "--role", role, "--json").stdout
    return str(json.loads(out.strip().splitlines()[-1])["token"])


def test_the_admin_api_approves_with_roles(gateways: Any) -> None:
    import httpx

    gw = gateways.new([demo_server()], {"demo": approval_policy()})
    token = gw.grant("demo", "approval-api")
    viewer = admin_token(gw, "vera", "viewer")
    manager = admin_token(gw, "max", "policy_manager")
    api = gw.base_url + "/api/v1"

    def auth(t: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {t}"}

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client, httpx.AsyncClient(timeout=10) as http:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            deadline = time.monotonic() + 15
            while True:
                listed = (await http.get(f"{api}/approvals", headers=auth(viewer))).json()["approvals"]
                if listed:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            aid = listed[0]["id"]
            assert listed[0]["arguments"] == REFUND
            nobody = await http.post(f"{api}/approvals/{aid}/approve")
            assert nobody.status_code == 401 and nobody.headers["www-authenticate"].startswith("Bearer")
            bad = await http.post(f"{api}/approvals/{aid}/approve", headers=auth("tga_" + "0" * 48))
            assert bad.status_code == 401
            forbidden = await http.post(f"{api}/approvals/{aid}/approve", headers=auth(viewer))
            assert forbidden.status_code == 403 and "policy_manager" in forbidden.json()["error"]
            no_reason = await http.post(f"{api}/approvals/{aid}/deny", headers=auth(manager), json={})
            assert no_reason.status_code == 400
            missing = await http.post(f"{api}/approvals/ap_nope/approve", headers=auth(manager))
            assert missing.status_code == 404
            ok = await http.post(f"{api}/approvals/{aid}/approve", headers=auth(manager))
            assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.text
            assert_allowed(await asyncio.wait_for(call, 20), "pay_5001")
            again = await http.post(f"{api}/approvals/{aid}/approve", headers=auth(manager))
            assert again.status_code == 409, again.text
            status = (await http.get(f"{api}/status", headers=auth(viewer))).json()
            assert status["pending_approvals"] == 0 and status["calls"] >= 1

    run(scenario)
    approved = [r for r in gw.audit_records("--kind", "approval") if r["decision"] == "approved"]
    assert approved and approved[0]["approver"] == "max"


def test_a_held_call_streams_progress_with_the_approval_id(gateways: Any) -> None:
    import httpx

    from helpers import INITIALIZE, MCP_HEADERS

    gw = gateways.new([demo_server()], {"demo": approval_policy()})
    token = gw.grant("demo", "approval-progress")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
    headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
    httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers, timeout=30)
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "refund_payment", "arguments": REFUND, "_meta": {"progressToken": "p-1"}}}
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", gw.url("demo"), json=body, headers=headers, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            events.append(msg)
            if msg.get("method") == "notifications/progress":
                assert msg["params"]["progressToken"] == "p-1"
                approval_id = msg["params"]["message"].split()[3]
                assert approval_id.startswith("ap_"), msg
                cli(gw, "approvals deny", approval_id, "--reason", "not today")
            if msg.get("id") == 9:
                break
    assert events[0].get("method") == "notifications/progress", events
    final = events[-1]
    assert final["result"]["isError"] is True and "not today" in final["result"]["content"][0]["text"]
