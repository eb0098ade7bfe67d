"""Soak: mixed load through toolgate for DURATION seconds (default 600), sampling the
gateway's memory (RSS) and open files every 10 s, with p50/p99 per minute.

The mix, over concurrent workers: allowed calls, denied calls, calls to a rate-limited tool
(most refused), and calls that need approval (an approver loop approves through the admin
API). Prints the samples, the RSS trend (least-squares slope over the second half, after
warm-up), and fails (exit 1) on a leak-like trend or an unstable p99 (a minute's p99 over
three times the median of the second half's minutes).

Run by bench/soak.sh, which builds the release binary and starts everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import httpx

GW, TOKEN, ADMIN, PID = (os.environ[k] for k in ("SOAK_GW", "SOAK_TOKEN", "SOAK_ADMIN", "SOAK_PID"))
DURATION = float(os.environ.get("DURATION", "600"))
WORKERS = int(os.environ.get("WORKERS", "16"))
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "Authorization": f"Bearer {TOKEN}"}
MIX = [("get_patient", {"patient_id": "pat_1001"})] * 6 + [("list_providers", {})] * 2 + \
      [("search_patients", {"query": "Maria"})] * 2 + [("refund_payment", {"payment_id": "pay_5002", "amount": 1, "reason": "duplicate"})]


def memory_kb() -> dict[str, int]:
    """VmRSS and its parts (anonymous: the heap and stacks; file: the binary and mapped
    files such as SQLite's WAL index; shmem), in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(line.split()[1])
    return out


def open_files() -> int:
    return len(os.listdir(f"/proc/{PID}/fd"))


async def session(http: httpx.AsyncClient) -> dict[str, str]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}}
    r = await http.post(GW, json=init, headers=HEADERS)
    r.raise_for_status()
    h = HEADERS | {"Mcp-Session-Id": r.headers["mcp-session-id"]}
    await http.post(GW, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
    return h


async def worker(n: int, stop: float, lat: list[tuple[float, float]], counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        h = await session(http)
        i = n
        while time.monotonic() < stop:
            tool, args = MIX[i % len(MIX)]
            i += 1
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": args}}
            t0 = time.monotonic()
            try:
                r = await http.post(GW, json=body, headers=h)
                text = r.text
                kind = "error" if r.status_code != 200 else ("denied" if "[toolgate] denied" in text else "ok")
            except httpx.HTTPError:
                kind = "transport"
            if tool != "refund_payment":
                lat.append((time.monotonic(), (time.monotonic() - t0) * 1000))
            counts[f"{tool}:{kind}"] = counts.get(f"{tool}:{kind}", 0) + 1


async def approver(stop: float, counts: dict[str, int]) -> None:
    api = GW.split("/mcp/")[0] + "/api/v1/approvals"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < stop + 5:
            for a in (await http.get(api, headers=auth)).json().get("approvals", []):
                r = await http.post(f"{api}/{a['id']}/approve", headers=auth)
                counts["approved"] = counts.get("approved", 0) + (r.status_code == 200)
            await asyncio.sleep(0.5)


async def main() -> int:
    start = time.monotonic()
    stop = start + DURATION
    lat: list[tuple[float, float]] = []
    counts: dict[str, int] = {}
    samples: list[tuple[float, int, int, dict[str, int]]] = []

    def sample() -> None:
        mem = memory_kb()
        samples.append((time.monotonic() - start, mem.get("VmRSS", 0), open_files(), mem))

    async def sampler() -> None:
        while time.monotonic() < stop:
            sample()
            await asyncio.sleep(10)
        sample()

    await asyncio.gather(sampler(), approver(stop, counts), *(worker(n, stop, lat, counts) for n in range(WORKERS)))
    print(f"soak: {DURATION:.0f} s, {WORKERS} workers; calls by tool and result:")
    for k in sorted(counts):
        print(f"  {k:<40} {counts[k]}")
    print("  t(s)   RSS(MiB)  open files   anon   file  shmem (MiB)")
    for t, rss, fds, mem in samples:
        parts = "  ".join(f"{mem.get(k, 0) / 1024:5.1f}" for k in ("RssAnon", "RssFile", "RssShmem"))
        print(f"  {t:5.0f}  {rss / 1024:8.1f}  {fds:5d}       {parts}")
    second = [s for s in samples if s[0] >= DURATION / 2]
    xs, ys = [s[0] for s in second], [s[1] / 1024 for s in second]
    slope = statistics.linear_regression(xs, ys).slope * 60 if len(second) > 2 else 0.0
    fds_growth = samples[-1][2] - second[0][2] if second else 0
    per_min: dict[int, list[float]] = {}
    for t, ms in lat:
        per_min.setdefault(int((t - start) // 60), []).append(ms)
    print("  minute  calls    p50 ms   p99 ms")
    p99s = []
    for m in sorted(per_min):
        v = sorted(per_min[m])
        p50, p99 = v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))]
        p99s.append(p99)
        print(f"  {m:6d}  {len(v):5d}  {p50:8.2f} {p99:8.2f}")
    print(f"RSS trend over the second half: {slope:+.2f} MiB per minute; open files {fds_growth:+d}")
    # Judged after warm-up, like the RSS trend: the minutes of the second half.
    full = [p for m, p in zip(sorted(per_min), p99s) if DURATION / 120 <= m < DURATION // 60]
    stable = len(full) < 2 or max(full) <= 3 * statistics.median(full)
    ok = abs(slope) < 1.0 and fds_growth <= 5 and stable and counts.get("approved", 0) > 0
    print("soak:", "PASS" if ok else "FAIL", json.dumps({"slope_mib_per_min": round(slope, 3), "fd_growth": fds_growth,
                                                        "p99_stable": stable, "approved": counts.get("approved", 0)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
