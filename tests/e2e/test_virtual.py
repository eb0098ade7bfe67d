"""Virtual servers (`[[virtual_servers]]`): one endpoint, `/mcp/assistant`, combining tools of
three real upstreams, under one policy over the names it exposes:

- `@modelcontextprotocol/server-filesystem` over stdio (a temporary folder with a file),
  its `read_*` tools and `list_directory`, prefixed `fs_`;
- the bundled demo server over stdio, six named tools prefixed `dental_`, `get_patient`
  renamed `patient` (the prefix is not applied to it) with its own description;
- `@modelcontextprotocol/server-everything` over Streamable HTTP, all its tools (no `tools`
  key), prefixed `ev_`, with its prompts (prefixed) and resources (URIs unchanged).

Driven by the Python SDK client in the legacy era (initialize + session, answered by
toolgate itself) and in the 2026-07-28 era (stateless, `mode="2026-07-28"`), and by the
TypeScript SDK v2 client in both. Covered: the listing (prefixes, renames, descriptions,
the policy's filter), allowed calls reaching each member under its original name, denials,
an approval, a limit counter shared by tools of two upstreams, the audit record naming the
real server and tool, elicitation and progress from a member, a member that is down or
killed mid-session, and config errors (colliding exposed names) refused at load."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LOG_SOURCES, GatewayFactory
from helpers import (
    NODE_DIR,
    TS_CLIENT_V2,
    assert_allowed,
    assert_denied,
    demo_server,
    describe,
    expect_mcp_error,
    http_server,
    is_error,
    mcp_client,
    result_text,
    run,
    start_everything_http,
    tool_names,
    toolgate_bin,
    ts_client,
)

MODERN = "2026-07-28"
MODES = ["legacy", MODERN]
FILESYSTEM_BIN = NODE_DIR / "node_modules" / ".bin" / "mcp-server-filesystem"
NOTE = "virtual servers combine tools\n"
PATIENT_DESCRIPTION = "Look up one patient by id."
DELETE_REASON = "Patient records are deleted by staff, never by an agent."
REFUND = {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}
# One counter, named the same in the rules of two tools from two upstreams.
SHARED_LIMIT = {"counter": "lookups", "window": "hour", "max": 3, "scope": "grant"}

# The virtual server's policy: over the EXPOSED names.
ASSISTANT_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "hide": ["dental_export_patient_data", "ev_get-env"],
    "tools": {
        # Reached through the `read_*` pattern only.
        "fs_read_file": {},
        "fs_read_text_file": {},
        "fs_list_directory": {},
        # Allowed here, but the include names `list_directory` exactly (not a prefix) and
        # leaves `write_file` out: neither is exposed.
        "fs_list_directory_with_sizes": {},
        "fs_write_file": {},
        "dental_list_patients": {},
        "patient": {},
        # The original name of `patient`: allowed here, but not a name the server exposes.
        "get_patient": {},
        "dental_search_patients": {"limits": [SHARED_LIMIT]},
        "dental_refund_payment": {"action": "require_approval", "approval": {"timeout": "30s"}},
        "dental_delete_patient_record": {"action": "deny", "reason": DELETE_REASON},
        "ev_echo": {
            "deny_if": [{"path": "args.message", "op": "regex", "value": "(?i)password"}],
            "on_deny": "No passwords through echo.",
        },
        "ev_get-sum": {"limits": [SHARED_LIMIT]},
        "ev_trigger-long-running-operation": {},
        "ev_trigger-elicitation-request": {},
        "ev_get-tiny-image": {"action": "deny", "reason": "No images."},
    },
}
ALLOW_ALL = {"version": "1", "default": "allow"}

# What `tools/list` shows a client without the elicitation capability.
LISTED = {
    "fs_read_file", "fs_read_text_file", "fs_list_directory",
    "dental_list_patients", "patient", "dental_search_patients", "dental_refund_payment",
    "ev_echo", "ev_get-sum", "ev_trigger-long-running-operation",
}  # fmt: skip
# Registered by server-everything only for clients that declare elicitation.
ELICITATION_TOOL = "ev_trigger-elicitation-request"
# Names the virtual server does not expose (two of them allowed by its policy).
NOT_EXPOSED = {"wipe_everything", "fs_write_file", "get_patient", "fs_list_directory_with_sizes"}
# The prompts of server-everything (dist/prompts), exposed with the include's prefix.
EV_PROMPTS = {"ev_simple-prompt", "ev_args-prompt"}
EV_RESOURCE = "demo://resource/static/document/instructions.md"


def assistant(includes: list[dict[str, Any]], name: str = "assistant", policy: str = "assistant") -> dict[str, Any]:
    return {"name": name, "policy": policy, "include": includes}


def filesystem_server(name: str, root: Path, policy: str = "direct") -> dict[str, Any]:
    return {"name": name, "policy": policy, "command": str(FILESYSTEM_BIN), "args": [str(root)]}


def listed_names(names: set[str], mode: str) -> set[str]:
    """A 2026-07-28 client has no session of its own: which capabilities toolgate declares on
    the member sessions it keeps per grant is not part of the contract, so the tool that
    server-everything registers for elicitation-capable clients is not compared there."""
    return names - {ELICITATION_TOOL} if mode == MODERN else names


@asynccontextmanager
async def client(url: str, token: str, mode: str, **kwargs: Any) -> AsyncIterator[Any]:
    """The Python SDK client in `mode`: "legacy" (initialize + Mcp-Session-Id) or
    "2026-07-28" (stateless)."""
    if mode == "legacy":
        async with mcp_client(url, token, **kwargs) as c:
            yield c
        return
    import httpx2
    import mcp
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with mcp.Client(transport, mode=mode, cache=None, **kwargs) as c:
            yield c


async def tools_by_name(c: Any) -> dict[str, Any]:
    result = await c.list_tools()
    tools = {t.name: t for t in result.tools}
    while result.next_cursor:
        result = await c.list_tools(cursor=result.next_cursor)
        tools |= {t.name: t for t in result.tools}
    return tools


async def expect_error_naming(awaitable: Any, *names: str) -> str:
    """Await a request that must fail with a JSON-RPC error whose message names `names`."""
    from mcp.shared.exceptions import MCPError

    try:
        result = await awaitable
    except MCPError as exc:
        for name in names:
            assert name in exc.message, f"the error should name {name!r}: {exc.code} {exc.message!r}"
        return exc.message
    raise AssertionError(f"expected a JSON-RPC error naming {names}, got a result: {describe(result)}")


async def expect_not_served(awaitable: Any, leak: str | None = None) -> None:
    """A call that must not reach any member: a JSON-RPC error or an `isError` result,
    without the member's data (`leak`)."""
    from mcp.shared.exceptions import MCPError

    try:
        result = await awaitable
    except MCPError:
        return
    assert is_error(result), f"expected the call to fail, got {describe(result)}"
    if leak is not None:
        assert leak not in result_text(result), f"the call reached the member: {describe(result)}"


async def wait_for_approval(gw: Any, grant: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        out = (await asyncio.to_thread(gw.cli, "approvals list", "--json")).stdout
        mine = [a for a in json.loads(out) if a.get("grant") == grant]
        if mine:
            assert len(mine) == 1, mine
            return mine[0]
        assert time.monotonic() < deadline, f"no approval of grant {grant!r} appeared within {timeout} s"
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# The shared gateway: fs + demo + everything (HTTP) behind /mcp/assistant


class Shared:
    def __init__(self, gw: Any, files: Path) -> None:
        self.gw = gw
        self.files = files
        self.note = files / "note.txt"
        self.url = gw.url("assistant")
        self.grants = 0

    def grant(self, label: str) -> tuple[str, str]:
        """A fresh grant for the virtual server (its own limit counters): (label, token)."""
        self.grants += 1
        label = f"{label}-{self.grants}"
        return label, self.gw.grant("assistant", label)


@pytest.fixture(scope="module")
def shared_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path_factory.mktemp("virtual"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def shared(shared_factory: GatewayFactory, upstreams: Any) -> Shared:
    if not toolgate_bin().is_file():
        pytest.fail(f"toolgate binary not found at {toolgate_bin()}: set TOOLGATE_BIN or run tests/e2e/run.sh")
    assert FILESYSTEM_BIN.exists(), f"{FILESYSTEM_BIN} missing: run tests/e2e/run.sh (npm ci)"
    files = shared_factory.tmp_path / "files"
    files.mkdir()
    (files / "note.txt").write_text(NOTE, encoding="utf-8")
    servers = [
        filesystem_server("fs", files),
        demo_server("demo", "direct"),
        http_server("everything", "direct", upstreams.everything_http().url),
    ]
    virtual = assistant([
        {"server": "fs", "tools": ["read_*", "list_directory"], "prefix": "fs_"},
        {
            "server": "demo",
            "tools": ["list_patients", "get_patient", "search_patients", "refund_payment",
                      "delete_patient_record", "export_patient_data"],
            "prefix": "dental_",
            "rename": {"get_patient": "patient"},
            "describe": {"patient": PATIENT_DESCRIPTION},
        },
        {"server": "everything", "prefix": "ev_"},
    ])  # fmt: skip
    gw = shared_factory.new(
        servers, {"assistant": ASSISTANT_POLICY, "direct": ALLOW_ALL}, virtual_servers=[virtual]
    )
    return Shared(gw, files)


@pytest.fixture(autouse=True)
def _shared_logs(request: pytest.FixtureRequest, _log_sources: None) -> None:
    """A failing test's report shows the shared gateway's logs too (it is module-scoped)."""
    if "shared" in request.fixturenames:
        request.node.stash[LOG_SOURCES].append(request.getfixturevalue("shared_factory"))


# ---------------------------------------------------------------------------------------------
# Listing


@pytest.mark.parametrize("mode", MODES)
def test_listing_prefixes_renames_descriptions_and_the_policy_filter(shared: Shared, mode: str) -> None:
    _, token = shared.grant(f"list-{mode}")
    direct = shared.gw.grant("demo", f"direct-{mode}")

    async def scenario() -> None:
        async with mcp_client(shared.gw.url("demo"), direct) as c:
            originals = await tools_by_name(c)
        async with client(shared.url, token, mode) as c:
            if mode == "legacy":
                # toolgate answered `initialize` itself, as the virtual server.
                assert c.server_info is not None and c.server_info.name == "assistant", c.server_info
                caps = c.server_capabilities
                assert caps.tools and caps.tools.list_changed, caps
                assert caps.prompts and caps.prompts.list_changed, caps
                assert caps.resources and caps.resources.list_changed, caps
            tools = await tools_by_name(c)
            names = set(tools)
            # Prefixes, the rename (no prefix on it), patterns and names as written, the
            # policy's filter (default deny, `action: deny`, hidden) and nothing not included.
            assert listed_names(names, mode) == LISTED, sorted(names)
            # The description override; the rest of a renamed tool is the upstream's.
            assert tools["patient"].description == PATIENT_DESCRIPTION
            assert tools["patient"].input_schema == originals["get_patient"].input_schema
            assert tools["dental_list_patients"].description == originals["list_patients"].description
            assert tools["dental_list_patients"].input_schema == originals["list_patients"].input_schema
            assert "read" in (tools["fs_read_text_file"].description or "").lower(), tools["fs_read_text_file"]
            assert tools["ev_echo"].description and "echo" in tools["ev_echo"].description.lower()

            # Prompts of included servers under the include's prefix; they work under it.
            prompts = {p.name for p in (await c.list_prompts()).prompts}
            assert EV_PROMPTS <= prompts, sorted(prompts)
            assert not {"simple-prompt", "args-prompt"} & prompts, sorted(prompts)
            got = await c.get_prompt("ev_args-prompt", {"city": "Lisbon"})
            assert "What's weather in Lisbon?" in got.messages[0].content.text, got

            # Resources with their URIs unchanged, readable through the virtual server.
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert EV_RESOURCE in uris, sorted(uris)
            read = await c.read_resource(EV_RESOURCE)
            assert read.contents and str(read.contents[0].uri) == EV_RESOURCE, read
            assert len(getattr(read.contents[0], "text", "") or "") > 20, read

    run(scenario)


# ---------------------------------------------------------------------------------------------
# Calls


@pytest.mark.parametrize("mode", MODES)
def test_calls_are_judged_by_exposed_name_and_reach_the_member_by_its_own(shared: Shared, mode: str) -> None:
    label, token = shared.grant(f"calls-{mode}")
    written = shared.files / f"written-{mode}.txt"

    async def scenario() -> None:
        async with client(shared.url, token, mode) as c:
            await c.list_tools()
            # One allowed call per member, each under its exposed name.
            assert assert_allowed(await c.call_tool("fs_read_text_file", {"path": str(shared.note)})) == NOTE
            listing = assert_allowed(await c.call_tool("fs_list_directory", {"path": str(shared.files)}))
            assert "note.txt" in listing, listing
            assert_allowed(await c.call_tool("patient", {"patient_id": "pat_1001"}), "Gonzalez")
            assert_allowed(await c.call_tool("dental_list_patients", {}), "pat_1001")
            assert assert_allowed(await c.call_tool("ev_echo", {"message": "through assistant"})) == (
                "Echo: through assistant"
            )
            # Denied with the reason, by the rule under the exposed name.
            result = await c.call_tool("dental_delete_patient_record", {"patient_id": "pat_1001", "reason": "test"})
            assert_denied(result, "/tools/dental_delete_patient_record/action", DELETE_REASON)
            denial = assert_denied(
                await c.call_tool("ev_echo", {"message": "my password is hunter2"}),
                "/tools/ev_echo/deny_if/0",
                "No passwords through echo.",
            )
            assert denial.why, denial.text
            assert_denied(await c.call_tool("ev_get-tiny-image", {}), "/tools/ev_get-tiny-image/action", "No images.")
            # Exposed but not in the policy: default deny.
            assert_denied(await c.call_tool("fs_read_media_file", {"path": str(shared.note)}), "(default deny)")
            # Hidden, as on a plain server: unknown tool.
            await expect_mcp_error(c.call_tool("dental_export_patient_data", {"patient_id": "pat_1001"}), -32602)
            await expect_mcp_error(c.call_tool("ev_get-env", {}), -32602)
            # Not exposed (whatever the policy says of the name): never reaches a member.
            await expect_not_served(c.call_tool("wipe_everything", {}))
            await expect_not_served(c.call_tool("fs_write_file", {"path": str(written), "content": "x"}))
            await expect_not_served(c.call_tool("get_patient", {"patient_id": "pat_1001"}), leak="Gonzalez")
            await expect_not_served(c.call_tool("fs_list_directory_with_sizes", {"path": str(shared.files)}),
                                    leak="note.txt")
            # The session goes on.
            assert_allowed(await c.call_tool("patient", {"patient_id": "pat_1001"}), "Gonzalez")

    run(scenario)
    assert not written.exists(), "write_file is not included: the call must not reach the filesystem server"

    records = shared.gw.audit_records("--grant", label, "--kind", "call")
    calls = [r for r in records if r.get("method") == "tools/call"]
    assert all(r["server"] == "assistant" for r in calls), [(r["server"], r.get("tool")) for r in calls]
    allowed = [(r["tool"], r.get("upstream_server"), r.get("upstream_tool")) for r in calls if r["decision"] == "allow"]
    # The member's server and the tool's own name beside the exposed one.
    assert allowed[:5] == [
        ("fs_read_text_file", "fs", "read_text_file"),
        ("fs_list_directory", "fs", "list_directory"),
        ("patient", "demo", "get_patient"),
        ("dental_list_patients", "demo", "list_patients"),
        ("ev_echo", "everything", "echo"),
    ], allowed
    assert allowed[-1] == ("patient", "demo", "get_patient"), allowed
    denied = [(r["tool"], r["rule"]) for r in calls if r["decision"] == "deny"]
    assert denied[:6] == [
        ("dental_delete_patient_record", "/tools/dental_delete_patient_record/action"),
        ("ev_echo", "/tools/ev_echo/deny_if/0"),
        ("ev_get-tiny-image", "/tools/ev_get-tiny-image/action"),
        ("fs_read_media_file", "(default deny)"),
        ("dental_export_patient_data", "(hidden)"),
        ("ev_get-env", "(hidden)"),
    ], denied
    outcomes = [r for r in shared.gw.audit_records("--grant", label, "--kind", "outcome")]
    first = next(r for r in calls if r["tool"] == "patient")
    linked = [o for o in outcomes if o.get("call_seq") == first["seq"]]
    assert [o.get("outcome") for o in linked] == ["ok"], linked
    # docs/AUDIT.md: every request that passes authentication is recorded, tools/call with
    # its decision; a call of a name the server does not expose is refused, never forwarded.
    refused = {r["tool"]: r for r in calls if r["tool"] in NOT_EXPOSED}
    assert set(refused) == NOT_EXPOSED, f"refused calls missing from the audit log: {NOT_EXPOSED - set(refused)}"
    assert all(r["decision"] == "deny" and "upstream_server" not in r for r in refused.values()), refused


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_is_asked_under_the_exposed_name(shared: Shared, mode: str) -> None:
    label, token = shared.grant(f"approval-{mode}")

    async def scenario() -> None:
        async with client(shared.url, token, mode) as c:
            call = asyncio.create_task(c.call_tool("dental_refund_payment", REFUND))
            pending = await wait_for_approval(shared.gw, label)
            assert pending["server"] == "assistant" and pending["tool"] == "dental_refund_payment", pending
            assert pending["arguments"] == REFUND, pending
            await asyncio.sleep(0.3)
            assert not call.done(), "the call is held until someone decides"
            await asyncio.to_thread(shared.gw.cli, "approvals approve", pending["id"], "--as", "olga")
            assert_allowed(await asyncio.wait_for(call, 30), "pay_5001")
            # Another one, denied by the operator.
            again = asyncio.create_task(c.call_tool("dental_refund_payment", {**REFUND, "amount": 7}))
            second = await wait_for_approval(shared.gw, label)
            assert second["id"] != pending["id"]
            await asyncio.to_thread(
                shared.gw.cli, "approvals deny", second["id"], "--as", "olga", "--reason", "not today"
            )
            denial = assert_denied(await asyncio.wait_for(again, 30), "(approval denied)")
            assert "not today" in denial.message, denial.text

    run(scenario)
    calls = [r for r in shared.gw.audit_records("--grant", label, "--kind", "call") if r.get("method") == "tools/call"]
    assert [(r["tool"], r["decision"]) for r in calls] == [
        ("dental_refund_payment", "require_approval"),
        ("dental_refund_payment", "allow"),
        ("dental_refund_payment", "require_approval"),
        ("dental_refund_payment", "deny"),
    ], calls
    assert calls[1]["approver"] == "olga", calls[1]
    assert (calls[1].get("upstream_server"), calls[1].get("upstream_tool")) == ("demo", "refund_payment"), calls[1]


@pytest.mark.parametrize("mode", MODES)
def test_a_limit_counter_is_shared_by_tools_of_two_upstreams(shared: Shared, mode: str) -> None:
    """`lookups` (3 an hour per grant) counts `dental_search_patients` (demo) and `ev_get-sum`
    (everything) together: neither reaches 3 alone, together they do."""
    _, token = shared.grant(f"limit-{mode}")

    async def scenario() -> None:
        async with client(shared.url, token, mode) as c:
            assert_allowed(await c.call_tool("dental_search_patients", {"query": "gonzalez"}), "pat_1001")
            assert_allowed(await c.call_tool("dental_search_patients", {"query": "maria"}))
            assert assert_allowed(await c.call_tool("ev_get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."
            denial = assert_denied(await c.call_tool("ev_get-sum", {"a": 1, "b": 1}), "/tools/ev_get-sum/limits/0")
            assert denial.retry_after is not None and denial.retry_after > 0, denial.text
            assert_denied(
                await c.call_tool("dental_search_patients", {"query": "x"}), "/tools/dental_search_patients/limits/0"
            )
            # Tools outside the counter go on.
            assert_allowed(await c.call_tool("dental_list_patients", {}), "pat_1001")

    run(scenario)


# ---------------------------------------------------------------------------------------------
# Server-to-client traffic of a member


@pytest.mark.parametrize("mode", MODES)
def test_progress_of_a_member_reaches_the_client(shared: Shared, mode: str) -> None:
    _, token = shared.grant(f"progress-{mode}")

    async def scenario() -> list[tuple[float, float | None]]:
        seen: list[tuple[float, float | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total))

        async with client(shared.url, token, mode) as c:
            result = await c.call_tool(
                "ev_trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress
            )
            assert_allowed(result, "Long running operation completed")
        return seen

    assert run(scenario) == [(1, 3), (2, 3), (3, 3)]


def test_an_elicitation_from_a_member_reaches_the_client_and_its_answer_goes_back(shared: Shared) -> None:
    """server-everything registers `trigger-elicitation-request` only for clients that declare
    elicitation (so toolgate opened the member session with the client's own capabilities);
    the tool's `elicitation/create` reaches the client on the call's stream, and the answer
    reaches the member, which reports it."""
    import mcp_types as types

    _, token = shared.grant("elicitation")
    asked: list[Any] = []

    async def person(context: Any, params: Any) -> Any:
        asked.append((context.request_id, params))
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def scenario() -> str:
        async with mcp_client(shared.url, token, elicitation_callback=person) as c:
            names = await tool_names(c)
            assert names == LISTED | {ELICITATION_TOOL}, sorted(names)
            result = await c.call_tool(ELICITATION_TOOL, {})
            return assert_allowed(result)

    text = run(scenario)
    assert len(asked) == 1, asked
    request_id, params = asked[0]
    # The member's own id (a number) is tagged with the member (docs/VIRTUAL.md): ids of two
    # members cannot meet at the client.
    assert isinstance(request_id, str) and "everything" in request_id, request_id
    assert params.message == "Please provide inputs for the following fields:", params
    assert "name" in params.requested_schema["properties"], params
    assert "User provided the requested information" in text and "- Name: Ada Lovelace" in text, text


# ---------------------------------------------------------------------------------------------
# The TypeScript SDK v2 client


def test_the_typescript_sdk_v2_client_lists_and_calls_in_both_eras(shared: Shared) -> None:
    _, token = shared.grant("ts-v2")
    script = {
        "list": True,
        "calls": [
            {"name": "patient", "arguments": {"patient_id": "pat_1001"}},
            {"name": "ev_echo", "arguments": {"message": "from ts"}},
        ],
    }
    for mode in ("legacy", "auto"):
        out = ts_client(shared.url, token, script | {"mode": mode}, client=TS_CLIENT_V2)
        assert out["ok"], out
        if mode == "legacy":
            assert out["era"] == "legacy" and out["sessionId"], out
            assert (out["serverVersion"] or {}).get("name") == "assistant", out["serverVersion"]
        else:
            # `server/discover` answered by toolgate for the virtual server: the modern era.
            probe = out["http"][0]
            assert probe["rpc"] == "server/discover" and probe["status"] == 200, probe
            assert out["era"] == "modern" and out["protocolVersion"] == MODERN and out["sessionId"] is None, out
            assert not any(h["rpc"] == "initialize" for h in out["http"]), out["http"]
        assert listed_names(set(out["tools"] or []), MODERN if mode == "auto" else mode) == LISTED, (mode, out)
        patient, echo = out["calls"]
        assert "result" in patient and "result" in echo, (mode, out["calls"])
        assert "Gonzalez" in result_text(patient["result"]) and not patient["result"].get("isError"), (mode, patient)
        assert result_text(echo["result"]) == "Echo: from ts", (mode, echo)


# ---------------------------------------------------------------------------------------------
# Members down


def test_a_member_that_is_down_fails_only_its_own_tools(request: Any, gateways: Any, tmp_path: Path) -> None:
    """`offline-notes` is a stdio server whose command exits at once; the everything server is
    killed mid-session. Their tools leave the listing and calling one is a JSON-RPC error
    naming the server; the others' tools keep working, in the same session and in new ones."""
    everything = start_everything_http(tmp_path)
    request.node.stash.setdefault(LOG_SOURCES, []).append(everything)
    files = tmp_path / "files"
    files.mkdir()
    (files / "note.txt").write_text(NOTE, encoding="utf-8")
    try:
        servers = [
            filesystem_server("fs", files, "p"),
            demo_server("demo", "p"),
            http_server("everything", "p", everything.url),
            {"name": "offline-notes", "policy": "p", "command": sys.executable,
             "args": ["-c", "import sys; sys.exit(3)"]},
        ]  # fmt: skip
        virtual = assistant(
            [
                {"server": "fs", "tools": ["list_directory"], "prefix": "fs_"},
                {"server": "demo", "tools": ["list_patients"]},
                {"server": "everything", "tools": ["echo"], "prefix": "ev_"},
                {"server": "offline-notes", "tools": ["ping"], "prefix": "notes_"},
            ],
            policy="p",
        )
        gw = gateways.new(servers, {"p": ALLOW_ALL}, virtual_servers=[virtual])
        token = gw.grant("assistant", "down")
        url = gw.url("assistant")

        async def scenario() -> None:
            async with client(url, token, "legacy") as c:
                # The stdio member never starts: its tool is left out, the rest is there.
                assert await tool_names(c) == {"fs_list_directory", "list_patients", "ev_echo"}
                assert assert_allowed(await c.call_tool("ev_echo", {"message": "before"})) == "Echo: before"
                await expect_error_naming(c.call_tool("notes_ping", {}), "offline-notes")
                # The HTTP member goes away mid-session.
                await asyncio.to_thread(everything.stop)
                await expect_error_naming(c.call_tool("ev_echo", {"message": "after"}), "everything")
                assert_allowed(await c.call_tool("list_patients", {}), "pat_1001")
                assert_allowed(await c.call_tool("fs_list_directory", {"path": str(files)}), "note.txt")
                assert await tool_names(c) == {"fs_list_directory", "list_patients"}
            # A new session of either era sees the same.
            for mode in MODES:
                async with client(url, token, mode) as c:
                    assert await tool_names(c) == {"fs_list_directory", "list_patients"}, mode
                    assert_allowed(await c.call_tool("list_patients", {}), "pat_1001")
                    await expect_error_naming(c.call_tool("ev_echo", {"message": mode}), "everything")

        run(scenario, timeout=90)
        # The failed calls' outcomes (docs/VIRTUAL.md): transport errors.
        calls = {r["seq"]: r["tool"] for r in gw.audit_records("--grant", "down", "--kind", "call")
                 if r.get("method") == "tools/call"}
        outcomes = [(calls.get(r.get("call_seq")), r.get("outcome"))
                    for r in gw.audit_records("--grant", "down", "--kind", "outcome")]
        assert [o for o in outcomes if o[0] in ("ev_echo", "notes_ping")] == [
            ("ev_echo", "ok"), ("notes_ping", "transport_error"),
            ("ev_echo", "transport_error"), ("ev_echo", "transport_error"), ("ev_echo", "transport_error"),
        ], outcomes
        # /readyz names the servers the virtual server could not reach; readiness holds.
        ready = httpx.get(gw.base_url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        down = json.dumps(ready.json().get("virtual_servers_down"))
        assert "everything" in down and "offline-notes" in down, ready.text
    finally:
        everything.stop()


# ---------------------------------------------------------------------------------------------
# Config errors at load


def serve_refuses(gw: Any) -> str:
    """Run `toolgate serve` on `gw`'s config: it must exit non-zero at load. Returns its output."""
    argv = [str(toolgate_bin()), "serve", "--config", str(gw.config_path)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=gw.root, timeout=20)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"toolgate serve started on an invalid config:\n{exc.stdout}\n{exc.stderr}") from None
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"toolgate serve exited 0 on an invalid config:\n{out}"
    assert "listening on" not in proc.stdout, out
    return out


CONFIG_ERRORS = {
    # Two includes exposing `lookup` by rename.
    "rename-collision": (
        [
            {"server": "clinic", "tools": ["get_patient"], "rename": {"get_patient": "lookup"}},
            {"server": "papers", "tools": ["read_text_file"], "rename": {"read_text_file": "lookup"}},
        ],
        ["collides", "lookup", "clinic", "papers"],
    ),
    # A prefixed name and a rename landing on the same exposed name.
    "prefix-collision": (
        [
            {"server": "clinic", "tools": ["list_patients"], "prefix": "p_"},
            {"server": "papers", "tools": ["list_directory"], "rename": {"list_directory": "p_list_patients"}},
        ],
        ["collides", "p_list_patients", "clinic", "papers"],
    ),
    # Only real servers can be included.
    "include-unknown-server": ([{"server": "nowhere", "tools": ["x"]}], ["nowhere"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS) + ["include-virtual-server"])
def test_a_bad_virtual_server_is_refused_at_load(gateways: Any, tmp_path: Path, case: str) -> None:
    servers = [demo_server("clinic", "p"), filesystem_server("papers", tmp_path, "p")]
    if case == "include-virtual-server":
        virtuals = [
            assistant([{"server": "clinic", "tools": ["list_patients"]}], name="inner", policy="p"),
            assistant([{"server": "inner", "tools": ["list_patients"]}], name="outer", policy="p"),
        ]
        expected = ["inner"]
    else:
        includes, expected = CONFIG_ERRORS[case]
        virtuals = [assistant(includes, policy="p")]
    gw = gateways.new(servers, {"p": ALLOW_ALL}, virtual_servers=virtuals, start=False)
    out = serve_refuses(gw)
    for word in expected:
        assert word in out, f"{word!r} not in the error:\n{out}"


def test_list_changed_of_a_member_reaches_the_client_and_the_new_tool_is_listed(
    gateways: Any,
) -> None:
    """A member that changes its tools says so (`notifications/tools/list_changed`); the
    client of the virtual server hears it and the next `tools/list` shows the new tool under
    its exposed name once approved (pinning holds a new tool on its real server; the CLI
    approves it under the exposed name). Also: the CLI scan and the admin API see the
    virtual server's tools under their exposed names."""
    changing = {"name": "conf", "policy": "open", "command": "node", "args": [str(NODE_DIR / "list-changed-server.mjs")]}
    policy = {"version": "1", "default": "allow"}
    gw = gateways.new(
        [changing, demo_server("demo", None)],
        {"open": policy},
        virtual_servers=[{
            "name": "mix", "policy": "open",
            "include": [
                {"server": "conf", "prefix": "c_", "tools": ["add_tool", "added_tool"]},
                {"server": "demo", "prefix": "d_", "tools": ["list_patients"]},
            ],
        }],
    )
    token = gw.grant("mix", "lister")
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if isinstance(method, str):
            heard.append(method)

    async def scenario() -> None:
        async with mcp_client(gw.url("mix"), token, message_handler=on_message) as client:
            assert await tool_names(client) == {"c_add_tool", "d_list_patients"}
            assert_allowed(await client.call_tool("c_add_tool", {}), "tool list changed")
            for _ in range(40):
                if "notifications/tools/list_changed" in heard:
                    break
                await asyncio.sleep(0.1)
            assert "notifications/tools/list_changed" in heard, heard
            # New since pinning: held on its real server until approved, which the
            # CLI does under the exposed name.
            assert await tool_names(client) == {"c_add_tool", "d_list_patients"}
            held = gw.cli("tools list", "mix").stdout
            assert "c_added_tool" in held and "conf.added_tool" in held and "HELD" in held, held
            gw.cli("tools approve", "mix", "c_added_tool")
            assert await tool_names(client) == {"c_add_tool", "c_added_tool", "d_list_patients"}
            assert_allowed(await client.call_tool("c_added_tool", {}), "the added tool ran")

    run(scenario)

    scan = subprocess.run([str(toolgate_bin()), "scan", "--config", str(gw.config_path), "--server", "mix",
                           "--format", "json"], capture_output=True, text=True, timeout=60)
    assert scan.returncode in (0, 1), scan.stderr
    names = {t["name"] for s in json.loads(scan.stdout)["servers"] for t in s["tools"]}
    assert {"c_add_tool", "d_list_patients"} <= names, names
    assert not any(n in names for n in ("add_tool", "list_patients", "d_get_patient")), names

    admin = gw.cli("admin-tokens create", "--name", "v", "--role", "viewer").stdout
    admin_token = next(w for w in admin.split() if w.startswith("tga_"))
    api = httpx.get(gw.base_url + "/api/v1/servers", headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    mix = next(s for s in api.json()["servers"] if s["name"] == "mix")
    assert mix["transport"] == "virtual" and [i["server"] for i in mix["include"]] == ["conf", "demo"], mix


def test_a_long_tool_list_comes_in_pages(gateways: Any) -> None:
    """Four demo servers (28 tools each) under one virtual server: 112 tools, listed in pages
    of 100 after the policy's filter; a cursor toolgate did not give is refused."""
    servers = [demo_server(f"demo{i}", None) for i in range(4)]
    gw = gateways.new(servers, {"open": {"version": "1", "default": "allow"}}, virtual_servers=[{
        "name": "big", "policy": "open",
        "include": [{"server": f"demo{i}", "prefix": f"d{i}_"} for i in range(4)]}])
    token = gw.grant("big", "pager")

    async def scenario() -> None:
        async with mcp_client(gw.url("big"), token) as client:
            first = await client.list_tools()
            assert len(first.tools) == 100 and first.next_cursor, (len(first.tools), first.next_cursor)
            names = await tool_names(client)
            assert len(names) == 112 and {"d0_list_patients", "d3_list_patients"} <= names, sorted(names)
            await expect_mcp_error(client.list_tools(cursor="not-ours"), -32602)

    run(scenario)
