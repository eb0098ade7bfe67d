"""Replicas: three gateway processes, each with its own folder and nothing shared on disk,
share one Redis (`store = "redis://…"`: grants, admin tokens, pins, approvals, counters) and
one PostgreSQL (the audit log). 64 concurrent clients spread over them call a tool limited
to 30 a minute: exactly 30 succeed. A grant made or revoked through one replica's CLI is
seen by the others at once. An approval raised on one replica is approved through
another's admin API. `audit verify` passes over all records."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import assert_allowed, demo_server, http_server, mcp_client, run

LIMITED = {
    "version": "1",
    "default": "deny",
    "tools": {"echo": {"limits": [{"counter": "echo_rate", "window": "minute", "max": 30, "scope": "grant"}]}},
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def redis_url() -> str:
    url = os.environ.get("TOOLGATE_TEST_REDIS_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("TOOLGATE_TEST_REDIS_URL is not set: the test command starts redis-server and sets it")
        pytest.skip("TOOLGATE_TEST_REDIS_URL is not set (scripts/test.sh starts a redis-server)")
    return url


def redis_database(db: int) -> str:
    """Database `db` of the test command's Redis, emptied first (one per test)."""
    import subprocess

    url = redis_url().rsplit("/", 1)[0] + f"/{db}"
    subprocess.run(["redis-cli", "-u", url, "FLUSHDB"], check=True, capture_output=True)
    return url


def postgres_database(name: str) -> str:
    """A fresh database on the test command's PostgreSQL; its URL."""
    import subprocess

    url = os.environ.get("TOOLGATE_TEST_POSTGRES_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("TOOLGATE_TEST_POSTGRES_URL is not set: the test command starts PostgreSQL and sets it")
        pytest.skip("TOOLGATE_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL)")
    db = f"{name}_{os.getpid()}_{time.time_ns() % 1_000_000}"
    subprocess.run(["psql", url, "-q", "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    return url.rsplit("/", 1)[0] + "/" + db


def sse_or_json(resp: httpx.Response) -> dict[str, Any]:
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for line in resp.text.splitlines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if "id" in msg and ("result" in msg or "error" in msg):
                    return msg
        raise AssertionError(f"no response in {resp.text!r}")
    return resp.json()


async def one_call(http: httpx.AsyncClient, url: str, token: str, n: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"} | HEADERS
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "r", "version": "1"}}}
    r = await http.post(url, json=init, headers=auth)
    assert r.status_code == 200, r.text
    session = {"Mcp-Session-Id": r.headers["mcp-session-id"]} | auth
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": f"n{n}"}}}
    r = await http.post(url, json=call, headers=session)
    assert r.status_code == 200, r.text
    return sse_or_json(r)


def test_three_replicas_share_one_exact_limit(gateways: Any, upstreams: Any, tmp_path: Path) -> None:
    state = redis_database(40)
    audit = postgres_database("tg_replicas")
    upstream = upstreams.recording("json")
    replicas = [
        gateways.new([http_server("rec", "limited", upstream.url)], {"limited": LIMITED},
                     extra={"audit": {"store": audit}}, store_url=state)
        for _ in range(3)
    ]
    assert not any((r.root / "toolgate.db").exists() for r in replicas), "no SQLite store is made"
    made = replicas[0].grant_json("rec", "replica-agent")
    token, grant_id = made["token"], made["id"]

    async def load() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            return await asyncio.gather(*(one_call(http, replicas[n % 3].url("rec"), token, n) for n in range(64)))

    answers = run(load, timeout=120)
    ok = [a for a in answers if not a["result"].get("isError")]
    denied = [a for a in answers if a["result"].get("isError")]
    assert len(ok) == 30, f"{len(ok)} calls passed a limit of 30 shared by three replicas"
    assert len(denied) == 34
    assert all("/tools/echo/limits/0" in a["result"]["content"][0]["text"] for a in denied)
    verify = replicas[1].cli("audit verify")
    assert verify.stdout.startswith("ok: "), verify.stdout
    calls = replicas[2].audit_records("--tool", "echo", "--kind", "call")
    assert len(calls) == 64 and sum(c["decision"] == "allow" for c in calls) == 30

    # Revoked through the third replica's CLI: the first refuses the token at once.
    replicas[2].cli("grants revoke", grant_id)

    async def after_revoke() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "r", "version": "1"}}}
            return await http.post(replicas[0].url("rec"), json=init, headers={"Authorization": f"Bearer {token}"} | HEADERS)

    r = run(after_revoke)
    assert r.status_code == 401 and "revoked" in r.text, r.text


def test_an_approval_held_on_one_replica_is_approved_through_another(gateways: Any, tmp_path: Path) -> None:
    state = redis_database(41)
    policy = {"version": "1", "default": "deny",
              "tools": {"refund_payment": {"action": "require_approval", "approval": {"timeout": "30s"}}}}
    a, b = (gateways.new([demo_server()], {"demo": policy}, store_url=state) for _ in range(2))
    token = a.grant("demo", "replica-approval")
    manager = json.loads(a.cli("admin-tokens create", "--name", "max", "--role", "policy_manager", "--json")
                         .stdout.strip().splitlines()[-1])["token"]
    refund = {"payment_id": "pay_5001", "amount": 100, "reason": "duplicate"}

    async def scenario() -> None:
        async with mcp_client(a.url("demo"), token) as client, httpx.AsyncClient(timeout=10) as http:
            call = asyncio.create_task(client.call_tool("refund_payment", refund))
            api = b.base_url + "/api/v1"
            auth = {"Authorization": f"Bearer {manager}"}
            deadline = time.monotonic() + 15
            while not (waiting := (await http.get(f"{api}/approvals", headers=auth)).json()["approvals"]):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            r = await http.post(f"{api}/approvals/{waiting[0]['id']}/approve", headers=auth)
            assert r.status_code == 200, r.text
            assert_allowed(await asyncio.wait_for(call, 20), "pay_5001")

    run(scenario)


def start_redis(folder: Path, port: int, persist: bool = False) -> Any:
    import shutil
    import subprocess

    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: the test command installs it")
        pytest.skip("redis-server is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *aof,
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import socket
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def test_redis_down_fails_closed_and_recovers_without_a_restart(gateways: Any, upstreams: Any, tmp_path: Path) -> None:
    from helpers import assert_denied, free_port

    port = free_port()
    redis = start_redis(tmp_path / "redis", port)
    try:
        upstream = upstreams.recording("json")
        gw = gateways.new([http_server("rec", "limited", upstream.url)], {"limited": LIMITED},
                          extra={"counters": f"redis://127.0.0.1:{port}/0"})
        token = gw.grant("rec", "redis-down")

        async def call(expect_ok: bool) -> None:
            async with mcp_client(gw.url("rec"), token) as client:
                result = await client.call_tool("echo", {"text": "hi"})
                if expect_ok:
                    assert_allowed(result, "hi")
                else:
                    assert_denied(result, "(store unavailable)")

        def ready() -> tuple[int, dict[str, Any]]:
            r = httpx.get(gw.base_url + "/readyz", timeout=10)
            return r.status_code, r.json()

        run(lambda: call(True))
        assert ready() == (200, {"ready": True, "degraded": False, "store": "ok", "counters": "ok", "audit": "ok"})
        redis.terminate()
        redis.wait(timeout=10)
        run(lambda: call(False))
        status, body = ready()
        assert status == 503 and body["ready"] is False and body["counters"] != "ok", body
        assert f"127.0.0.1:{port}" in body["counters"], "the error names the Redis it cannot reach"
        redis = start_redis(tmp_path / "redis", port)
        run(lambda: call(True))
        assert ready()[0] == 200
    finally:
        redis.kill()


def test_state_fail_mode_open_lets_calls_through_uncounted(gateways: Any, upstreams: Any, tmp_path: Path) -> None:
    from helpers import free_port

    port = free_port()
    redis = start_redis(tmp_path / "redis", port)
    try:
        upstream = upstreams.recording("json")
        server = http_server("rec", "limited", upstream.url) | {"state_fail_mode": "open"}
        gw = gateways.new([server], {"limited": LIMITED}, extra={"counters": f"redis://127.0.0.1:{port}/0"})
        token = gw.grant("rec", "fail-open")

        async def call() -> None:
            async with mcp_client(gw.url("rec"), token) as client:
                assert_allowed(await client.call_tool("echo", {"text": "hi"}), "hi")

        run(call)
        redis.terminate()
        redis.wait(timeout=10)
        run(call)
        metrics = httpx.get(gw.base_url + "/metrics", timeout=10).text
        assert 'toolgate_store_errors_total{store="store"} 1' in metrics, metrics
        # Every server is open: the replica stays in rotation, degraded.
        ready = httpx.get(gw.base_url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["degraded"] is True and ready.json()["counters"] != "ok", ready.text
        records = json.loads(gw.cli("audit query", "--tool", "echo", "--format", "json").stdout)
        assert any("state_fail_mode" in (r.get("message") or "") for r in records), records
    finally:
        redis.kill()


def test_a_redis_store_down_refuses_every_request_and_recovers(gateways: Any, tmp_path: Path) -> None:
    """With `store = "redis://…"` no token can be checked while Redis is down: every request
    is refused (503, fail closed, whatever `state_fail_mode`), `/readyz` names the store, and
    the same grant works again once Redis is back (its data kept by its own persistence)."""
    from helpers import free_port

    port = free_port()
    redis = start_redis(tmp_path / "redis", port, persist=True)
    try:
        server = demo_server() | {"state_fail_mode": "open"}
        gw = gateways.new([server], {"demo": {"version": "1", "default": "allow"}},
                          store_url=f"redis://127.0.0.1:{port}/0")
        token = gw.grant("demo", "store-down")
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "r", "version": "1"}}}

        def initialize() -> httpx.Response:
            return httpx.post(gw.url("demo"), json=init, headers={"Authorization": f"Bearer {token}"} | HEADERS, timeout=15)

        assert initialize().status_code == 200
        redis.terminate()
        redis.wait(timeout=10)
        refused = initialize()
        assert refused.status_code == 503, refused.text
        assert "grant store is unavailable" in refused.text, refused.text
        ready = httpx.get(gw.base_url + "/readyz", timeout=10)
        assert ready.status_code == 503, ready.text
        assert f"127.0.0.1:{port}" in ready.json()["store"], ready.text
        redis = start_redis(tmp_path / "redis", port, persist=True)
        assert initialize().status_code == 200, "the grant survived and the gateway reconnected"
        assert httpx.get(gw.base_url + "/readyz", timeout=10).status_code == 200
        # A restart between two requests: the first request after it finds its pooled
        # connections dead and is served on a fresh one, not refused.
        redis.terminate()
        redis.wait(timeout=10)
        redis = start_redis(tmp_path / "redis", port, persist=True)
        assert initialize().status_code == 200
    finally:
        redis.kill()
