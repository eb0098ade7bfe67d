"""Shared machinery of toolgate's end-to-end tests: the gateway process, the upstream MCP
servers, the clients and the denial format.

Everything here drives real programs: `$TOOLGATE_BIN serve`, the bundled demo server
(`toolgate demo --stdio`, started by the gateway itself), the reference everything server
(npm `@modelcontextprotocol/server-everything`), a Python `MCPServer` (`upstreams/`), the
official Python SDK client (`mcp`) and the TypeScript SDK client (`node/client.mjs`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

E2E = Path(__file__).resolve().parent
REPO = E2E.parent.parent
NODE_DIR = E2E / "node"
EVERYTHING_BIN = NODE_DIR / "node_modules" / ".bin" / "mcp-server-everything"
TS_CLIENT = NODE_DIR / "client.mjs"
TS_CLIENT_V2 = NODE_DIR / "client-v2.mjs"
RECORDING_SERVER = E2E / "upstreams" / "recording_server.py"
CONFORMANCE_SERVER = E2E / "upstreams" / "conformance_server.py"
DEMO_POLICY_FILE = REPO / "policies" / "demo.json"

GATEWAY_START_TIMEOUT = 20.0
RELOAD_TIMEOUT = 6.0  # the gateway polls files every second; allow for slow machines
DENIED_PREFIX = "[toolgate] denied:"

LISTENING_RE = re.compile(r"^toolgate: listening on (http://\S+)\s*$", re.M)
SERVER_LINE_RE = re.compile(r'^toolgate: server "([^"]+)" at (http://\S+)\s*$', re.M)
QUICKSTART_RE = re.compile(r'^toolgate: quickstart grant for server "([^"]+)": (\S+)\s*$', re.M)

T = TypeVar("T")


def toolgate_bin() -> Path:
    """The toolgate binary under test (`$TOOLGATE_BIN`, else the debug build)."""
    value = os.environ.get("TOOLGATE_BIN") or str(REPO / "target" / "debug" / "toolgate")
    return Path(value).resolve()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no such file)"
    return data if len(data) <= limit else "...\n" + data[-limit:]


def _terminate_group(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop a child we started in its own process group, and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)
    # Children of the group that outlived their leader (stdio upstreams).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for_line(
    path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[Any], timeout: float, what: str
) -> re.Match[str]:
    """Poll a child's output file until `pattern` matches; fail if the child exits first."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        match = pattern.search(text)
        if match:
            return match
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with status {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# toolgate.toml


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{ }"
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def demo_server(name: str = "demo", policy: str | None = "demo") -> dict[str, Any]:
    """The bundled demo server over stdio; "toolgate" means the gateway's own binary."""
    spec: dict[str, Any] = {"name": name, "command": "toolgate", "args": ["demo", "--stdio"]}
    if policy:
        spec["policy"] = policy
    return spec


def everything_stdio_server(name: str, policy: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The reference everything server (npm) over stdio."""
    spec: dict[str, Any] = {"name": name, "policy": policy, "command": str(EVERYTHING_BIN), "args": ["stdio"]}
    if env is not None:
        spec["env"] = env
    return spec


def http_server(name: str, policy: str, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Streamable HTTP upstream."""
    spec: dict[str, Any] = {"name": name, "policy": policy, "url": url}
    if headers is not None:
        spec["headers"] = headers
    return spec


# ---------------------------------------------------------------------------------------------
# The gateway


def settled_audit(cli: Callable[..., subprocess.CompletedProcess[str]], *args: str,
                  settle: float = 0.2) -> list[dict[str, Any]]:
    """`audit query --format jsonl ARGS` through `cli`, parsed. Records nobody waits for
    (denials, outcomes, a session's close) are committed a few milliseconds after the
    answer (with the next commit, or alone after 10 ms), so a query right after a call may
    miss them: read until two reads `settle` seconds apart agree (at most 10 s)."""
    deadline = time.monotonic() + 10
    last: list[dict[str, Any]] | None = None
    while True:
        out = cli("audit query", "--format", "jsonl", *args).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        if records == last or time.monotonic() > deadline:
            return records
        last = records
        time.sleep(settle)


class Gateway:
    """One `toolgate serve` with its own folder: config, policies, store and logs.

    The folder outlives `stop()`, so `restart()` brings the same gateway (same store, same
    grants and counters) back, on a new port.
    """

    def __init__(
        self,
        root: Path,
        servers: list[dict[str, Any]],
        policies: dict[str, dict[str, Any] | str],
        *,
        extra: dict[str, Any] | None = None,
        relative_paths: bool = False,
        cwd: Path | None = None,
        store: Path | None = None,
        store_url: str | None = None,
        virtual_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "policies").mkdir(exist_ok=True)
        self.bin = toolgate_bin()
        self.servers = servers
        # `[[virtual_servers]]` tables: each a dict whose `include` (a list of dicts) becomes
        # its `[[virtual_servers.include]]` entries.
        self.virtual_servers = virtual_servers or []
        self.policy_names = list(policies)
        self.extra = extra or {}
        self.relative_paths = relative_paths
        self.cwd = cwd or self.root
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "toolgate.toml"
        self.db_path = store or self.root / "toolgate.db"
        # Another store than the SQLite file (`redis://…`); the audit log stays beside
        # `db_path` unless `extra` says otherwise.
        self.store_url = store_url
        self.proc: subprocess.Popen[bytes] | None = None
        # Run in the gateway's process before it starts (limits, signal dispositions).
        self.preexec: Callable[[], None] | None = None
        self.base_url: str | None = None
        self.runs = 0
        self.stdout_path = self.root / "stdout.0.log"
        self.stderr_path = self.root / "stderr.0.log"
        self.run_logs: list[tuple[Path, Path]] = []
        for name, doc in policies.items():
            self.write_policy(name, doc)
        self.write_config()

    # -- files --------------------------------------------------------------------------------

    def policy_path(self, name: str) -> Path:
        return self.root / "policies" / f"{name}.json"

    def write_policy(self, name: str, doc: dict[str, Any] | str) -> None:
        """(Re)write a policy file atomically, so the gateway never reads half a file."""
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
        path = self.policy_path(name)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def write_config(self) -> None:
        store = "sqlite://toolgate.db" if self.relative_paths else f"sqlite://{self.db_path}"
        store = self.store_url or store
        lines = [
            "# Written by toolgate's end-to-end tests.",
            f"store = {_toml(store)}",
        ]
        if "listen" not in self.extra:
            lines.insert(1, f"listen = {_toml('127.0.0.1:0')}")
        lines += [f"{key} = {_toml(value)}" for key, value in self.extra.items()]
        lines += ["", "[policies]"]
        for name in self.policy_names:
            path = f"policies/{name}.json" if self.relative_paths else str(self.policy_path(name))
            lines.append(f"{json.dumps(name)} = {_toml(path)}")
        for server in self.servers:
            lines += ["", "[[servers]]"]
            lines += [f"{key} = {_toml(value)}" for key, value in server.items()]
        for virtual in self.virtual_servers:
            lines += ["", "[[virtual_servers]]"]
            lines += [f"{key} = {_toml(value)}" for key, value in virtual.items() if key != "include"]
            for include in virtual.get("include", []):
                lines += ["", "[[virtual_servers.include]]"]
                lines += [f"{key} = {_toml(value)}" for key, value in include.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- process ------------------------------------------------------------------------------

    def start(self, timeout: float = GATEWAY_START_TIMEOUT) -> Gateway:
        assert self.proc is None, "gateway already running"
        if not self.bin.is_file():
            raise AssertionError(f"toolgate binary not found at {self.bin} (set TOOLGATE_BIN)")
        self.runs += 1
        self.stdout_path = self.root / f"stdout.{self.runs}.log"
        self.stderr_path = self.root / f"stderr.{self.runs}.log"
        self.run_logs.append((self.stdout_path, self.stderr_path))
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(self.bin), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=self.preexec,
            )
        try:
            match = wait_for_line(self.stdout_path, LISTENING_RE, self.proc, timeout, "toolgate serve")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\nstderr:\n{tail(self.stderr_path, 3000)}") from None
        self.base_url = match.group(1).rstrip("/")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _terminate_group(self.proc)
            self.proc = None
        self.base_url = None

    def kill9(self) -> None:
        """SIGKILL the gateway (and its stdio children): no flush, no clean shutdown."""
        assert self.proc is not None, "gateway not running"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        self.base_url = None

    @property
    def audit_path(self) -> Path:
        """The audit log's file (default: beside the store)."""
        return self.db_path.with_name(self.db_path.stem + "-audit.db")

    def audit_records(self, *args: str, settle: float = 0.2) -> list[dict[str, Any]]:
        """`toolgate audit query --format jsonl ARGS`, parsed, once the log has settled
        (see `settled_audit`)."""
        return settled_audit(self.cli, *args, settle=settle)

    def restart(self) -> Gateway:
        self.stop()
        return self.start()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def logs(self) -> str:
        """Everything this gateway printed, over all its runs."""
        parts = []
        for out, err in self.run_logs:
            parts.append(out.read_text(encoding="utf-8", errors="replace") if out.exists() else "")
            parts.append(err.read_text(encoding="utf-8", errors="replace") if err.exists() else "")
        return "\n".join(parts)

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = [("toolgate.toml", self.config_path)]
        for i, (out, err) in enumerate(self.run_logs, start=1):
            files += [(f"toolgate serve stdout (run {i})", out), (f"toolgate serve stderr (run {i})", err)]
        return files

    def url(self, server: str) -> str:
        assert self.base_url, "gateway not running"
        return f"{self.base_url}/mcp/{server}"

    # -- CLI ----------------------------------------------------------------------------------

    def cli(
        self, command: str, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `toolgate COMMAND --config <this gateway's config> ARGS`, e.g.
        `cli("grants create", "--server", "demo", ...)`, as docs/CONFIG.md writes it."""
        argv = [str(self.bin), *command.split(), "--config", str(self.config_path), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def grant_json(self, server: str, label: str | None = None, policy: str | None = None) -> dict[str, Any]:
        args = ["--server", server, "--label", label or f"e2e-{server}"]
        if policy is not None:
            args += ["--policy", policy]
        proc = self.cli("grants create", *args, "--json")
        for line in reversed(proc.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                doc = json.loads(line)
                break
        else:
            try:
                doc = json.loads(proc.stdout)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"grants create --json printed no JSON:\n{proc.stdout}") from exc
        assert isinstance(doc.get("token"), str) and doc["token"], f"no token in {doc}"
        return doc

    def grant(self, server: str, label: str | None = None, policy: str | None = None) -> str:
        """Create a grant with the CLI and return its bearer token."""
        return str(self.grant_json(server, label, policy)["token"])


# ---------------------------------------------------------------------------------------------
# Upstream servers we start ourselves


class Upstream:
    """A long-lived upstream process (HTTP) with its output in a log file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.url = url

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        return [(self.name, self.log)]

    def stop(self) -> None:
        _terminate_group(self.proc)


def _start_everything(workdir: Path, transport: str, ready: str, path: str) -> Upstream:
    """`mcp-server-everything TRANSPORT` on a free port (`PORT`), ready when its log says
    `READY PORT`; the URL is `path` on that port."""
    port = free_port()
    log = workdir / f"everything-{transport}-{port}.log"
    env = dict(os.environ, PORT=str(port))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EVERYTHING_BIN), transport],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for_line(log, re.compile(rf"{ready} {port}\b"), proc, 20.0, f"mcp-server-everything {transport}")
    except AssertionError:
        _terminate_group(proc)
        raise
    return Upstream(f"everything ({transport})", proc, log, f"http://127.0.0.1:{port}{path}")


def start_everything_http(workdir: Path) -> Upstream:
    """`mcp-server-everything streamableHttp` on a free port; it serves `/mcp`."""
    return _start_everything(workdir, "streamableHttp", "listening on port", "/mcp")


def start_everything_sse(workdir: Path) -> Upstream:
    """`mcp-server-everything sse` (the legacy HTTP+SSE transport: GET `/sse`, POST
    `/message`) on a free port; `url` is its `/sse` endpoint, for `sse_url`."""
    return _start_everything(workdir, "sse", "running on port", "/sse")


def start_recording_server(workdir: Path, mode: str = "sse", notes: Path | None = None) -> Upstream:
    """The Python `MCPServer` upstream; mode `sse` (sessions, SSE answers), `json` (sessions,
    JSON answers), `stateless` (no sessions, JSON answers) or `legacy-sse` (the 2024-11-05
    HTTP+SSE transport: GET /sse, POST /messages/). With `notes`, its `note` tool
    appends each nonce there."""
    tag = f"{mode}-notes" if notes else mode
    log = workdir / f"recording-{tag}.log"
    headers_log = workdir / f"recording-{tag}.headers.jsonl"
    argv = [sys.executable, str(RECORDING_SERVER), "--port", "0", "--log", str(headers_log)]
    if notes is not None:
        argv += ["--notes", str(notes)]
    if mode == "json":
        argv.append("--json-response")
    elif mode == "stateless":
        argv += ["--stateless", "--json-response"]
    elif mode == "legacy-sse":
        argv.append("--legacy-sse")
    elif mode == "modern-only":
        argv.append("--modern-only")
    elif mode != "sse":
        raise ValueError(mode)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    match = wait_for_line(
        log, re.compile(r"^recording-server: listening on (http://\S+)$", re.M), proc, 30.0, "recording server"
    )
    upstream = Upstream(f"recording server ({mode})", proc, log, match.group(1))
    upstream.headers_log = headers_log  # type: ignore[attr-defined]
    return upstream


def start_conformance_server(workdir: Path, legacy_only: bool = False) -> Upstream:
    """`upstreams/conformance_server.py`: the tools, resources and prompts of the conformance
    suite's server scenarios (both eras), over Streamable HTTP on a free port. With
    `legacy_only`, the 2025-11-25 era only (`--legacy-only`: 2026-07-28 requests refused, the
    `input_required` fixtures asking inside the call instead)."""
    name = "conformance server (legacy only)" if legacy_only else "conformance server"
    log = workdir / ("conformance-server-legacy-only.log" if legacy_only else "conformance-server.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(CONFORMANCE_SERVER), "--port", "0", *(["--legacy-only"] if legacy_only else [])],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    pattern = re.compile(r"^conformance-server: listening on (http://\S+)$", re.M)
    try:
        match = wait_for_line(log, pattern, proc, 30.0, name)
    except AssertionError:
        Upstream(name, proc, log, "").stop()
        raise
    return Upstream(name, proc, log, match.group(1))


def recorded_requests(upstream: Upstream) -> list[dict[str, Any]]:
    path: Path = upstream.headers_log  # type: ignore[attr-defined]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Clients


def run(factory: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run one async scenario to completion, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    try:
        return asyncio.run(bounded())
    except BaseExceptionGroup as group:
        # The SDK's task groups wrap the real failure (an assertion, an MCPError) in
        # exception groups; report the innermost one.
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        raise leaf from group


@asynccontextmanager
async def mcp_client(url: str, token: str | None, **kwargs: Any) -> AsyncIterator[Any]:
    """The official Python SDK client (mcp 2.3.0), legacy era (initialize + session), with the
    grant's token as `Authorization: Bearer` on every HTTP request.

    mcp 2.3.0 takes HTTP settings through the transport: `streamable_http_client(url,
    http_client=httpx2.AsyncClient(headers=...))` (the SDK's own httpx fork), passed to
    `mcp.Client` in place of the URL. The response cache is switched off so that every
    `tools/list` reaches the gateway.
    """
    import httpx2
    import mcp
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx2.Timeout(30.0, read=60.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with mcp.Client(transport, mode="legacy", cache=None, **kwargs) as client:
            yield client


async def tool_names(client: Any) -> set[str]:
    result = await client.list_tools()
    names = {tool.name for tool in result.tools}
    cursor = result.next_cursor
    while cursor:
        result = await client.list_tools(cursor=cursor)
        names |= {tool.name for tool in result.tools}
        cursor = result.next_cursor
    return names


def result_text(result: Any) -> str:
    """The text of a tool result's text blocks (Python SDK model or TS SDK JSON)."""
    content = result.get("content", []) if isinstance(result, dict) else result.content
    texts = []
    for block in content:
        if isinstance(block, dict):
            if block.get("type") == "text":
                texts.append(block["text"])
        elif getattr(block, "type", None) == "text":
            texts.append(block.text)
    return "\n".join(texts)


def is_error(result: Any) -> bool:
    return bool(result.get("isError") if isinstance(result, dict) else result.is_error)


def describe(result: Any) -> str:
    if isinstance(result, dict):
        return json.dumps(result)[:2000]
    return result.model_dump_json(by_alias=True, exclude_none=True)[:2000]


@dataclass
class Denial:
    message: str
    rule: str | None
    why: str | None
    retry_after: int | None
    text: str


def parse_denial(result: Any) -> Denial:
    """Read a toolgate denial: an `isError` tool result whose text is

    [toolgate] denied: <message>
    rule: <JSON Pointer or label>
    why: <detail>            (optional)
    retry after: N s         (limits only)
    """
    assert is_error(result), f"expected a denial (isError: true), got {describe(result)}"
    text = result_text(result)
    lines = text.splitlines()
    assert lines and lines[0].startswith(DENIED_PREFIX), f"denial text must start {DENIED_PREFIX!r}: {text!r}"
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    retry = None
    if "retry after" in fields:
        match = re.fullmatch(r"(\d+)\s*s", fields["retry after"])
        assert match, f"`retry after` must be whole seconds: {fields['retry after']!r}"
        retry = int(match.group(1))
    return Denial(
        message=lines[0][len(DENIED_PREFIX) :].strip(),
        rule=fields.get("rule"),
        why=fields.get("why"),
        retry_after=retry,
        text=text,
    )


def assert_allowed(result: Any, contains: str | None = None) -> str:
    text = result_text(result)
    assert not is_error(result), f"expected the call to be allowed, got {describe(result)}"
    assert not text.startswith(DENIED_PREFIX), text
    if contains is not None:
        assert contains in text, f"{contains!r} not in {text[:500]!r}"
    return text


def assert_denied(result: Any, rule: str, message: str | None = None) -> Denial:
    denial = parse_denial(result)
    assert denial.rule == rule, f"expected rule {rule!r}, got {denial.rule!r} in {denial.text!r}"
    if message is not None:
        assert denial.message == message, f"expected message {message!r}, got {denial.message!r}"
    return denial


async def expect_mcp_error(awaitable: Awaitable[Any], code: int) -> Any:
    """Await a request that must fail with JSON-RPC error `code` (the SDK raises MCPError)."""
    from mcp.shared.exceptions import MCPError

    try:
        result = await awaitable
    except MCPError as exc:
        assert exc.code == code, f"expected JSON-RPC error {code}, got {exc.code}: {exc.message}"
        return exc
    raise AssertionError(f"expected JSON-RPC error {code}, got a result: {describe(result)}")


async def poll(check: Callable[[], Awaitable[T | None]], timeout: float, interval: float = 0.25) -> T | None:
    """Call `check` until it returns something truthy or `timeout` passes; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


def ts_client(
    url: str, token: str | None, script: dict[str, Any], timeout: float = 60.0, client: Path = TS_CLIENT
) -> dict[str, Any]:
    """Run the TypeScript SDK client (`node/client.mjs`; `client=TS_CLIENT_V2` for the v2 client,
    `node/client-v2.mjs`) and return what it reported."""
    node = shutil.which("node")
    assert node, "node is not on PATH"
    proc = subprocess.run(
        [node, str(client), url, token or "-", json.dumps(script)],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (
        f"{client.name} printed no JSON (exit {proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return json.loads(lines[-1])


# Raw HTTP (httpx) for the checks before MCP.
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "toolgate-e2e-raw", "version": "0.0.0"},
    },
}
