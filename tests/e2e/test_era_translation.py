"""A 2026-07-28 (stateless) client of a server toolgate reaches over stdio or legacy
HTTP+SSE, neither of which has that era: toolgate answers `server/discover` from the
server's own `initialize` result and relays each stateless request over a legacy session it
holds (one per grant). Driven by the official Python SDK (modes "2026-07-28" and "auto")
and the TypeScript SDK v2 client against the bundled demo (stdio) and a legacy SSE server."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
from helpers import (
    MCP_HEADERS,
    TS_CLIENT_V2,
    assert_allowed,
    assert_denied,
    demo_server,
    everything_stdio_server,
    http_server,
    run,
    tool_names,
    toolgate_bin,
    ts_client,
)
from test_modern_era import MODERN, modern_client

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "list_patients": {},
        "get_patient": {"deny_if": [{"path": "args.patient_id", "op": "eq", "value": "pat_1002"}]},
        "echo": {},
    },
}


def test_a_modern_client_reaches_a_stdio_server(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "p")], {"p": POLICY})
    token = gw.grant("demo", "modern-stdio")

    async def scenario(mode: str) -> None:
        async with modern_client(gw.url("demo"), token, mode) as client:
            assert await tool_names(client) == {"list_patients", "get_patient"}
            assert_allowed(await client.call_tool("get_patient", {"patient_id": "pat_1001"}), "Maria")
            assert_denied(await client.call_tool("get_patient", {"patient_id": "pat_1002"}), "/tools/get_patient/deny_if/0")
            assert_denied(await client.call_tool("cancel_appointment", {"appointment_id": "x"}), "(default deny)")

    run(lambda: scenario(MODERN))
    run(lambda: scenario("auto"))
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert [(c["tool"], c["decision"]) for c in calls] == [
        ("get_patient", "allow"), ("get_patient", "deny"), ("cancel_appointment", "deny")] * 2, calls
    # Each record says the agent spoke 2026-07-28 and toolgate spoke the legacy era upstream.
    assert {(c.get("client_era"), c.get("upstream_era")) for c in calls} == {("2026-07-28", "legacy")}, calls
    # Pinned 2026-07-28 mode never initializes: its calls share toolgate's one session per grant.
    assert len({c["session"] for c in calls[:3]}) == 1 and calls[0]["session"].startswith("tgv_demo_"), calls[:3]

    # server/discover carries the demo's own identity and capabilities.
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": MODERN})
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                     "io.modelcontextprotocol/clientCapabilities": {}}}}
    r = httpx.post(gw.url("demo"), json=discover, headers=headers | {"Mcp-Method": "server/discover"}, timeout=30)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["supportedVersions"] == [MODERN] and "tools" in result["capabilities"], result
    assert result["serverInfo"]["name"] != "demo" or result["serverInfo"], result

    # The TypeScript SDK v2 client, pinned to 2026-07-28.
    out = ts_client(gw.url("demo"), token, {
        "mode": MODERN, "list": True,
        "calls": [{"name": "get_patient", "arguments": {"patient_id": "pat_1001"}}]}, client=TS_CLIENT_V2)
    assert out["ok"], out
    assert set(out["tools"]) == {"list_patients", "get_patient"}, out
    assert "Maria" in str(out["calls"][0]["result"]) and not out["calls"][0]["result"].get("isError"), out


def test_a_modern_client_reaches_a_legacy_sse_server(gateways: Any, upstreams: Any) -> None:
    upstream = upstreams.recording("legacy-sse")
    gw = gateways.new([{"name": "legacy", "policy": "p", "sse_url": upstream.url}], {"p": POLICY})
    token = gw.grant("legacy", "modern-to-sse")

    async def scenario() -> None:
        async with modern_client(gw.url("legacy"), token) as client:
            assert "echo" in await tool_names(client)
            assert_allowed(await client.call_tool("echo", {"text": "through a legacy session"}), "through a legacy session")
            assert_denied(await client.call_tool("add", {"a": 1, "b": 2}), "(default deny)")

    run(scenario)


def test_a_modern_client_reaches_a_legacy_only_http_server_found_out_by_a_probe(gateways: Any, upstreams: Any) -> None:
    """server-everything over Streamable HTTP serves only the legacy era. toolgate asks it
    once (`server/discover`), learns that, and relays the 2026-07-28 client over a legacy
    session of its own; `era = "legacy"` on a server says so without asking."""
    url = upstreams.everything_http().url
    everything_policy = {"version": "1", "default": "deny", "tools": {"echo": {}}}
    gw = gateways.new([http_server("ev", "p", url), http_server("ev-pinned", "p", url) | {"era": "legacy"}],
                      {"p": everything_policy})
    for server in ("ev", "ev-pinned"):
        token = gw.grant(server, f"modern-{server}")

        async def scenario() -> None:
            async with modern_client(gw.url(server), token) as client:
                assert await tool_names(client) == {"echo"}
                assert_allowed(await client.call_tool("echo", {"message": "found out"}), "Echo: found out")
                assert_denied(await client.call_tool("get-sum", {"a": 1, "b": 2}), "(default deny)")

        run(scenario)
    log = gw.stderr_path.read_text()
    probes = [line for line in log.splitlines() if "upstream era found out" in line]
    assert len(probes) == 1 and "server=ev " in probes[0] and "legacy only" in probes[0], probes


def test_era_modern_is_refused_for_a_stdio_server(gateways: Any) -> None:
    gw = gateways.new([demo_server("demo", "p") | {"era": "modern"}], {"p": POLICY}, start=False)
    proc = subprocess.run([str(toolgate_bin()), "serve", "--config", str(gw.config_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc
    assert 'servers[0].era: "modern" is for Streamable HTTP servers' in proc.stderr, proc.stderr


def test_a_modern_client_listens_through_a_translated_session(gateways: Any) -> None:
    """`subscriptions/listen` to a stdio server (which has only the legacy era's
    notifications): toolgate acknowledges, then relays the server's `tools/list_changed`
    stamped with the subscription's id."""
    import asyncio

    from helpers import NODE_DIR

    changing = {"name": "lc", "policy": "open", "pinning": "off", "command": "node",
                "args": [str(NODE_DIR / "list-changed-server.mjs")]}
    gw = gateways.new([changing], {"open": {"version": "1", "default": "allow"}})
    token = gw.grant("lc", "listener")

    async def scenario() -> None:
        async with modern_client(gw.url("lc"), token) as client:
            async with client.listen(tools_list_changed=True, prompts_list_changed=True) as sub:
                assert sub.honored.tools_list_changed and sub.honored.prompts_list_changed, sub.honored
                assert_allowed(await client.call_tool("add_tool", {}), "tool list changed")
                event = await asyncio.wait_for(sub.__anext__(), 10)
                assert "tool" in type(event).__name__.lower() or "tools" in repr(event).lower(), event
            assert await tool_names(client) == {"add_tool", "added_tool"}

    run(scenario)


def test_concurrent_stateless_requests_with_the_same_id_get_their_own_answers(gateways: Any) -> None:
    """Stateless requests of one grant share toolgate's legacy session to a stdio server;
    clients reuse ids (here all `1`). Each request goes to the server under an id of its own,
    so every answer comes back to the request that asked, under the id it sent."""
    import asyncio

    import httpx as hx

    gw = gateways.new([demo_server("demo", "p")], {"p": POLICY})
    token = gw.grant("demo", "same-ids")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": MODERN,
                   "Mcp-Method": "tools/call", "Mcp-Name": "get_patient"})
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    patients = ["pat_1001", "pat_1003", "pat_1004"] * 4

    async def one(client: Any, patient: str) -> tuple[str, str]:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "get_patient", "arguments": {"patient_id": patient}, "_meta": meta}}
        r = await client.post(gw.url("demo"), json=body, headers=headers, timeout=30)
        return patient, r.text

    async def scenario() -> None:
        async with hx.AsyncClient() as client:
            results = await asyncio.gather(*(one(client, p) for p in patients))
        for patient, text in results:
            assert '"id":1' in text and patient in text, (patient, text[:300])
            others = {p for p in patients if p != patient}
            assert not any(f'\\"id\\": \\"{o}\\"' in text for o in others), (patient, text[:300])

    run(scenario)


def test_a_legacy_client_reaches_a_server_that_serves_only_the_modern_era(gateways: Any, upstreams: Any) -> None:
    """The Python `MCPServer` behind a filter that refuses `initialize` (it serves only
    2026-07-28): toolgate answers the legacy client's `initialize` from the server's
    `server/discover`, keeps the session itself, and sends each request in that era (the
    envelope in `_meta`, the `Mcp-Method`/`Mcp-Name` headers). Every call is judged as
    usual; the audit says the agent spoke legacy and the upstream 2026-07-28."""
    from helpers import mcp_client, recorded_requests

    upstream = upstreams.recording("modern-only")
    policy = {"version": "1", "default": "deny", "tools": {
        "echo": {}, "add": {"deny_if": [{"path": "args.a", "op": "gt", "value": 100}]}}}
    gw = gateways.new([http_server("modern", "p", upstream.url)], {"p": policy})
    token = gw.grant("modern", "legacy-client")

    async def scenario() -> None:
        async with mcp_client(gw.url("modern"), token) as client:
            assert await tool_names(client) == {"echo", "add"}
            assert_allowed(await client.call_tool("echo", {"text": "over the modern era"}), "over the modern era")
            assert_allowed(await client.call_tool("add", {"a": 2, "b": 3}), "5")
            assert_denied(await client.call_tool("add", {"a": 500, "b": 1}), "/tools/add/deny_if/0")
            assert_denied(await client.call_tool("delete_everything", {}), "(default deny)")

    run(scenario)
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert [(c["tool"], c["decision"]) for c in calls] == [
        ("echo", "allow"), ("add", "allow"), ("add", "deny"), ("delete_everything", "deny")], calls
    assert {(c.get("client_era"), c.get("upstream_era")) for c in calls} == {("legacy", "2026-07-28")}, calls
    # What reached the server: no session, the 2026-07-28 headers on every call.
    seen = [r for r in recorded_requests(upstream) if r.get("method") == "POST"]
    calls_seen = [r for r in seen if r["headers"].get("mcp-method") == "tools/call"]
    assert len(calls_seen) == 2, seen
    for r in calls_seen:
        h = r["headers"]
        assert h.get("mcp-protocol-version") == MODERN and "mcp-session-id" not in h, h
        assert h.get("mcp-name") in ("echo", "add"), h


def test_a_legacy_servers_elicitation_reaches_a_modern_client_as_input_required(gateways: Any) -> None:
    """server-everything over stdio asks `elicitation/create` during a call (a legacy
    server-to-client request); a 2026-07-28 client has no stream for it, so toolgate answers
    the call with `input_required`, parks the running call, and feeds the client's retry back
    to the server. One call, one audit record."""
    import mcp_types as types

    gw = gateways.new([everything_stdio_server("ev", "p")], {"p": {"version": "1", "default": "allow"}})
    token = gw.grant("ev", "modern-elicit")
    asked: list[Any] = []

    async def person(context: Any, params: Any) -> Any:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def scenario() -> str:
        async with modern_client(gw.url("ev"), token, MODERN, elicitation_callback=person) as client:
            result = await client.call_tool("trigger-elicitation-request", {})
            return assert_allowed(result)

    text = run(scenario)
    assert len(asked) == 1 and "name" in asked[0].requested_schema["properties"], asked
    assert "- Name: Ada Lovelace" in text, text
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert [(c["tool"], c["decision"]) for c in calls] == [("trigger-elicitation-request", "allow")], calls
    outcomes = [r for r in gw.audit_records("--kind", "outcome") if r.get("call_seq") == calls[0]["seq"]]
    assert [o.get("outcome") for o in outcomes] == ["ok"], outcomes


def test_a_modern_servers_input_required_reaches_a_legacy_client_as_its_own_requests(
    gateways: Any, upstreams: Any
) -> None:
    """A 2026-07-28-only server answers `input_required` (an elicitation, or a sampling
    request); toolgate asks the legacy client on the call's stream with a legacy request,
    sends the call again with the client's answer and the server's `requestState`, and
    relays the final result: one call, judged and recorded once."""
    import mcp_types as types
    from helpers import mcp_client

    upstream = upstreams.recording("modern-only")
    gw = gateways.new([http_server("modern", "p", upstream.url)], {"p": {"version": "1", "default": "allow"}})
    token = gw.grant("modern", "legacy-asked")
    asked: list[str] = []

    async def person(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Grace"})

    async def model(context: Any, params: Any) -> Any:
        asked.append(params.messages[0].content.text)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Paris"), model="stub")

    async def scenario() -> tuple[str, str]:
        async with mcp_client(gw.url("modern"), token, elicitation_callback=person, sampling_callback=model) as c:
            named = assert_allowed(await c.call_tool("ask_name", {}))
            sampled = assert_allowed(await c.call_tool("ask_model", {}))
            return named, sampled

    async def without_capabilities() -> str:
        async with mcp_client(gw.url("modern"), token) as c:
            try:
                result = await c.call_tool("ask_name", {})
            except Exception as e:  # noqa: BLE001 (the SDK raises its own error type)
                return str(e)
            return f"not refused: {result}"

    named, sampled = run(scenario)
    assert "Hello, Grace!" in named and "The model said: Paris" in sampled, (named, sampled)
    refused = run(without_capabilities)
    assert "did not declare the `elicitation` capability" in refused, refused
    assert asked == ["What is your name?", "What is the capital of France?"], asked
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert [c["tool"] for c in calls] == ["ask_name", "ask_model", "ask_name"], calls
    outcomes = [r.get("outcome") for r in gw.audit_records("--kind", "outcome")]
    assert outcomes[:2] == ["ok", "ok"] and len(outcomes) == 3, outcomes


def test_toolgate_state_is_bound_to_its_grant_and_a_missing_capability_is_refused_for_the_client(
    gateways: Any,
) -> None:
    """Raw 2026-07-28 requests to server-everything over stdio: a `requestState` toolgate never
    gave, or gave another grant, gets -32602 (the parked call stays for its own grant, whose
    retry then completes it); a client that does not declare elicitation is never asked: the
    server's request is refused on its behalf and the call ends without `input_required`."""
    import json

    gw = gateways.new([everything_stdio_server("ev", "p")], {"p": {"version": "1", "default": "allow"}})
    alice, mallory = gw.grant("ev", "alice"), gw.grant("ev", "mallory")

    def call(token: str, caps: dict[str, Any], extra: dict[str, Any] | None = None, rid: int = 1) -> dict[str, Any]:
        params: dict[str, Any] = {"name": "trigger-elicitation-request", "arguments": {},
                                  "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                            "io.modelcontextprotocol/clientCapabilities": caps}}
        params |= extra or {}
        headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{
            "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "trigger-elicitation-request"})
        body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}
        r = httpx.post(gw.url("ev"), json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        if r.headers["content-type"].startswith("text/event-stream"):
            messages = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]
            answers = [m for m in messages if m.get("id") == rid and "method" not in m]
            assert len(answers) == 1, messages
            return answers[0]
        return r.json()

    asked = call(alice, {"elicitation": {}})
    result = asked["result"]
    assert result["resultType"] == "input_required", asked
    state = result["requestState"]
    assert state.startswith("toolgate-era:"), result
    (key, request), = result["inputRequests"].items()
    assert request["method"] == "elicitation/create" and "name" in request["params"]["requestedSchema"]["properties"]

    forged = call(alice, {"elicitation": {}}, {"requestState": "toolgate-era:00000000", "inputResponses": {}}, rid=2)
    assert forged["error"]["code"] == -32602 and "without `requestState`" in forged["error"]["message"], forged
    stolen = call(mallory, {"elicitation": {}}, {"requestState": state, "inputResponses": {key: {"action": "decline"}}}, rid=3)
    assert stolen["error"]["code"] == -32602, stolen

    answer = {"action": "accept", "content": {"name": "Ada", "check": True}}
    done = call(alice, {"elicitation": {}}, {"requestState": state, "inputResponses": {key: answer}}, rid=4)
    assert done["result"]["resultType"] == "complete" and "Ada" in json.dumps(done["result"]["content"]), done
    # Taken once: the same state again is unknown.
    again = call(alice, {"elicitation": {}}, {"requestState": state, "inputResponses": {key: answer}}, rid=5)
    assert again["error"]["code"] == -32602, again

    # A retry must be the request that was asked about.
    other = call(alice, {"elicitation": {}}, rid=7)
    other_state = other["result"]["requestState"]
    body_other = {"requestState": other_state, "inputResponses": {key: answer}}
    params = {"name": "echo", "arguments": {"message": "x"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}} | body_other
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {alice}", **{
        "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
    r = httpx.post(gw.url("ev"), json={"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": params},
                   headers=headers, timeout=30)
    assert r.json()["error"]["code"] == -32602 and "another request" in r.json()["error"]["message"], r.text
    # ... and it is still there for the right retry.
    done = call(alice, {"elicitation": {}}, {"requestState": other_state, "inputResponses": {key: answer}}, rid=9)
    assert done["result"]["resultType"] == "complete", done

    # No elicitation declared: no input_required; the server got an error for its request.
    plain = call(alice, {}, rid=6)
    assert plain.get("result", {}).get("resultType") != "input_required", plain

    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    # Judged once per call: the two asked (each completed by its retry) and the last.
    assert [c["grant_label"] for c in calls] == ["alice", "alice", "alice"], calls


def test_a_call_parked_for_input_ends_when_its_client_never_retries(gateways: Any) -> None:
    """With `upstream_timeout = "2s"`, a call parked for its client's input and never
    retried is ended: its outcome is recorded as abandoned and its state is unknown after."""
    import json
    import time

    gw = gateways.new([everything_stdio_server("ev", "p")], {"p": {"version": "1", "default": "allow"}},
                      extra={"upstream_timeout": "2s"})
    token = gw.grant("ev", "slow-person")
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{
        "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "trigger-elicitation-request"})

    def call(extra: dict[str, Any], rid: int) -> dict[str, Any]:
        params = {"name": "trigger-elicitation-request", "arguments": {}, "_meta": meta} | extra
        r = httpx.post(gw.url("ev"), json={"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params},
                       headers=headers, timeout=30)
        if r.headers["content-type"].startswith("text/event-stream"):
            msgs = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]
            return next(m for m in msgs if m.get("id") == rid)
        return r.json()

    asked = call({}, 1)["result"]
    assert asked["resultType"] == "input_required", asked
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    deadline = time.monotonic() + 10
    outcomes: list[Any] = []
    while time.monotonic() < deadline:
        outcomes = [r.get("outcome") for r in gw.audit_records("--kind", "outcome") if r.get("call_seq") == calls[0]["seq"]]
        if outcomes:
            break
        time.sleep(0.3)
    assert outcomes == ["abandoned"], outcomes
    late = call({"requestState": asked["requestState"], "inputResponses": {"toolgate-1": {"action": "decline"}}}, 2)
    assert late["error"]["code"] == -32602, late
