"""Fail closed and bounded: what an attack on the gateway found (issue 17), one test each.

A hostile upstream (`upstreams/hostile_server.py`) answers `tools/list` with what serde_json
refuses and clients accept; the gateway must filter and pin what it relays, or refuse it,
never relay it as it is. Sessions, answers, ids and connections have bounds."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import INITIALIZE, MCP_HEADERS, wait_for_line

HOSTILE = Path(__file__).parent / "upstreams" / "hostile_server.py"
HIDE_SECRET = {"version": "1", "default": "allow", "hide": ["secret"]}


def start_hostile(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    control = tmp / "hostile.json"
    control.write_text("{}")
    log = tmp / "hostile.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(HOSTILE), "--port", "0", "--control", str(control)],
                                stdout=out, stderr=subprocess.STDOUT)
    m = wait_for_line(log, re.compile(r"listening on (http://\S+)"), proc, 20, "hostile server")
    return proc, m.group(1), control


class Client:
    """A raw Streamable HTTP client: sees the exact bytes the gateway relays."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
        r = httpx.post(url, json=INITIALIZE, headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        self.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]

    def post(self, body: dict[str, Any] | bytes, timeout: float = 30) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.post(self.url, content=body, headers=self.headers, timeout=timeout)
        return httpx.post(self.url, json=body, headers=self.headers, timeout=timeout)

    def list_raw(self, rid: int = 2) -> httpx.Response:
        return self.post({"jsonrpc": "2.0", "id": rid, "method": "tools/list"})

    def call(self, tool: str, rid: int = 5) -> dict[str, Any]:
        r = self.post({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": tool, "arguments": {}}})
        return answer_of(r, rid)


def answer_of(r: httpx.Response, rid: int) -> dict[str, Any]:
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("id") == rid:
                    return msg
        raise AssertionError(f"no answer in the stream: {r.text!r}")
    return r.json()


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("quirk", ["surrogate", "bignum", "deep"])
def test_tools_list_the_gateway_cannot_parse_is_never_relayed_unfiltered(
    gateways: Any, tmp_path: Path, quirk: str, sse: bool
) -> None:
    """Finding 2: a list with a lone surrogate, a number past f64 or deep nesting is
    filtered (hidden tools removed) or refused with an error naming the upstream."""
    proc, url, control = start_hostile(tmp_path)
    try:
        gw = gateways.new([{"name": "hostile", "policy": "p", "url": url, "pinning": "off"}], {"p": HIDE_SECRET})
        c = Client(gw.url("hostile"), gw.grant("hostile"))
        control.write_text(json.dumps({"list": quirk, "sse": sse}))
        r = c.list_raw()
        assert '"secret"' not in r.text, f"hidden tool relayed: {r.text[:500]}"
        msg = answer_of(r, 2)
        if "error" in msg:
            assert "hostile" in msg["error"]["message"], msg
        else:
            names = [t["name"] for t in msg["result"]["tools"]]
            assert names == ["visible", "other"], names
        # The session still works afterwards.
        control.write_text(json.dumps({"list": "plain", "sse": sse}))
        names = [t["name"] for t in answer_of(c.list_raw(3), 3)["result"]["tools"]]
        assert names == ["visible", "other"], names
    finally:
        proc.terminate()


def test_a_rug_pull_with_a_lone_surrogate_is_held(gateways: Any, tmp_path: Path) -> None:
    """Finding 3: a description changed to one carrying `\\ud800` is pinned as a change and
    held: gone from the list, calls denied, shown by `tools list --changed`."""
    proc, url, control = start_hostile(tmp_path)
    try:
        gw = gateways.new([{"name": "hostile", "policy": "p", "url": url}], {"p": HIDE_SECRET})
        c = Client(gw.url("hostile"), gw.grant("hostile"))
        names = [t["name"] for t in answer_of(c.list_raw(2), 2)["result"]["tools"]]
        assert names == ["visible", "other"], names
        control.write_text(json.dumps({"list": "surrogate"}))
        r = c.list_raw(3)
        assert "Also call" not in r.text, r.text[:500]
        msg = answer_of(r, 3)
        if "result" in msg:
            assert [t["name"] for t in msg["result"]["tools"]] == ["other"], msg
        denied = c.call("visible", 4)
        assert denied["result"]["isError"] is True, denied
        assert "(definition changed)" in json.dumps(denied), denied
        listed = gw.cli("tools list", "hostile", "--changed")
        assert "visible" in listed.stdout and "HELD" in listed.stdout, listed.stdout
    finally:
        proc.terminate()


def metric(gw: Any, name: str, server: str) -> float:
    text = httpx.get(gw.base_url + "/metrics", timeout=10).text
    m = re.search(rf'^toolgate_{name}\{{server="{server}"\}} (\S+)$', text, re.M)
    assert m, f"no toolgate_{name} for {server} in:\n{text}"
    return float(m.group(1))


def open_stream(gw: Any, token: str, session: str) -> socket.socket:
    """A GET stream held open on a session (the session is in use while it is)."""
    s = socket.create_connection(host_port(gw), timeout=10)
    s.sendall((f"GET /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               f"Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\n"
               "Accept: text/event-stream\r\n\r\n").encode())
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def test_sessions_with_stdio_upstreams_are_capped(gateways: Any, tmp_path: Path) -> None:
    """Finding 1: one grant cannot open unbounded stdio children. At the grant's cap its
    least recently used idle session is closed to make room; when all are in use the
    `initialize` gets 429 with a JSON-RPC error naming the cap; `/metrics` counts open
    sessions and children."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()},
                      extra={"max_sessions_per_grant": 3, "max_sessions_per_server": 5})
    token, other = gw.grant("demo", "a"), gw.grant("demo", "b")
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    opened = []
    for _ in range(8):
        r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        opened.append(r.headers["mcp-session-id"])
    assert metric(gw, "open_sessions", "demo") == 3
    assert metric(gw, "upstream_channels", "demo") == 3
    children = subprocess.run(["pgrep", "-f", "-P", str(gw.proc.pid), "demo --stdio"],
                              capture_output=True, text=True).stdout.split()
    assert len(children) == 3, children
    # The oldest were closed to make room; the newest three live.
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert httpx.post(gw.url("demo"), json=ping, headers=dict(headers, **{"Mcp-Session-Id": opened[0]}), timeout=10).status_code == 404
    # With all three in use (a stream open on each), the next initialize is refused.
    streams = [open_stream(gw, token, sid) for sid in opened[-3:]]
    try:
        r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
        assert r.status_code == 429 and r.headers.get("retry-after"), r.text
        assert "max_sessions_per_grant" in r.json()["error"]["message"], r.text
        # Another grant has room up to the server's cap (5 in all); busy sessions of
        # grant a are never closed for it.
        other_headers = dict(MCP_HEADERS, Authorization=f"Bearer {other}")
        codes = [httpx.post(gw.url("demo"), json=INITIALIZE, headers=other_headers, timeout=30)
                 for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429], [c.text for c in codes]
        assert "max_sessions_per_server" in codes[2].json()["error"]["message"]
        assert metric(gw, "sessions_refused_total", "demo") == 2
    finally:
        for s in streams:
            s.close()
    # Streams closed: the grant's sessions make room again.
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_idle_sessions_close_after_session_idle(gateways: Any, tmp_path: Path) -> None:
    """Finding 1: the idle timeout is a config key; the reaper closes the child."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, extra={"session_idle": "2s"})
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {gw.grant('demo')}")
    r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=headers, timeout=30)
    assert r.status_code == 200
    assert metric(gw, "upstream_channels", "demo") == 1
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and metric(gw, "upstream_channels", "demo") != 0:
        time.sleep(0.5)
    assert metric(gw, "open_sessions", "demo") == 0
    r = httpx.post(gw.url("demo"), json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   headers=dict(headers, **{"Mcp-Session-Id": r.headers["mcp-session-id"]}), timeout=30)
    assert r.status_code == 404, r.text


def test_session_scoped_limits_hold_in_the_stateless_era(gateways: Any, upstreams: Any) -> None:
    """Finding 12: in the 2026-07-28 era each request is its own "session"; a
    `scope: "session"` limit counts per grant there (documented), so it still limits."""
    from test_modern_era import modern_client

    from helpers import assert_allowed, assert_denied, http_server, run

    policy = {"version": "1", "default": "allow",
              "tools": {"echo": {"limits": [{"counter": "echoes", "window": "minute", "max": 2, "scope": "session"}]}}}
    upstream = upstreams.recording("sse")
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": policy})
    token = gw.grant("rec", "stateless-limit")

    async def scenario() -> None:
        async with modern_client(gw.url("rec"), token) as client:
            assert_allowed(await client.call_tool("echo", {"text": "1"}), "1")
            assert_allowed(await client.call_tool("echo", {"text": "2"}), "2")
            assert_denied(await client.call_tool("echo", {"text": "3"}), "/tools/echo/limits/0")

    run(scenario)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
def test_an_answer_over_max_answer_is_refused_with_bounded_memory(gateways: Any, tmp_path: Path, sse: bool) -> None:
    """Finding 9: an 80 MB `tools/list` (over the default max_answer, 64 MiB) is refused
    with an error naming the limit, and the gateway's memory stays bounded; smaller
    answers still pass, and a lower max_answer applies."""
    proc, url, control = start_hostile(tmp_path)
    try:
        gw = gateways.new([{"name": "hostile", "policy": "p", "url": url, "pinning": "off"}], {"p": HIDE_SECRET})
        c = Client(gw.url("hostile"), gw.grant("hostile"))
        control.write_text(json.dumps({"list": "huge", "huge_mb": 80, "sse": sse}))
        r = c.list_raw(2)
        msg = answer_of(r, 2)
        assert "max_answer" in msg["error"]["message"] and "hostile" in msg["error"]["message"], msg
        assert peak_rss_mib(gw.proc.pid) < 250, peak_rss_mib(gw.proc.pid)
        control.write_text(json.dumps({"list": "huge", "huge_mb": 2, "sse": sse}))
        names = [t["name"] for t in answer_of(c.list_raw(3), 3)["result"]["tools"]]
        assert names == ["visible", "other"]

        gw2 = gateways.new([{"name": "hostile", "policy": "p", "url": url, "pinning": "off"}], {"p": HIDE_SECRET},
                           extra={"max_answer": "1MiB"})
        c2 = Client(gw2.url("hostile"), gw2.grant("hostile"))
        msg = answer_of(c2.list_raw(4), 4)
        assert "max_answer (1048576 bytes)" in msg["error"]["message"], msg
    finally:
        proc.terminate()


def test_a_stdio_line_over_max_answer_answers_that_request_and_keeps_the_session(gateways: Any, tmp_path: Path) -> None:
    """Finding 9 (stdio): a child's line over max_answer is dropped; the request waiting
    for it gets an error naming the limit at once, and the session goes on."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, extra={"max_answer": "2KiB"})
    c = Client(gw.url("demo"), gw.grant("demo"))
    started = time.monotonic()
    msg = answer_of(c.list_raw(2), 2)  # the demo's tools/list is far over 2 KiB
    assert "max_answer (2048 bytes)" in msg["error"]["message"], msg
    assert time.monotonic() - started < 10
    r = c.post({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert answer_of(r, 3).get("result") == {}, r.text


def host_port(gw: Any) -> tuple[str, int]:
    host, port = gw.base_url.removeprefix("http://").split(":")
    return host, int(port)


def test_headers_trickled_byte_by_byte_are_cut_at_header_timeout(gateways: Any) -> None:
    """Finding 6: a client that sends its headers one byte at a time is disconnected at
    `header_timeout`, not kept open for ever."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, extra={"header_timeout": "2s"})
    s = socket.create_connection(host_port(gw), timeout=10)
    started = time.monotonic()
    closed = False
    try:
        for b in b"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
            s.sendall(bytes([b]))
            time.sleep(0.5)
            s.setblocking(False)
            try:
                if s.recv(4096) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            finally:
                s.setblocking(True)
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        s.close()
    elapsed = time.monotonic() - started
    assert closed and elapsed < 8, f"still open after {elapsed:.1f} s"


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_half_sent_requests_cannot_exhaust_descriptors(gateways: Any) -> None:
    """Finding 6: past `max_connections` new connections are closed at once (counted in
    /metrics), so descriptors stay bounded; the held ones are cut at `header_timeout`
    and the gateway answers again."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()},
                      extra={"header_timeout": "3s", "max_connections": 40})
    before = open_fds(gw.proc.pid)
    socks = []
    try:
        for _ in range(120):
            s = socket.create_connection(host_port(gw), timeout=5)
            s.sendall(b"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        time.sleep(0.5)
        assert open_fds(gw.proc.pid) <= before + 40 + 5, (before, open_fds(gw.proc.pid))
        deadline = time.monotonic() + 15
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                ok = httpx.get(gw.base_url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert ok, "healthz never answered again"
    finally:
        for s in socks:
            s.close()
    text = httpx.get(gw.base_url + "/metrics", timeout=10).text
    m = re.search(r"^toolgate_connections_refused_total (\d+)", text, re.M)
    assert m and int(m.group(1)) >= 80, text[-2000:]


def test_the_open_file_limit_is_raised_at_start(gateways: Any) -> None:
    """Finding 6: the soft limit on open files is raised to the hard limit at start."""
    import resource

    from helpers import DEMO_POLICY_FILE, demo_server

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 512:
        pytest.skip(f"the hard limit is {hard}: nothing to raise")
    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, start=False)
    gw.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    gw.start()
    deadline = time.monotonic() + 10
    while True:  # raised when the gateway starts serving, just after its first lines
        limits = Path(f"/proc/{gw.proc.pid}/limits").read_text()
        soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))
        if soft == hard or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert soft == hard, limits


def test_one_grant_cannot_fill_the_approval_queue(gateways: Any) -> None:
    """Finding 13: a grant's calls waiting for approval are capped
    (`[approvals] max_pending_per_grant`); the call over the cap is denied at once with a
    reason, concurrent calls cannot overshoot, and a retry of a waiting call still joins it."""
    import threading

    from helpers import demo_server

    policy = {"version": "1", "default": "deny",
              "tools": {"refund_payment": {"action": "require_approval", "approval": {"timeout": "5m"}}}}
    gw = gateways.new([demo_server("demo", "p")], {"p": policy},
                      extra={"approvals": {"max_pending_per_grant": 3}})
    c = Client(gw.url("demo"), gw.grant("demo"))
    c.headers["Accept"] = "application/json"
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        body = {"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                "params": {"name": "refund_payment", "arguments": {"payment_id": f"pay_{i}", "amount": 1, "reason": "duplicate"}}}
        try:
            results[i] = c.post(body, timeout=6).json()
        except httpx.ReadTimeout:
            results[i] = "held"

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [i for i, r in results.items() if r == "held"]
    denied = [r for r in results.values() if r != "held"]
    assert len(held) == 3, results
    assert all("(approval queue full)" in json.dumps(r) and "max_pending_per_grant" in json.dumps(r) for r in denied), denied
    waiting = json.loads(gw.cli("approvals list", "--json").stdout)
    assert len(waiting) == 3, waiting
    # A retry of a waiting call joins its approval instead of being refused.
    body = {"jsonrpc": "2.0", "id": 200, "method": "tools/call",
            "params": {"name": "refund_payment", "arguments": {"payment_id": f"pay_{held[0]}", "amount": 1, "reason": "duplicate"}}}
    with pytest.raises(httpx.ReadTimeout):
        c.post(body, timeout=3)


def test_a_rebound_host_is_refused_everywhere(gateways: Any) -> None:
    """Finding 14: a loopback gateway answers only loopback `Host` names and
    `allowed_hosts` (DNS rebinding); a percent-encoded server name is refused."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()}, extra={"allowed_hosts": ["gw.test"]})
    token = gw.grant("demo")
    evil = {"Host": "rebind.attacker.example"}
    for path in ["/metrics", "/readyz", "/api/v1/openapi.json", "/"]:
        r = httpx.get(gw.base_url + path, headers=evil, timeout=10)
        assert r.status_code == 421, (path, r.status_code, r.text[:200])
    assert httpx.get(gw.base_url + "/healthz", headers=evil, timeout=10).text == "ok\n"
    r = httpx.post(gw.url("demo"), json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}", **evil), timeout=10)
    assert r.status_code == 421 and "allowed_hosts" in r.json()["error"]["message"], r.text
    for host in ["gw.test", "gw.test:1234", "localhost"]:
        assert httpx.get(gw.base_url + "/readyz", headers={"Host": host}, timeout=10).status_code == 200, host
    r = httpx.post(gw.base_url + "/mcp/%64emo", json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}"), timeout=10)
    assert r.status_code == 400 and "percent-encoded" in r.text, r.text


def raw_call(c: Client, tool: str, args_json: str, rid: int, timeout: float = 30) -> dict[str, Any]:
    """A tools/call whose arguments are sent as exactly this JSON text (numbers as written)."""
    body = f'{{"jsonrpc":"2.0","id":{rid},"method":"tools/call","params":{{"name":"{tool}","arguments":{args_json}}}}}'
    return answer_of(c.post(body.encode(), timeout=timeout), rid)


def test_numbers_are_compared_and_hashed_exactly(gateways: Any, tmp_path: Path) -> None:
    """Finding 5: `in [1234567890123456789]` refuses …800; `gt 100` catches
    100.0000000000000001 (f64 rounds it to 100); an approval for one big account number
    is not used for another."""
    proc, url, _ = start_hostile(tmp_path)
    try:
        policy = {"version": "1", "default": "allow", "tools": {
            "visible": {"require": [{"path": "args.account", "op": "in", "value": [1234567890123456789]}],
                        "deny_if": [{"path": "args.amount", "op": "gt", "value": 100}]},
            "other": {"action": "require_approval", "approval": {"timeout": "5m"}}}}
        gw = gateways.new([{"name": "hostile", "policy": "p", "url": url, "pinning": "off"}], {"p": policy})
        c = Client(gw.url("hostile"), gw.grant("hostile"))
        c.headers["Accept"] = "application/json"
        ok = raw_call(c, "visible", '{"account": 1234567890123456789, "amount": 5}', 10)
        assert "called visible" in json.dumps(ok), ok
        for i, args in enumerate(['{"account": 1234567890123456800, "amount": 5}',
                                  '{"account": 1234567890123456700, "amount": 5}']):
            denied = raw_call(c, "visible", args, 11 + i)
            assert denied["result"]["isError"] and "/tools/visible/require/0" in json.dumps(denied), denied
        denied = raw_call(c, "visible", '{"account": 1234567890123456789, "amount": 100.0000000000000001}', 13)
        assert denied["result"]["isError"] and "/tools/visible/deny_if/0" in json.dumps(denied), denied
        # Approve a call for account …789, then ask for …800: it must wait for its own approval.
        with pytest.raises(httpx.ReadTimeout):
            raw_call(c, "other", '{"account": 12345678901234567890123}', 20, timeout=2)
        pending = json.loads(gw.cli("approvals list", "--json").stdout)
        assert len(pending) == 1, pending
        gw.cli("approvals approve", pending[0]["id"], "--as", "alice")
        with pytest.raises(httpx.ReadTimeout):
            raw_call(c, "other", '{"account": 12345678901234567890124}', 21, timeout=3)
    finally:
        proc.terminate()


def test_redaction_hides_the_secret_not_the_command(gateways: Any, tmp_path: Path) -> None:
    """Finding 4: a string holding a card number is shown with only the number redacted,
    to the approver and in the full-mode audit record."""
    proc, url, _ = start_hostile(tmp_path)
    try:
        policy = {"version": "1", "default": "allow",
                  "tools": {"other": {"action": "require_approval", "approval": {"timeout": "5m"}}}}
        server = {"name": "hostile", "policy": "p", "url": url, "pinning": "off", "audit_arguments": "full"}
        gw = gateways.new([server], {"p": policy})
        c = Client(gw.url("hostile"), gw.grant("hostile"))
        c.headers["Accept"] = "application/json"
        note = "rm -rf / # 4111-1111-1111-1111"
        raw_call(c, "visible", json.dumps({"note": note}), 30)
        with pytest.raises(httpx.ReadTimeout):
            raw_call(c, "other", json.dumps({"note": note}), 31, timeout=2)
        pending = json.loads(gw.cli("approvals list", "--json").stdout)
        shown = json.dumps(pending)
        assert "rm -rf / # [redacted: card number]" in shown and "4111" not in shown, shown
        calls = {r["tool"]: r for r in gw.audit_records("--kind", "call") if r.get("tool")}
        assert calls["visible"]["args"] == {"note": "rm -rf / # [redacted: card number]"}, calls["visible"]
    finally:
        proc.terminate()


def test_a_costly_policy_validation_is_refused_and_the_gateway_stays_responsive(gateways: Any) -> None:
    """Finding 7: a viewer's validate with 10 tests × 100,000 calls × 20 limits is refused
    at its field at once; /healthz answers all along."""
    import threading

    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()})
    out = gw.cli("admin-tokens create", "--name", "viewer", "--role", "viewer", "--json").stdout
    token = json.loads(out.strip().splitlines()[-1])["token"]
    limits = [{"counter": f"c{i}", "window": "day", "max": 1000000, "scope": "grant"} for i in range(20)]
    doc = {"version": "1", "default": "allow", "all_tools": {"limits": limits},
           "tests": [{"tool": "t", "calls": 100000, "expect": "allow"} for _ in range(10)]}
    answers: list[httpx.Response] = []

    def validate() -> None:
        answers.append(httpx.post(gw.base_url + "/api/v1/policies/validate", json=doc,
                                  headers={"Authorization": f"Bearer {token}"}, timeout=60))

    threads = [threading.Thread(target=validate) for _ in range(2)]
    for t in threads:
        t.start()
    worst = 0.0
    while any(t.is_alive() for t in threads):
        started = time.monotonic()
        assert httpx.get(gw.base_url + "/healthz", timeout=10).status_code == 200
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert worst < 1.0, worst
    for r in answers:
        assert r.status_code in (200, 429), r.text
        if r.status_code == 200:
            body = r.json()
            assert body["valid"] is False and "/tests/" in json.dumps(body["errors"]), body


def test_control_characters_in_names_are_escaped_in_human_output(gateways: Any, tmp_path: Path) -> None:
    """Finding 8: a tool name with a newline, ANSI/OSC escapes, CR and RLO, chosen by the
    agent, cannot forge an audit row or drive the terminal through the CLI; JSON stays exact."""
    from helpers import DEMO_POLICY_FILE, demo_server

    gw = gateways.new([demo_server()], {"demo": DEMO_POLICY_FILE.read_text()})
    c = Client(gw.url("demo"), gw.grant("demo"))
    c.headers["Accept"] = "application/json"
    evil = "x\n2026-12-04T00:00:00Z call demo forged_tool allow\x1b]0;pwned\x07\x1b[31m\r\u202eevil"
    denied = c.post({"jsonrpc": "2.0", "id": 40, "method": "tools/call", "params": {"name": evil, "arguments": {}}}).json()
    assert denied["result"]["isError"], denied
    for command in ["audit tail", "audit query", "status"]:
        args = ["-n", "20"] if command == "audit tail" else []
        out = gw.cli(command, *args).stdout
        for ch in ["\x1b", "\r", "\u202e", "\x07"]:
            assert ch not in out, (command, ch, out)
        assert not any(line.startswith("2026-12-04T00:00:00Z call demo forged_tool") for line in out.splitlines()), out
    exact = [r for r in gw.audit_records("--kind", "call") if r.get("tool") == evil]
    assert exact, "the JSON output keeps the exact name"
