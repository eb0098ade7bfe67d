"""No store call blocks a runtime thread (issue 18): while the shared store (Redis) stalls,
the requests that need it wait, and everything else the gateway does goes on in normal
time. Redis is stalled for real with `CLIENT PAUSE`."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import httpx

from helpers import INITIALIZE, MCP_HEADERS, http_server
from test_replicas import redis_database

POLICY = {"version": "1", "default": "allow"}


def test_a_stalled_redis_delays_only_the_calls_that_need_it(gateways: Any, upstreams: Any) -> None:
    url = redis_database(42)
    upstream = upstreams.recording("json")
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": POLICY}, store_url=url)
    token = gw.grant("rec", "stall")
    base = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    sessions = []
    for _ in range(8):
        r = httpx.post(gw.url("rec"), json=INITIALIZE, headers=base, timeout=30)
        assert r.status_code == 200, r.text
        sessions.append(dict(base, **{"Mcp-Session-Id": r.headers["mcp-session-id"]}))
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    answers: list[Any] = []

    def one(headers: dict[str, str]) -> None:
        try:
            answers.append(httpx.post(gw.url("rec"), json=call, headers=headers, timeout=30))
        except httpx.HTTPError as exc:
            answers.append(exc)

    # Redis answers nobody for 1.5 s; eight calls (more than the runtime's threads) need it.
    subprocess.run(["redis-cli", "-u", url, "CLIENT", "PAUSE", "1500", "ALL"], check=True, capture_output=True)
    started = time.monotonic()
    calls = [threading.Thread(target=one, args=(h,)) for h in sessions]
    for t in calls:
        t.start()
    time.sleep(0.2)
    probes = []
    while time.monotonic() - started < 1.2:
        t0 = time.monotonic()
        assert httpx.get(gw.base_url + "/healthz", timeout=5).status_code == 200
        probes.append(time.monotonic() - t0)
        time.sleep(0.05)
    for t in calls:
        t.join()
    # The liveness probe never waited for Redis; the calls did, and then went through.
    assert max(probes) < 0.3, probes
    assert len(answers) == 8 and all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers), answers
    assert all("x" in a.text for a in answers)
    assert time.monotonic() - started >= 1.0, "the calls were expected to wait for Redis"
