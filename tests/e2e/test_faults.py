"""Faults upstream: down, slow, garbage, a stream cut mid-answer, HTTP 500, a server that
dies, and a stdio child that floods stderr or crashes. Each gets a clear JSON-RPC error with
the request's id (never a hang, never a panic), rate-limit counts are given back when the
call never reached the tool, the audit records the outcome, and the gateway recovers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from helpers import INITIALIZE, MCP_HEADERS, free_port, wait_for_line

FAULTY = Path(__file__).parent / "upstreams" / "faulty_server.py"
POLICY = {
    "version": "1",
    "default": "allow",
    "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 100, "scope": "grant"}]},
}


def start_faulty(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = tmp / "faulty.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(FAULTY), "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                                env={"SLOW_SECONDS": "5", "PATH": "/usr/bin:/bin"})
    m = wait_for_line(log, re.compile(r"listening on (http://\S+)"), proc, 20, "faulty server")
    return proc, m.group(1)


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
        r = httpx.post(url, json=INITIALIZE, headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        self.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]

    def call(self, tool: str, rid: int = 5) -> tuple[int, dict[str, Any]]:
        body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
        r = httpx.post(self.url, json=body, headers=self.headers, timeout=30)
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            for line in r.text.splitlines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("id") == rid:
                        return r.status_code, msg
            raise AssertionError(f"no answer in the stream: {r.text!r}")
        return r.status_code, r.json()


def test_upstream_faults_get_clear_errors_and_the_gateway_recovers(gateways: Any, tmp_path: Path) -> None:
    proc, url = start_faulty(tmp_path)
    try:
        gw = gateways.new([{"name": "faulty", "policy": "p", "url": url}], {"p": POLICY},
                          extra={"upstream_timeout": "2s"})
        token = gw.grant("faulty", "faults")
        c = Client(gw.url("faulty"), token)

        status, msg = c.call("ok")
        assert status == 200 and msg["result"]["content"][0]["text"] == "ok done"

        status, msg = c.call("garbage", 11)
        assert status == 502 and msg["id"] == 11 and msg["error"]["code"] == -32000, msg
        assert "not JSON" in msg["error"]["message"], msg

        status, msg = c.call("slow", 12)
        assert status == 504 and msg["id"] == 12 and "timed out" in msg["error"]["message"], msg

        status, msg = c.call("cut", 13)
        assert status == 200 and msg["id"] == 13 and "closed the stream before answering" in msg["error"]["message"], msg

        status, msg = c.call("http500", 14)
        assert status == 502 and msg["id"] == 14 and msg["error"]["code"] == -32000, msg
        assert "HTTP 500" in msg["error"]["message"] and "internal trouble" in msg["error"]["message"], msg

        status, msg = c.call("ok", 15)
        assert status == 200 and "result" in msg, "the gateway still serves"

        status, msg = c.call("die", 16)
        assert status == 502 and msg["id"] == 16, msg
        # The upstream is gone: a new session cannot start, with a clear error.
        r = httpx.post(gw.url("faulty"), json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}"), timeout=30)
        assert r.status_code == 502 and "unreachable" in r.json()["error"]["message"], r.text

        outcomes = {r["call_seq"]: r["outcome"] for r in gw.audit_records("--kind", "outcome")}
        calls = {r["request_id"]: r["seq"] for r in gw.audit_records("--kind", "call") if r.get("tool")}
        assert outcomes[calls["11"]] == "transport_error"
        assert outcomes[calls["12"]] == "timeout"
        assert outcomes[calls["13"]] == "transport_error"
        assert outcomes[calls["14"]] == "transport_error"
        assert gw.cli("audit verify").stdout.startswith("ok: ")
        assert httpx.get(gw.base_url + "/healthz", timeout=5).status_code == 200
    finally:
        proc.kill()


def test_a_down_upstream_is_a_clear_502(gateways: Any) -> None:
    gw = gateways.new([{"name": "down", "policy": "p", "url": f"http://127.0.0.1:{free_port()}/mcp"}], {"p": POLICY})
    token = gw.grant("down", "down")
    r = httpx.post(gw.url("down"), json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}"), timeout=30)
    assert r.status_code == 502 and r.json()["id"] == 1 and "unreachable" in r.json()["error"]["message"], r.text


FLOOD = """
import sys, json
for i in range(20000):
    sys.stderr.write("noise " * 20 + "\\n")
sys.stderr.flush()
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    if msg["method"] == "initialize":
        out = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "flood", "version": "1"}}
    elif msg["method"] == "tools/list":
        out = {"tools": [{"name": "crash", "inputSchema": {"type": "object"}}, {"name": "ok", "inputSchema": {"type": "object"}}]}
    elif msg["method"] == "tools/call" and msg["params"]["name"] == "crash":
        sys.exit(7)
    else:
        out = {"content": [{"type": "text", "text": "fine"}]}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": out}), flush=True)
"""


def test_a_stdio_child_that_floods_stderr_then_crashes(gateways: Any, tmp_path: Path) -> None:
    script = tmp_path / "flood.py"
    script.write_text(FLOOD)
    gw = gateways.new([{"name": "flood", "policy": "p", "command": sys.executable, "args": [str(script)]}], {"p": POLICY})
    token = gw.grant("flood", "flood")
    c = Client(gw.url("flood"), token)
    status, msg = c.call("ok", 21)
    assert status == 200 and msg["result"]["content"][0]["text"] == "fine", msg
    status, msg = c.call("crash", 22)
    # An SSE answer was already under way (HTTP 200): the error is its last event.
    assert status in (200, 502) and msg["id"] == 22 and "exited" in msg["error"]["message"], msg
    # The session is gone with its child; a new one starts a new child.
    status, msg = c.call("ok", 23)
    assert status in (404, 502), (status, msg)
    c2 = Client(gw.url("flood"), token)
    status, msg = c2.call("ok", 24)
    assert status == 200 and "result" in msg, msg
    assert httpx.get(gw.base_url + "/healthz", timeout=5).status_code == 200


def test_a_locked_store_fails_closed_and_recovers(gateways: Any, tmp_path: Path) -> None:
    """Another process holds the audit file's write lock longer than toolgate waits (10 s):
    the call is refused `(audit unavailable)`, never forwarded unrecorded; once the lock is
    gone, calls pass again without a restart."""
    import sqlite3
    import threading

    gw = gateways.new([{"name": "flood", "policy": "p", "command": sys.executable, "args": [str(write_flood(tmp_path))]}],
                      {"p": POLICY})
    token = gw.grant("flood", "locked")
    c = Client(gw.url("flood"), token)
    status, msg = c.call("ok", 31)
    assert status == 200 and "result" in msg

    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        db = sqlite3.connect(gw.audit_path, timeout=30, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        db.execute("ROLLBACK")
        db.close()

    t = threading.Thread(target=hold_lock)
    t.start()
    try:
        assert locked.wait(10)
        status, msg = c.call("ok", 32)
        assert status == 200 and msg["result"]["isError"] is True, msg
        assert "(audit unavailable)" in msg["result"]["content"][0]["text"], msg
    finally:
        release.set()
        t.join()
    status, msg = c.call("ok", 33)
    assert status == 200 and not msg["result"].get("isError"), msg
    assert gw.cli("audit verify").stdout.startswith("ok: ")
    # The refused call's record may be committed once the lock is gone (the call stopped
    # waiting for it first): then an outcome `refused` follows it. No other allow record
    # of a refused call.
    records = gw.audit_records()
    refused = {r["call_seq"] for r in records if r["kind"] == "outcome" and r.get("outcome") == "refused"}
    forwarded = {r["request_id"] for r in records
                 if r["kind"] == "call" and r.get("decision") == "allow" and r.get("tool") and r["seq"] not in refused}
    assert "32" not in forwarded and {"31", "33"} <= forwarded, (forwarded, refused)


def write_flood(tmp: Path) -> Path:
    script = tmp / "flood.py"
    script.write_text(FLOOD)
    return script


def test_a_full_disk_fails_closed_and_recovers(gateways: Any, monkeypatch: Any) -> None:
    """The disk fills up under the gateway: its files may not grow past 512 KiB (an
    RLIMIT_FSIZE set on its process, with SIGXFSZ ignored, so a write past the limit fails
    with EFBIG as on a full file system: SQLite reports "database or disk is full"). Calls
    are refused with a clear reason, never forwarded unrecorded; the gateway stays up; once
    space is back (the limit raised on the running process) calls pass again, and the audit
    chain verifies with every forwarded call recorded."""
    import resource
    import signal

    from helpers import demo_server

    monkeypatch.setenv("RUST_LOG", "warn")
    policy = {"version": "1", "default": "deny", "tools": {"list_patients": {
        "limits": [{"counter": "lp", "window": "hour", "max": 100000, "scope": "grant"}]}}}
    gw = gateways.new([demo_server()], {"demo": policy}, start=False)
    limit = 512 * 1024

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    gw.preexec = full_disk
    gw.start()
    assert gw.proc is not None
    token = gw.grant("demo", "disk")
    c = Client(gw.url("demo"), token)
    forwarded: set[str] = set()
    refused: list[tuple[int, str]] = []
    for rid in range(100, 3100):
        status, msg = c.call("list_patients", rid)
        assert status == 200, msg
        result = msg.get("result", {})
        if result.get("isError"):
            text = result["content"][0]["text"]
            assert text.startswith("[toolgate] denied:"), text
            assert "(audit unavailable)" in text or "(store unavailable)" in text, text
            refused.append((rid, text))
            if len(refused) >= 3:
                break
        else:
            forwarded.add(str(rid))
    assert refused, "the files never reached the limit"
    assert gw.proc.poll() is None, "the gateway stays up"
    assert httpx.get(gw.base_url + "/healthz", timeout=10).status_code == 200
    # Space is back.
    resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    # The stores retry every 100 ms: within a few seconds, calls pass again (until then they
    # are still refused, and recorded as such).
    after = refused[-1][0] + 1
    deadline = time.monotonic() + 10
    while True:
        status, msg = c.call("list_patients", after)
        assert status == 200, msg
        if not msg["result"].get("isError"):
            break
        refused.append((after, msg["result"]["content"][0]["text"]))
        assert time.monotonic() < deadline, f"calls still refused 10 s after space came back: {msg}"
        after += 1
        time.sleep(0.1)
    forwarded.add(str(after))
    assert gw.cli("audit verify").stdout.startswith("ok: ")
    recorded = {r["request_id"] for r in gw.audit_records("--kind", "call", "--tool", "list_patients")
                if r.get("decision") == "allow"}
    assert forwarded <= recorded, sorted(forwarded - recorded)[:10]
    assert not ({str(rid) for rid, _ in refused} & recorded), "a refused call has no allow record"
