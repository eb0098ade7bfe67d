"""Approval through the agent's own client (`"approval": {"ask": "client"}`): toolgate asks
the person at the client with an `elicitation/create` request on the held call's stream,
and the answer decides the call. Driven by the official Python SDK's elicitation callback
against the bundled demo server, through `serve` and through `toolgate run`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from helpers import (
    assert_allowed,
    demo_server,
    http_server,
    mcp_client,
    parse_denial,
    run,
    settled_audit,
    toolgate_bin,
)
from test_stdio_run import toolgate, user_env


def policy(ask: str, timeout: str = "20s", session_scope: bool = False) -> dict[str, Any]:
    approval: dict[str, Any] = {"ask": ask, "timeout": timeout}
    if session_scope:
        approval["session_scope"] = True
    return {
        "version": "1",
        "default": "deny",
        "tools": {
            "list_patients": {},
            "refund_payment": {"action": "require_approval", "approval": approval},
            "list_payments": {"action": "require_approval", "approval": approval},
        },
    }


class Person:
    """The person at the client: answers each question as told, and remembers them."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[Any] = []

    async def __call__(self, context: Any, params: Any) -> Any:
        import mcp_types as types

        self.asked.append(params)
        answer = self.answers.pop(0) if self.answers else "deny"
        if isinstance(answer, float):  # never answers in time
            await asyncio.sleep(answer)
            return types.ElicitResult(action="cancel")
        if answer == "decline":
            return types.ElicitResult(action="decline")
        content: dict[str, Any] = {"decision": answer}
        if answer == "deny":
            content["reason"] = "not this one"
        return types.ElicitResult(action="accept", content=content)


REFUND = {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}


def denied(result: Any, rule: str, part: str | None = None) -> None:
    """A denial by `rule` whose message contains `part`."""
    d = parse_denial(result)
    assert d.rule == rule, f"expected rule {rule!r}, got {d.rule!r} in {d.text!r}"
    assert part is None or part in d.message, f"{part!r} not in {d.message!r}"


def records(cli: Any) -> list[dict[str, Any]]:
    return sorted(settled_audit(cli), key=lambda r: r["seq"])


def test_the_client_is_asked_and_its_answer_decides(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "p")], {"p": policy("client", session_scope=True)})
    token = gw.grant("demo", "alice")
    person = Person("allow_once", "deny", "decline", "allow_once", "allow_session")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token, elicitation_callback=person) as client:
            # Allowed once: the call goes through; the question named the tool and its arguments.
            assert_allowed(await client.call_tool("refund_payment", REFUND))
            q = person.asked[0]
            assert "refund_payment" in q.message and "pay_5001" in q.message and "demo" in q.message, q.message
            assert q.requested_schema["properties"]["decision"]["enum"] == ["allow_once", "allow_session", "deny"]
            # Denied with a reason, then declined.
            denied(await client.call_tool("refund_payment", REFUND), "(approval denied)", "not this one")
            denied(await client.call_tool("refund_payment", REFUND), "(approval denied)", "declined")
            # Allowed once covers those arguments only: other arguments ask again.
            assert_allowed(await client.call_tool("refund_payment", {**REFUND, "amount": 5}))
            assert len(person.asked) == 4
            # Allowed for the session: the same tool goes on without asking, any arguments.
            assert_allowed(await client.call_tool("list_payments", {"limit": 1}))
            assert_allowed(await client.call_tool("list_payments", {"limit": 2}))
            assert len(person.asked) == 5, "allow_session must not ask again in this session"

    run(scenario)
    log = records(gw.cli)
    decided = [(r["decision"], r.get("approver")) for r in log if r["kind"] == "approval"
               and r["decision"] in ("approved", "denied")]
    assert decided == [("approved", "client:alice"), ("denied", "client:alice"), ("denied", "client:alice"),
                       ("approved", "client:alice"), ("approved", "client:alice")], decided
    said = [r.get("message", "") for r in log if r["kind"] == "approval" and r["decision"] == "approved"]
    assert "answered: allow once" in said[0] and "answered: allow for this session" in said[-1], said
    used = [r for r in log if r["kind"] == "approval" and r["decision"] == "used" and r["tool"] == "list_payments"]
    assert len(used) == 2 and "allowed for this session" in used[1].get("message", ""), used

    # A new session asks again: the allowance ended with the session.
    person2 = Person("deny")

    async def again() -> None:
        async with mcp_client(gw.url("demo"), token, elicitation_callback=person2) as client:
            denied(await client.call_tool("list_payments", {"limit": 1}), "(approval denied)")

    run(again)
    assert len(person2.asked) == 1


def test_a_client_that_never_answers_times_out(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "p")], {"p": policy("client", timeout="2s")})
    token = gw.grant("demo", "bob")
    person = Person(6.0)

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token, elicitation_callback=person) as client:
            started = time.monotonic()
            denied(await client.call_tool("refund_payment", REFUND), "(approval timed out)")
            assert time.monotonic() - started < 6, "the timeout, not the client, ended the wait"

    run(scenario)
    assert len(person.asked) == 1


def test_a_client_without_elicitation(gateways: Any) -> None:
    # ask = client: refused with a reason; ask = client_or_operators: operators decide.
    gw = gateways.new([demo_server("demo", "p"), demo_server("demo2", "q")],
                      {"p": policy("client"), "q": policy("client_or_operators")})
    token, token2 = gw.grant("demo", "carol"), gw.grant("demo2", "carol")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            denied(await client.call_tool("refund_payment", REFUND), "(approval unavailable)", "elicitation")
        async with mcp_client(gw.url("demo2"), token2) as client:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            deadline = time.monotonic() + 15
            while not (waiting := json.loads((await asyncio.to_thread(
                    gw.cli, "approvals list", "--json")).stdout)):
                assert time.monotonic() < deadline, "no approval appeared"
                await asyncio.sleep(0.2)
            await asyncio.to_thread(gw.cli, "approvals approve", waiting[0]["id"], "--as", "operator-1")
            assert_allowed(await asyncio.wait_for(call, 20))

    run(scenario)


def test_client_or_operators_the_first_answer_wins(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "p")], {"p": policy("client_or_operators")})
    token = gw.grant("demo", "dave")
    person = Person(8.0)  # the person does not answer; an operator does

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token, elicitation_callback=person) as client:
            call = asyncio.create_task(client.call_tool("refund_payment", REFUND))
            deadline = time.monotonic() + 15
            while not (waiting := json.loads((await asyncio.to_thread(
                    gw.cli, "approvals list", "--json")).stdout)):
                assert time.monotonic() < deadline, "no approval appeared"
                await asyncio.sleep(0.2)
            await asyncio.to_thread(gw.cli, "approvals deny", waiting[0]["id"], "--as", "operator-1",
                                    "--reason", "ops said no")
            denied(await asyncio.wait_for(call, 20), "(approval denied)", "ops said no")

    run(scenario)
    assert len(person.asked) == 1


def test_toolgate_run_asks_the_stdio_client(tmp_path: Path) -> None:
    import mcp
    from mcp.client.stdio import StdioServerParameters

    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(policy("client")))
    person = Person("allow_once", "deny")
    params = StdioServerParameters(
        command=str(toolgate_bin()),
        args=["run", "--policy", str(pol), "--name", "demo", "--", "toolgate", "demo", "--stdio"],
        env=user_env(tmp_path),
        cwd=str(tmp_path),
    )

    async def scenario() -> None:
        async with mcp.Client(params, mode="legacy", elicitation_callback=person) as client:
            assert_allowed(await client.call_tool("refund_payment", REFUND))
            denied(await client.call_tool("refund_payment", REFUND), "(approval denied)", "not this one")

    run(scenario)
    assert len(person.asked) == 2
    lines = toolgate(tmp_path, "audit", "query", "--format", "jsonl").stdout.splitlines()
    approvers = {json.loads(line).get("approver") for line in lines} - {None}
    assert approvers == {"client:e2e-operator"}, approvers


def test_the_2026_era_asks_with_input_required(gateways: Any, upstreams: Any) -> None:
    """The stateless era has no stream to ask on: the held call answers `input_required`
    with toolgate's question; the SDK asks its user (the elicitation callback) and retries
    with the answer, which decides. toolgate's `requestState` and `inputResponses` never
    reach the upstream (an MCP server refuses a state it did not issue)."""
    import httpx2
    import mcp
    from mcp.client.streamable_http import streamable_http_client

    upstream = upstreams.recording("sse")
    pol = {"version": "1", "default": "deny", "tools": {
        "echo": {"action": "require_approval", "approval": {"ask": "client", "timeout": "30s"}},
        "add": {"action": "require_approval", "approval": {"ask": "client", "timeout": "30s"}}}}
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": pol})
    token = gw.grant("rec", "erin")
    person = Person("allow_once", "deny")

    def client(**kw: Any) -> Any:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0))
        return mcp.Client(streamable_http_client(gw.url("rec"), http_client=http), mode="2026-07-28", cache=None,
                          **kw)

    async def scenario() -> None:
        async with client(elicitation_callback=person) as c:
            assert_allowed(await c.call_tool("echo", {"text": "approved by erin"}), "approved by erin")
            denied(await c.call_tool("add", {"a": 1, "b": 2}), "(approval denied)", "not this one")
        # A client that cannot elicit is refused.
        async with client() as c:
            denied(await c.call_tool("echo", {"text": "x"}), "(approval unavailable)", "elicitation")

    run(scenario)
    assert len(person.asked) == 2
    log = records(gw.cli)
    decided = [(r["tool"], r["decision"], r.get("approver")) for r in log if r["kind"] == "approval"
               and r["decision"] in ("approved", "denied", "used")]
    assert decided == [("echo", "approved", "client:erin"), ("echo", "used", "client:erin"),
                       ("add", "denied", "client:erin")], decided


def test_an_agent_cannot_answer_an_operators_approval_for_itself(gateways: Any, upstreams: Any) -> None:
    """Under `ask: operators` the held call's approval id is visible to the agent (progress
    notes name it); a 2026-07-28 retry naming it with an `accept` answer must not approve it."""
    import httpx

    upstream = upstreams.recording("sse")
    pol = {"version": "1", "default": "deny",
           "tools": {"echo": {"action": "require_approval", "approval": {"timeout": "30s"}}}}
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": pol})
    token = gw.grant("rec", "mallory")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}

    def call(extra: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta, **extra}}

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=3) as http:
            held = asyncio.create_task(http.post(gw.url("rec"), json=call({}), headers=headers))
            deadline = time.monotonic() + 15
            while not (waiting := json.loads((await asyncio.to_thread(gw.cli, "approvals list", "--json")).stdout)):
                assert time.monotonic() < deadline, "no approval appeared"
                await asyncio.sleep(0.2)
            forged = call({"requestState": f"toolgate-approval:{waiting[0]['id']}",
                           "inputResponses": {"toolgate-approval": {"action": "accept",
                                                                    "content": {"decision": "allow_once"}}}})
            try:
                r = await http.post(gw.url("rec"), json=forged, headers=headers)
                assert "approved by" not in r.text and '"hi"' not in r.text, r.text
            except httpx.ReadTimeout:
                pass  # held like the first call: fine
            held.cancel()

    run(scenario)
    still = json.loads(gw.cli("approvals list", "--json").stdout)
    assert len(still) == 1 and not still[0].get("approvers"), still
    assert not [r for r in records(gw.cli) if r["kind"] == "approval" and r["decision"] == "approved"]


def test_the_typescript_sdk_v2_client_is_asked_in_both_eras(gateways: Any, upstreams: Any) -> None:
    """The TypeScript SDK v2 client (node/client-v2.mjs) answers toolgate's question with its
    elicitation handler: on the call's stream (legacy era), and by auto-fulfilling the
    `input_required` result and retrying (2026-07-28 era)."""
    from helpers import TS_CLIENT_V2, ts_client

    upstream = upstreams.recording("sse")
    pol = {"version": "1", "default": "deny",
           "tools": {"echo": {"action": "require_approval", "approval": {"ask": "client", "timeout": "30s"}}}}
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": pol})
    token = gw.grant("rec", "ts-user")
    for mode in ("legacy", "2026-07-28"):
        for decision, allowed in (("allow_once", True), ("deny", False)):
            out = ts_client(gw.url("rec"), token, {
                "mode": mode, "elicit": {"decision": decision},
                "calls": [{"name": "echo", "arguments": {"text": f"{mode} {decision}"}}]}, client=TS_CLIENT_V2)
            assert out["ok"], out
            assert out["handled"].get("elicitation/create") == 1, (mode, decision, out)
            call = out["calls"][0]
            text = json.dumps(call.get("result"))
            if allowed:
                assert f"{mode} {decision}" in text and not call["result"].get("isError"), (mode, out)
            else:
                assert call["result"].get("isError") and "(approval denied)" in text, (mode, out)
    approvers = {r.get("approver") for r in records(gw.cli) if r["kind"] == "approval"
                 and r["decision"] in ("approved", "denied")}
    assert approvers == {"client:ts-user"}, approvers


def test_the_client_is_asked_through_a_virtual_server_in_both_eras(gateways: Any) -> None:
    """Through a virtual server (docs/VIRTUAL.md): the rule names the exposed tool, the
    question reaches the agent's client (TypeScript SDK v2) in both eras, and the call goes
    to the real server under its own name; the demo is a stdio server, which the virtual
    server speaks the legacy era to even for a 2026-07-28 client."""
    from helpers import TS_CLIENT_V2, ts_client

    pol = {"version": "1", "default": "deny", "tools": {
        "d_list_patients": {},
        "d_refund_payment": {"action": "require_approval", "approval": {"ask": "client", "timeout": "30s"}}}}
    gw = gateways.new([demo_server("demo", None)], {"p": pol}, virtual_servers=[{
        "name": "va", "policy": "p",
        "include": [{"server": "demo", "prefix": "d_", "tools": ["list_patients", "refund_payment"]}]}])
    token = gw.grant("va", "vic")
    for mode in ("legacy", "2026-07-28"):
        for decision, allowed in (("allow_once", True), ("deny", False)):
            out = ts_client(gw.url("va"), token, {
                "mode": mode, "elicit": {"decision": decision},
                "calls": [{"name": "d_refund_payment", "arguments": REFUND}]}, client=TS_CLIENT_V2)
            assert out["ok"], out
            assert out["handled"].get("elicitation/create") == 1, (mode, decision, out)
            call = out["calls"][0]
            text = json.dumps(call.get("result"))
            if allowed:
                assert not call["result"].get("isError") and "pay_5001" in text, (mode, out)
            else:
                assert call["result"].get("isError") and "(approval denied)" in text, (mode, out)
    log = records(gw.cli)
    decided = [(r["tool"], r.get("approver")) for r in log if r["kind"] == "approval"
               and r["decision"] in ("approved", "denied")]
    assert decided == [("d_refund_payment", "client:vic")] * 4, decided
    calls = [r for r in log if r["kind"] == "call" and r.get("decision") == "allow" and r.get("method") == "tools/call"]
    assert [(r["server"], r["tool"], r.get("upstream_server"), r.get("upstream_tool")) for r in calls] == \
        [("va", "d_refund_payment", "demo", "refund_payment")] * 2, calls
