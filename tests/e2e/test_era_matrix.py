"""The era matrix, end to end with the official SDKs: every client era against every kind of
upstream, through one toolgate.

Clients (rows): the Python SDK (mcp 2.3.0) in mode "2026-07-28" (pinned), "auto" (it probes
`server/discover`; toolgate answers that probe for every server, so through toolgate "auto"
speaks 2026-07-28 too) and "legacy" (`initialize`, a session); the TypeScript SDK v2 client
(node/client-v2.mjs) in "legacy" and pinned "2026-07-28" (one node run per cell plays every
scenario; each test checks its part of that run).

Upstreams (columns): the reference everything server (@modelcontextprotocol/server-everything,
legacy era only) over its three transports, stdio (`ev-stdio`, started by toolgate), legacy
HTTP+SSE (`ev-sse`) and Streamable HTTP (`ev-http`); and a server of the 2026-07-28 era only,
the Python `MCPServer` behind a filter that refuses `initialize` (`modern`,
upstreams/recording_server.py --modern-only).

Scenarios, in every cell:

- `call`: a plain `tools/call`; the audit record names both eras.
- `progress`: progress notifications of a call with a progressToken reach the client
  (everything's `trigger-long-running-operation`, the recording server's `slow_progress`).
- `elicitation`, `sampling`: the server asks the client during the call. everything sends
  legacy server-to-client requests (`trigger-elicitation-request`, `trigger-sampling-request`;
  it lists them only to a session whose client declared the capability); the modern-only
  server answers `input_required` (`ask_name`, `ask_model`). Across eras toolgate translates:
  a 2026-07-28 client of everything gets an `input_required` result (requestState
  `toolgate-era:…`) and its retry is fed to the still-running call, recorded once; a legacy
  client of the modern-only server is asked with legacy requests on the call's stream while
  toolgate retries upstream with the answers. Between 2026-07-28 peers each round is a request
  of its own, judged and recorded (as test_ts_client_v2.py shows).
- `cancel`: the client gives up on a long call after a second (legacy:
  `notifications/cancelled`; 2026-07-28: it closes the request). The call ends then, the same
  client's next call works, the audit log has the call and its outcome `abandoned` (the agent
  gave up before the answer), and the modern-only server sees its request cancelled
  (everything does not say; but it runs 4 s, so a cancellation it never heard of shows as an
  `ok` outcome). The outcome must come while the client's session is still open (the Python
  client checks from inside it; the TypeScript client keeps it open a second longer and
  reports when it began to close): a call toolgate ends only when the session closes fails.
- `list_changed`: a list change reaches the client (legacy: the session's GET stream;
  2026-07-28: a `subscriptions/listen` stream). everything announces
  `notifications/tools/list_changed` only right after `initialize` (when it adds the tools its
  client's capabilities allow), never on demand; its `gzip-file-as-resource` (given a `data:`
  URL) registers a resource and announces `notifications/resources/list_changed`, so that is
  the change its cells wait for. The modern-only server's `change_tools` announces
  `notifications/tools/list_changed`, on `subscriptions/listen` streams only: a legacy
  client's GET stream gets it only if toolgate listens upstream for it. The change is
  triggered again (at most five times, a second apart) until it arrives, since a legacy client
  opens its GET stream a moment after `initialize`.

One gateway and one set of upstreams serve the whole module (a grant per cell, so each cell's
audit records are its own); `pinning = "off"`, since everything's tool list depends on the
capabilities of the session that asks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import LOG_SOURCES
from helpers import (
    TS_CLIENT_V2,
    Gateway,
    Upstream,
    assert_allowed,
    describe,
    everything_stdio_server,
    http_server,
    run,
    start_everything_sse,
    start_recording_server,
    toolgate_bin,
    ts_client,
)

MODERN = "2026-07-28"
ELICITED = {"name": "Alice"}  # every client's answer to an elicitation
SAMPLED = "Paris"  # every client's answer to a sampling request
CANCEL_AFTER = 1.0  # seconds a client waits on the long call before it gives up
LIST_CHANGED = (
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/prompts/list_changed",
)
OPEN_POLICY = {"version": "1", "default": "allow"}


@dataclass(frozen=True)
class Target:
    """One column: a server of the gateway, the era it speaks, and its tool for each scenario."""

    server: str
    era: str  # "legacy" or MODERN
    call: tuple[str, dict[str, Any], str]  # tool, arguments, text the result must contain
    progress: tuple[str, dict[str, Any]]  # reports progress 1, 2 and 3 of 3
    elicitation: tuple[str, dict[str, Any], str]  # asks a form with `name`; text given ELICITED
    sampling: tuple[str, dict[str, Any], str]  # asks the client's model; text given SAMPLED
    slow: Callable[[str], tuple[str, dict[str, Any]]]  # nonce -> a call that runs 4 s or more
    change: Callable[[str], tuple[str, dict[str, Any]]]  # nonce -> a call that changes a list
    change_kind: str  # which list changes: "tools" or "resources"

    @property
    def change_method(self) -> str:
        return f"notifications/{self.change_kind}/list_changed"


def everything(server: str) -> Target:
    return Target(
        server=server,
        era="legacy",
        call=("echo", {"message": "across eras"}, "Echo: across eras"),
        progress=("trigger-long-running-operation", {"duration": 0.3, "steps": 3}),
        elicitation=("trigger-elicitation-request", {}, "- Name: Alice"),
        sampling=("trigger-sampling-request", {"prompt": "The capital of France?", "maxTokens": 20}, SAMPLED),
        # 4 s: short enough that a cancellation the server never heard of shows as an `ok`
        # outcome within check_cancelled's wait.
        slow=lambda nonce: ("trigger-long-running-operation", {"duration": 4, "steps": 4}),
        change=lambda nonce: (
            "gzip-file-as-resource",
            {"name": f"matrix-{nonce}.gz", "data": "data:text/plain;base64,YWNyb3NzIGVyYXM=", "outputType": "resource"},
        ),
        change_kind="resources",
    )


MODERN_ONLY = Target(
    server="modern",
    era=MODERN,
    call=("echo", {"text": "across eras"}, "across eras"),
    progress=("slow_progress", {"steps": 3}),
    elicitation=("ask_name", {}, "Hello, Alice!"),
    sampling=("ask_model", {}, "The model said: Paris"),
    slow=lambda nonce: ("wait_for_cancel", {"nonce": nonce, "seconds": 4}),
    change=lambda nonce: ("change_tools", {}),
    change_kind="tools",
)

TARGETS = {t.server: t for t in (everything("ev-stdio"), everything("ev-sse"), everything("ev-http"), MODERN_ONLY)}
# client -> (SDK, mode)
CLIENTS = {
    "py-2026-07-28": ("py", MODERN),
    "py-auto": ("py", "auto"),
    "py-legacy": ("py", "legacy"),
    "ts-legacy": ("ts", "legacy"),
    "ts-2026-07-28": ("ts", MODERN),
}
SCENARIOS = ("call", "progress", "elicitation", "sampling", "cancel", "list_changed")


# ---------------------------------------------------------------------------------------------
# The module's gateway and upstreams


class Matrix:
    """One toolgate in front of the four upstreams, a grant per cell, the TypeScript runs."""

    def __init__(self, workdir: Path, everything_http: Upstream) -> None:
        self.workdir = workdir
        self.upstreams: list[Upstream] = [everything_http]
        self.gateway: Gateway | None = None
        self.modern: Upstream | None = None
        self.tokens: dict[str, str] = {}
        self.ts_runs: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        sse = start_everything_sse(self.workdir)
        self.upstreams.append(sse)
        self.modern = start_recording_server(self.workdir, "modern-only")
        self.upstreams.append(self.modern)
        off = {"pinning": "off"}
        servers = [
            everything_stdio_server("ev-stdio", "open") | off,
            {"name": "ev-sse", "policy": "open", "sse_url": sse.url} | off,
            http_server("ev-http", "open", self.upstreams[0].url) | off,
            http_server("modern", "open", self.modern.url) | off,
        ]
        self.gateway = Gateway(self.workdir / "gw", servers, {"open": OPEN_POLICY}).start()

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for upstream in self.upstreams[1:]:  # the everything HTTP server is the session's
            upstream.stop()

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        files = list(self.gateway.log_files) if self.gateway else []
        return files + [pair for upstream in self.upstreams for pair in upstream.log_files]

    def cell(self, client: str, server: str) -> Cell:
        sdk, mode = CLIENTS[client]
        target = TARGETS[server]
        label = f"{client}@{server}"
        assert self.gateway is not None
        if label not in self.tokens:
            self.tokens[label] = self.gateway.grant(server, label)
        return Cell(self, client, sdk, mode, target, label, self.tokens[label])


@dataclass
class Cell:
    matrix: Matrix
    client: str
    sdk: str
    mode: str
    target: Target
    label: str  # the grant's label
    token: str

    @property
    def gateway(self) -> Gateway:
        assert self.matrix.gateway is not None
        return self.matrix.gateway

    @property
    def url(self) -> str:
        return self.gateway.url(self.target.server)

    @property
    def era(self) -> str:
        """The era the client speaks to toolgate ("auto" finds 2026-07-28 there)."""
        return "legacy" if self.mode == "legacy" else MODERN

    @property
    def rounds(self) -> int:
        """Requests (each judged and recorded) a call that asks for input takes: one, unless
        both sides speak 2026-07-28 (then the client's retry is a request of its own)."""
        return 2 if self.era == MODERN and self.target.era == MODERN else 1


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, upstreams: Any) -> Iterator[Matrix]:
    if not toolgate_bin().is_file():
        pytest.fail(f"toolgate binary not found at {toolgate_bin()}: set TOOLGATE_BIN or run tests/e2e/run.sh")
    m = Matrix(tmp_path_factory.mktemp("era-matrix"), upstreams.everything_http())
    try:
        m.start()
        yield m
    finally:
        m.stop()


@pytest.fixture(autouse=True)
def _matrix_logs(request: pytest.FixtureRequest, matrix: Matrix) -> None:
    request.node.stash.setdefault(LOG_SOURCES, []).insert(0, matrix)


# ---------------------------------------------------------------------------------------------
# Audit and upstream checks


def now_ms() -> int:
    return int(time.time() * 1000)


def calls_of(cell: Cell, tool: str, since_ms: int = 0) -> list[dict[str, Any]]:
    """The cell's `tools/call` records of `tool` made since `since_ms`, oldest first."""
    records = cell.gateway.audit_records("--kind", "call", "--grant", cell.label, "--tool", tool)
    return [r for r in records if r.get("method") == "tools/call" and r.get("at_ms", 0) >= since_ms]


def outcome_of(cell: Cell, call: dict[str, Any], timeout: float = 8.0) -> dict[str, Any] | None:
    """The outcome record of `call`, waiting up to `timeout` seconds for it."""
    deadline = time.monotonic() + timeout
    while True:
        records = cell.gateway.audit_records("--kind", "outcome", "--grant", cell.label, settle=0.1)
        found = [r for r in records if r.get("call_seq") == call["seq"]]
        if found or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.3)


def check_eras(cell: Cell, record: dict[str, Any]) -> None:
    eras = (record.get("client_era"), record.get("upstream_era"))
    assert eras == (cell.era, cell.target.era), f"audit record's eras {eras}: {record}"


def check_asked(cell: Cell, tool: str, since_ms: int) -> None:
    """A call that asked for input: recorded (and judged) once per round, allowed, ended ok."""
    calls = calls_of(cell, tool, since_ms)
    assert [c["decision"] for c in calls] == ["allow"] * cell.rounds, (
        f"expected {cell.rounds} judged request(s) of {tool}: {calls}"
    )
    outcome = outcome_of(cell, calls[-1])
    assert outcome is not None and outcome.get("outcome") == "ok", (calls[-1], outcome)


def check_cancelled(
    cell: Cell, tool: str, nonce: str, since_ms: int, timeout: float = 5.0, closing_ms: int | None = None
) -> None:
    """The given-up call: in the audit log, allowed, with the outcome `abandoned` (the agent
    gave up before the answer); the modern-only server saw its request cancelled. Waits up to
    `timeout` seconds for both; a call the server ran to its end shows as `ok`. With
    `closing_ms` (when the client began to close), the outcome must be older: the call ended
    when it was cancelled, not when its session did."""
    calls = calls_of(cell, tool, since_ms)
    assert calls and all(c["decision"] == "allow" for c in calls), calls
    call = calls[-1]
    upstream_log = cell.matrix.modern.log if cell.target.era == MODERN and cell.matrix.modern else None
    deadline = time.monotonic() + timeout
    while True:
        outcome = outcome_of(cell, call, timeout=0)
        log = upstream_log.read_text() if upstream_log else ""
        cancelled_upstream = upstream_log is None or f"recording-server: cancelled {nonce}" in log
        if (outcome is not None and cancelled_upstream) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = []
    if outcome is None:
        problems.append(f"no outcome recorded for the cancelled call within {timeout:.0f} s")
    else:
        if outcome.get("outcome") != "abandoned":
            problems.append(f"the cancelled call's outcome is {outcome.get('outcome')!r}, not 'abandoned'")
        if closing_ms is not None and outcome["at_ms"] >= closing_ms:
            late = (outcome["at_ms"] - call["at_ms"]) / 1000
            problems.append(f"the outcome was recorded as the client closed its session ({late:.1f} s after the call)")
    if not cancelled_upstream:
        ran = f"recording-server: finished {nonce}" in log
        problems.append("the modern-only server's request was " + ("run to its end" if ran else "not cancelled"))
    assert not problems, "; ".join(problems) + f"\ncall record: {call}"


# ---------------------------------------------------------------------------------------------
# The Python SDK's cells


@dataclass
class PyPeer:
    """The Python client's side: it answers elicitation and sampling, notes list changes."""

    asked: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    async def elicit(self, context: Any, params: Any) -> Any:
        import mcp_types as types

        self.asked.append("elicitation/create")
        return types.ElicitResult(action="accept", content=ELICITED)

    async def sample(self, context: Any, params: Any) -> Any:
        import mcp_types as types

        self.asked.append("sampling/createMessage")
        text = types.TextContent(type="text", text=SAMPLED)
        return types.CreateMessageResult(role="assistant", content=text, model="toolgate-e2e")

    async def on_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method in LIST_CHANGED:
            self.notified.append(method)

    async def answer(self, request: Any) -> Any:
        return await (self.elicit if request.method == "elicitation/create" else self.sample)(None, request.params)


@asynccontextmanager
async def py_client(cell: Cell, peer: PyPeer) -> AsyncIterator[Any]:
    """The Python SDK's client in the cell's mode, declaring elicitation and sampling."""
    import httpx2
    import mcp
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {cell.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        async with mcp.Client(
            streamable_http_client(cell.url, http_client=http),
            mode=cell.mode,
            cache=None,
            elicitation_callback=peer.elicit,
            sampling_callback=peer.sample,
            message_handler=peer.on_message,
        ) as client:
            assert client.protocol_version == (MODERN if cell.era == MODERN else "2025-11-25"), client.protocol_version
            yield client


def py_run(cell: Cell, body: Callable[[Any, PyPeer], Awaitable[None]], timeout: float = 45.0) -> PyPeer:
    peer = PyPeer()

    async def scenario() -> None:
        async with py_client(cell, peer) as client:
            await body(client, peer)

    run(scenario, timeout)
    return peer


async def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def py_call(cell: Cell) -> None:
    tool, args, text = cell.target.call
    since = now_ms()

    async def body(client: Any, peer: PyPeer) -> None:
        assert_allowed(await client.call_tool(tool, args), text)

    py_run(cell, body)
    (record,) = calls_of(cell, tool, since)
    check_eras(cell, record)


def py_progress(cell: Cell) -> None:
    tool, args = cell.target.progress
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async def body(client: Any, peer: PyPeer) -> None:
        assert_allowed(await client.call_tool(tool, args, progress_callback=on_progress))

    py_run(cell, body)
    assert seen == [(1, 3), (2, 3), (3, 3)], seen


def py_asks(which: str) -> Callable[[Cell], None]:
    method = "elicitation/create" if which == "elicitation" else "sampling/createMessage"

    def scenario(cell: Cell) -> None:
        tool, args, text = getattr(cell.target, which)
        since = now_ms()

        async def body(client: Any, peer: PyPeer) -> None:
            if cell.mode != MODERN:
                # The SDK does it all: legacy requests to its callbacks, or (mode "auto", in
                # the 2026-07-28 era) an input_required result fulfilled and retried.
                result = await client.call_tool(tool, args)
            else:
                # The first round by hand, to see what toolgate answered.
                import mcp_types as types

                first = await client.session.call_tool(tool, args, allow_input_required=True)
                assert isinstance(first, types.InputRequiredResult), describe(first)
                assert first.input_requests and len(first.input_requests) == 1, describe(first)
                ((key, request),) = first.input_requests.items()
                assert request.method == method, describe(first)
                assert first.request_state, describe(first)
                if cell.target.era == "legacy":
                    assert first.request_state.startswith("toolgate-era:"), first.request_state
                answers = {key: await peer.answer(request)}
                result = await client.call_tool(tool, args, input_responses=answers, request_state=first.request_state)
            assert_allowed(result, text)

        peer = py_run(cell, body)
        assert peer.asked == [method], peer.asked
        check_asked(cell, tool, since)

    return scenario


def py_cancel(cell: Cell) -> None:
    import anyio

    nonce = uuid.uuid4().hex[:12]
    tool, args = cell.target.slow(nonce)
    since = now_ms()

    async def body(client: Any, peer: PyPeer) -> None:
        started = time.monotonic()
        with anyio.move_on_after(CANCEL_AFTER) as scope:
            result = await client.call_tool(tool, args)
        assert scope.cancelled_caught, f"the long call ended by itself: {describe(result)}"
        assert time.monotonic() - started < CANCEL_AFTER + 3, "the call did not end when the client gave up"
        # The gateway, and this client's session, go on.
        call_tool, call_args, text = cell.target.call
        assert_allowed(await client.call_tool(call_tool, call_args), text)
        # Checked while the session is still open: the call ended when it was cancelled, not
        # when its session did.
        await asyncio.to_thread(check_cancelled, cell, tool, nonce, since)

    py_run(cell, body)


def py_list_changed(cell: Cell) -> None:
    target = cell.target
    tool, args = target.change(uuid.uuid4().hex[:12])

    async def body(client: Any, peer: PyPeer) -> None:
        async with AsyncExitStack() as stack:
            if cell.era == MODERN:
                sub = await stack.enter_async_context(client.listen(**{f"{target.change_kind}_list_changed": True}))
                assert getattr(sub.honored, f"{target.change_kind}_list_changed"), sub.honored
            for _ in range(5):
                assert_allowed(await client.call_tool(tool, args))
                if await wait_until(lambda: target.change_method in peer.notified, 1.0):
                    break
            assert target.change_method in peer.notified, f"no {target.change_method}; got {peer.notified}"

    py_run(cell, body)


# ---------------------------------------------------------------------------------------------
# The TypeScript SDK v2 client's cells: one run plays every scenario, each test reads its part.

TS_CALLS = ("call", "progress", "elicitation", "sampling", "cancel", "after_cancel", "list_changed")


def ts_run(cell: Cell) -> dict[str, Any]:
    runs = cell.matrix.ts_runs
    if cell.label not in runs:
        target = cell.target
        nonce = uuid.uuid4().hex[:12]
        call_tool, call_args, _ = target.call
        slow_tool, slow_args = target.slow(nonce)
        change_tool, change_args = target.change(nonce)
        calls = [
            {"name": call_tool, "arguments": call_args},
            {"name": target.progress[0], "arguments": target.progress[1], "progress": True},
            {"name": target.elicitation[0], "arguments": target.elicitation[1]},
            {"name": target.sampling[0], "arguments": target.sampling[1]},
            {"name": slow_tool, "arguments": slow_args, "cancelAfterMs": int(CANCEL_AFTER * 1000)},
            # The session stays open a second after the cancellation, so that the outcome can
            # be seen to come before the client closes it.
            {"name": call_tool, "arguments": call_args, "pauseAfterMs": 1000},
            {
                "name": change_tool,
                "arguments": change_args,
                "awaitNotification": {"method": target.change_method, "waitMs": 1000, "tries": 5},
            },
        ]
        script = {
            "mode": cell.mode,
            "timeoutMs": 8000,
            "elicit": ELICITED,
            "sample": SAMPLED,
            "notifications": [target.change_method],
            "listen": {f"{target.change_kind}ListChanged": True},
            "calls": calls,
        }
        since = now_ms()
        out = ts_client(cell.url, cell.token, script, timeout=120, client=TS_CLIENT_V2)
        runs[cell.label] = {"out": out, "since": since, "nonce": nonce}
    report = runs[cell.label]
    out = report["out"]
    assert out["ok"], out
    assert out["era"] == ("modern" if cell.era == MODERN else "legacy"), out
    assert len(out["calls"]) == len(TS_CALLS), out
    return report


def ts_call_of(report: dict[str, Any], which: str) -> dict[str, Any]:
    return report["out"]["calls"][TS_CALLS.index(which)]


def ts_allowed(entry: dict[str, Any], contains: str | None = None) -> str:
    assert "result" in entry, f"{entry['name']} failed: {entry.get('error')}"
    return assert_allowed(entry["result"], contains)


def ts_call(cell: Cell) -> None:
    report = ts_run(cell)
    tool, _, text = cell.target.call
    ts_allowed(ts_call_of(report, "call"), text)
    check_eras(cell, calls_of(cell, tool, report["since"])[0])


def ts_progress(cell: Cell) -> None:
    entry = ts_call_of(ts_run(cell), "progress")
    ts_allowed(entry)
    assert [(p["progress"], p.get("total")) for p in entry["progress"]] == [(1, 3), (2, 3), (3, 3)], entry


def ts_asks(which: str) -> Callable[[Cell], None]:
    method = "elicitation/create" if which == "elicitation" else "sampling/createMessage"

    def scenario(cell: Cell) -> None:
        report = ts_run(cell)
        tool, _, text = getattr(cell.target, which)
        ts_allowed(ts_call_of(report, which), text)
        assert report["out"]["handled"].get(method) == 1, report["out"]["handled"]
        check_asked(cell, tool, report["since"])

    return scenario


def ts_cancel(cell: Cell) -> None:
    report = ts_run(cell)
    entry = ts_call_of(report, "cancel")
    assert "error" in entry, f"the long call ended by itself: {entry}"
    assert entry["elapsedMs"] < CANCEL_AFTER * 1000 + 3000, entry
    ts_allowed(ts_call_of(report, "after_cancel"), cell.target.call[2])
    tool, _ = cell.target.slow(report["nonce"])
    check_cancelled(cell, tool, report["nonce"], report["since"], closing_ms=report["out"]["closingAtMs"])


def ts_list_changed(cell: Cell) -> None:
    report = ts_run(cell)
    out, target = report["out"], cell.target
    if cell.era == MODERN:
        honored = out["listen"].get("honoredFilter") or {}
        assert honored.get(f"{target.change_kind}ListChanged"), out["listen"]
    entry = ts_call_of(report, "list_changed")
    ts_allowed(entry)
    assert out["notifications"].get(target.change_method, 0) >= 1, (out["notifications"], entry)


RUNNERS: dict[str, dict[str, Callable[[Cell], None]]] = {
    "py": {
        "call": py_call,
        "progress": py_progress,
        "elicitation": py_asks("elicitation"),
        "sampling": py_asks("sampling"),
        "cancel": py_cancel,
        "list_changed": py_list_changed,
    },
    "ts": {
        "call": ts_call,
        "progress": ts_progress,
        "elicitation": ts_asks("elicitation"),
        "sampling": ts_asks("sampling"),
        "cancel": ts_cancel,
        "list_changed": ts_list_changed,
    },
}


@pytest.mark.parametrize(
    ("client", "server", "scenario"),
    [
        pytest.param(client, server, scenario, id=f"{client}-{server}-{scenario}")
        for client, server, scenario in itertools.product(CLIENTS, TARGETS, SCENARIOS)
    ],
)
def test_era_matrix(matrix: Matrix, client: str, server: str, scenario: str) -> None:
    cell = matrix.cell(client, server)
    RUNNERS[cell.sdk][scenario](cell)
