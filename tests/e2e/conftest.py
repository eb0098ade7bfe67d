"""Fixtures of toolgate's end-to-end tests (see helpers.py for the machinery).

- `gateways`: a factory of `toolgate serve` processes, each in its own temporary folder,
  all stopped at the end of the test.
- `upstreams`: the HTTP upstreams we run ourselves (the everything server over
  streamableHttp, the Python recording server in three modes), started on first use and
  kept for the whole session.
- On a failing test, the logs of its gateways and upstreams are added to the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    DEMO_POLICY_FILE,
    EVERYTHING_BIN,
    Gateway,
    Upstream,
    start_everything_http,
    start_recording_server,
    tail,
    toolgate_bin,
)


class GatewayFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.created: list[Gateway] = []

    def new(
        self,
        servers: list[dict[str, Any]],
        policies: dict[str, dict[str, Any] | str],
        *,
        start: bool = True,
        **kwargs: Any,
    ) -> Gateway:
        gateway = Gateway(self.tmp_path / f"gw{len(self.created) + 1}", servers, policies, **kwargs)
        self.created.append(gateway)
        if start:
            gateway.start()
        return gateway

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = []
        for i, gateway in enumerate(self.created, start=1):
            files += [(f"gw{i}: {name}", path) for name, path in gateway.log_files]
        return files

    def stop_all(self) -> None:
        for gateway in self.created:
            gateway.stop()


class UpstreamPool:
    """HTTP upstreams started on first use, shared by the whole session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: dict[str, Upstream] = {}

    def everything_http(self) -> Upstream:
        if "everything" not in self.started:
            assert EVERYTHING_BIN.exists(), f"{EVERYTHING_BIN} missing: run tests/e2e/run.sh (npm ci)"
            self.started["everything"] = start_everything_http(self.workdir)
        return self.started["everything"]

    def recording(self, mode: str = "sse") -> Upstream:
        key = f"recording-{mode}"
        if key not in self.started:
            self.started[key] = start_recording_server(self.workdir, mode)
        return self.started[key]

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        return [pair for upstream in self.started.values() for pair in upstream.log_files]

    def stop_all(self) -> None:
        for upstream in self.started.values():
            upstream.stop()


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamPool]:
    pool = UpstreamPool(tmp_path_factory.mktemp("upstreams"))
    yield pool
    pool.stop_all()


# What a failing test's report shows: the log files of the objects registered here.
LOG_SOURCES = pytest.StashKey[list[Any]]()


@pytest.fixture(autouse=True)
def _log_sources(request: pytest.FixtureRequest) -> None:
    sources: list[Any] = []
    request.node.stash[LOG_SOURCES] = sources
    if "upstreams" in request.fixturenames:
        sources.append(request.getfixturevalue("upstreams"))


@pytest.fixture
def gateways(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayFactory]:
    if not toolgate_bin().is_file():
        pytest.fail(f"toolgate binary not found at {toolgate_bin()}: set TOOLGATE_BIN or run tests/e2e/run.sh")
    factory = GatewayFactory(tmp_path)
    request.node.stash.setdefault(LOG_SOURCES, []).insert(0, factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def demo_policy() -> dict[str, Any]:
    """The shipped policy of the demo server, policies/demo.json, unchanged."""
    return json.loads(DEMO_POLICY_FILE.read_text(encoding="utf-8"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        seen: set[Path] = set()
        for source in item.stash.get(LOG_SOURCES, []):
            for name, path in source.log_files:
                if path in seen:
                    continue
                seen.add(path)
                report.sections.append((f"log: {name} ({path})", tail(path)))


@pytest.fixture
def parts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The OAuth tests' real parts (oauth_fixtures.Parts), stopped at the test's end."""
    from oauth_fixtures import Parts

    pool = Parts(tmp_path)
    request.node.stash.setdefault(LOG_SOURCES, []).append(pool)
    try:
        yield pool
    finally:
        pool.stop_all()

