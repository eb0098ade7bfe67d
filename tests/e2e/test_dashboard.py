"""The dashboard in a real browser: headless Chromium (Debian's chromium, driven by
playwright-core from node/dashboard.mjs) signs in with an admin token made by the CLI while
the TypeScript SDK client, as the agent, calls the bundled demo server through the gateway:
a denial appears in the live log, a held call is approved with a click, a tool switched to
Deny in the tools view denies the agent's next call, the status panel shows numbers, and the
page reports no console errors or CSP violations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers import NODE_DIR, demo_server

DASHBOARD_SCRIPT = NODE_DIR / "dashboard.mjs"

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "list_patients": {},
        "get_treatment_plan": {},
        "refund_payment": {"action": "require_approval", "approval": {"timeout": "60s"}},
        "delete_patient_record": {"action": "deny", "reason": "Never from an agent."},
    },
}


def chromium() -> str:
    """The browser to drive; skipped on a developer machine without one, a failure in CI."""
    path = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    missing = []
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        missing.append(f"no chromium at {path} (apt-get install chromium; tests/e2e/run.sh does it)")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core is not installed in tests/e2e/node (run tests/e2e/run.sh)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    return path


def test_dashboard_end_to_end(gateways: Any, tmp_path: Path) -> None:
    browser = chromium()
    node = shutil.which("node")
    assert node, "node is not on PATH"
    gw = gateways.new([demo_server()], {"demo": POLICY})
    created = gw.cli("admin-tokens create", "--name", "dash-admin", "--role", "admin", "--json").stdout
    admin = json.loads(created.strip().splitlines()[-1])
    assert admin["role"] == "admin" and admin["token"], admin
    agent_token = gw.grant("demo", "dash-agent")
    assert gw.base_url
    screenshot = tmp_path / "dashboard.png"
    env = dict(
        os.environ,
        GATEWAY=gw.base_url,
        ADMIN_TOKEN=admin["token"],
        AGENT_TOKEN=agent_token,
        SERVER="demo",
        CHROMIUM=browser,
        SCREENSHOT=str(screenshot),
    )
    try:
        proc = subprocess.run(
            [node, str(DASHBOARD_SCRIPT)], capture_output=True, text=True, cwd=NODE_DIR, env=env, timeout=170
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"dashboard.mjs did not finish within 170 s\nstdout:\n{out}\nstderr:\n{err}")
    print(proc.stdout)
    assert proc.returncode == 0, (
        f"dashboard.mjs exited {proc.returncode} (screenshot: {screenshot})\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    assert "[dashboard] PASS" in proc.stdout, proc.stdout

    # What the dashboard did is in the audit log too: the approval by the admin token's name.
    approvals = gw.audit_records("--kind", "approval")
    assert any(r.get("tool") == "refund_payment" and r.get("approver") == "dash-admin" for r in approvals), approvals
