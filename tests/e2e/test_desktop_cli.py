"""What a desktop user hits with `toolgate run` (issue 26): servers started through the same
launcher (`node`) get distinct names without `--name`, so neither one's pins hold the other's
tools; `toolgate status` says which server denied; the MCP Inspector's CLI, which drops the
`--` before the server's command, can start `toolgate run`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from helpers import DEMO_POLICY_FILE, EVERYTHING_BIN, NODE_DIR, assert_allowed, assert_denied, run, toolgate_bin
from test_stdio_run import toolgate, user_env

INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"


def node_wrapper(root: Path, package: str) -> Path:
    """A node package whose entry point (`dist/index.js`) runs the bundled demo server."""
    folder = root / package
    (folder / "dist").mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": f"@acme/{package}", "type": "module"}))
    script = folder / "dist" / "index.js"
    script.write_text(
        "import { spawn } from 'node:child_process';\n"
        f"const child = spawn({json.dumps(str(toolgate_bin()))}, ['demo', '--stdio'], {{stdio: 'inherit'}});\n"
        "child.on('exit', (code) => process.exit(code ?? 1));\n"
    )
    return script


def node_client(home: Path, policy: Path, script: Path, *args: str) -> Any:
    """The Python SDK's stdio client starting `toolgate run` on a node server, no `--name`."""
    import mcp
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=str(toolgate_bin()),
        args=["run", "--policy", str(policy), "--", "node", str(script), *args],
        env=user_env(home),
        cwd=str(home),
    )
    return mcp.Client(params, mode="legacy")


def test_servers_under_one_launcher_get_distinct_names(tmp_path: Path) -> None:
    demo_js = node_wrapper(tmp_path / "pkgs", "server-alpha")
    # The reference server's own entry point: node_modules/@modelcontextprotocol/server-everything/dist/index.js
    everything_js = EVERYTHING_BIN.resolve()
    assert everything_js.name == "index.js", everything_js
    everything_policy = tmp_path / "everything.json"
    everything_policy.write_text(json.dumps({"version": "1", "default": "deny", "tools": {"echo": {}}}))

    async def scenario() -> None:
        async with node_client(tmp_path, DEMO_POLICY_FILE, demo_js) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "list_patients" in names and "export_patient_data" not in names
            assert_allowed(await client.call_tool("list_patients", {"limit": 1}))
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")
        # Under one name ("node") these tools would be held as changed pins of the first.
        async with node_client(tmp_path, everything_policy, everything_js, "stdio") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"echo"}, names
            assert assert_allowed(await client.call_tool("echo", {"message": "hi"})) == "Echo: hi"

    run(scenario)
    out = toolgate(tmp_path, "audit", "query", "--kind", "call", "--format", "jsonl").stdout
    calls = [json.loads(line) for line in out.splitlines()]
    by_server = {(c["server"], c["tool"], c["decision"]) for c in calls if c.get("method") == "tools/call"}
    assert by_server == {
        ("server-alpha", "list_patients", "allow"),
        ("server-alpha", "list_providers", "deny"),
        ("server-everything", "echo", "allow"),
    }, by_server

    # `status` and the audit table name the server: every `toolgate run` grant is `stdio`.
    status = toolgate(tmp_path, "status").stdout
    denial = next(line for line in status.splitlines() if "list_providers" in line)
    assert "server-alpha list_providers (grant stdio)" in denial, status
    table = toolgate(tmp_path, "audit", "query", "--kind", "call").stdout
    assert any("server-everything" in line and "echo" in line for line in table.splitlines()), table


def test_run_logs_the_name_it_chose(tmp_path: Path) -> None:
    script = node_wrapper(tmp_path, "server-memory")
    # stdin closed: toolgate starts, names the server, sees the client gone and stops.
    proc = subprocess.run(
        [str(toolgate_bin()), "run", "--policy", str(DEMO_POLICY_FILE), "--", "node", str(script)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path, env=user_env(tmp_path), timeout=30,
    )
    assert "server name `server-memory`" in proc.stderr and "--name" in proc.stderr, proc.stderr
    assert proc.stdout == "", "stdout carries only MCP messages"
    named = subprocess.run(
        [str(toolgate_bin()), "run", "--policy", str(DEMO_POLICY_FILE), "--name", "mine", "--", "node", str(script)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path, env=user_env(tmp_path), timeout=30,
    )
    assert "server name" not in named.stderr and "server=mine" in named.stderr, named.stderr


def inspector(home: Path, *args: str) -> Any:
    """The MCP Inspector's CLI (npm @modelcontextprotocol/inspector) with HOME in tmp: its
    catalog and toolgate's user store land there (it passes HOME on to the server)."""
    env = dict(os.environ, HOME=str(home))
    env.pop("XDG_DATA_HOME", None)
    proc = subprocess.run([str(INSPECTOR), "--cli", *args], capture_output=True, text=True, cwd=home, env=env,
                          timeout=90)
    assert proc.returncode == 0, f"inspector exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_the_inspector_cli_starts_toolgate_run(tmp_path: Path) -> None:
    bin_ = str(toolgate_bin())
    # As a user writes it; the Inspector drops the `--`, so toolgate sees
    # `run --policy P --name demo TOOLGATE demo --stdio`.
    server = [bin_, "run", "--policy", str(DEMO_POLICY_FILE), "--name", "demo", "--", bin_, "demo", "--stdio"]
    listed = inspector(tmp_path, *server, "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert "list_patients" in names, names
    assert "export_patient_data" not in names and "delete_patient_record" not in names, names

    called = inspector(tmp_path, *server, "--method", "tools/call", "--tool-name", "list_patients",
                       "--tool-arg", "limit=1")
    assert not called.get("isError"), called
    assert "pat_" in json.dumps(called), called

    # With the `--` kept (after the Inspector's own `--`), toolgate takes it as before.
    kept = inspector(tmp_path, "--method", "tools/list", "--", *server)
    assert {t["name"] for t in kept["tools"]} == names

    out = toolgate(tmp_path, "audit", "query", "--server", "demo", "--kind", "call", "--format", "jsonl").stdout
    calls = [json.loads(line) for line in out.splitlines()]
    judged = [(c["tool"], c["decision"]) for c in calls if c.get("method") == "tools/call"]
    assert judged == [("list_patients", "allow")], judged
