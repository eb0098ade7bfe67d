"""The TypeScript SDK v2 client (`@modelcontextprotocol/client` 2.4.0, node/client-v2.mjs)
through toolgate, in both eras: the legacy handshake (`versionNegotiation` "legacy"), the
2026-07-28 era pinned, and "auto" (a `server/discover` probe, falling back to `initialize`).

Real servers behind toolgate: the Python `MCPServer` (both eras), the reference everything
server (`@modelcontextprotocol/server-everything`, legacy only, over HTTP and stdio) and the
conformance upstream (its `input_required` tools and prompt, auto-fulfilled by the client)."""

from __future__ import annotations

from typing import Any

from conftest import LOG_SOURCES
from helpers import (
    TS_CLIENT_V2,
    everything_stdio_server,
    http_server,
    parse_denial,
    result_text,
    start_conformance_server,
    ts_client,
)

MODERN = "2026-07-28"

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["shutdown_server"],
    "tools": {
        "echo": {},
        "add": {"deny_if": [{"path": "args.a", "op": "gt", "value": 100}]},
        "seen_headers": {},
        "slow_progress": {},
    },
}


def v2(url: str, token: str | None, script: dict[str, Any]) -> dict[str, Any]:
    return ts_client(url, token, script, client=TS_CLIENT_V2)


def assert_era(out: dict[str, Any], era: str) -> None:
    """The era the client negotiated, and what its HTTP requests looked like in it."""
    assert out["ok"], out
    http = out["http"]
    if era == "modern":
        assert out["era"] == "modern" and out["protocolVersion"] == MODERN, out
        assert out["sessionId"] is None, "no session in the 2026-07-28 era"
        assert all(h["method"] == "POST" for h in http), http
        assert not any(h["rpc"] == "initialize" for h in http), http
        for h in http:
            assert h["sessionId"] is None and h["protocolVersion"] == MODERN, h
            assert h["mcpMethod"] == h["rpc"], h
    else:
        assert out["era"] == "legacy" and out["protocolVersion"] == "2025-11-25", out
        assert out["sessionId"] and out["sessionId"].startswith("tgs_"), "toolgate mints the session id"
        assert [h["rpc"] for h in http if h["method"] == "POST"][:2] == ["initialize", "notifications/initialized"]
        assert all(h["sessionId"] == out["sessionId"] for h in http[1:]), http
        assert http[-1]["method"] == "DELETE" and http[-1]["status"] == 200, http[-1]


def test_ts_v2_client_both_eras_against_python_server(gateways: Any, upstreams: Any) -> None:
    upstream = upstreams.recording("sse")
    gw = gateways.new([http_server("rec", "p", upstream.url)], {"p": POLICY})
    token = gw.grant("rec", "ts-v2")
    script = {
        "list": True,
        "calls": [
            {"name": "echo", "arguments": {"text": "two eras"}},
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "add", "arguments": {"a": 500, "b": 1}},
            {"name": "delete_everything", "arguments": {"confirm": True}},
            {"name": "shutdown_server"},
            {"name": "slow_progress", "arguments": {"steps": 2}, "progress": True},
            {"name": "seen_headers"},
        ],
    }
    for mode, era in (("legacy", "legacy"), (MODERN, "modern"), ("auto", "modern")):
        out = v2(gw.url("rec"), token, script | {"mode": mode})
        assert_era(out, era)
        if mode == "auto":
            assert out["http"][0]["rpc"] == "server/discover" and out["http"][0]["status"] == 200, out["http"][0]
        assert set(out["tools"]) == {"echo", "add", "seen_headers", "slow_progress"}, (mode, out["tools"])
        echo, add, big, delete, hidden, slow, seen = out["calls"]
        assert result_text(echo["result"]) == "two eras" and not echo["result"].get("isError"), (mode, echo)
        assert result_text(add["result"]) == "5.0", (mode, add)
        assert parse_denial(big["result"]).rule == "/tools/add/deny_if/0", (mode, big)
        assert parse_denial(delete["result"]).rule == "(default deny)", (mode, delete)
        assert hidden.get("error", {}).get("code") == -32602, (mode, hidden)
        assert [p["progress"] for p in slow["progress"]] == [1, 2], (mode, slow)
        headers = seen["result"]["structuredContent"]["headers"]
        assert token not in str(headers), "the agent's token stays at the gateway"
        if era == "modern":
            assert headers.get("mcp-method") == "tools/call" and headers.get("mcp-name") == "seen_headers", headers
            assert "mcp-session-id" not in headers, headers
        else:
            assert headers.get("mcp-session-id") not in (None, out["sessionId"]), headers

    # Each judged call is in the audit log; the 2026-07-28 ones stand alone, one "session" each.
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert len(calls) == 3 * 7, [c.get("tool") for c in calls]
    modern = calls[7:14]
    assert all(c["session"].startswith("modern-") for c in modern), modern
    assert len({c["session"] for c in modern}) == 7
    assert {c["session"] for c in calls[:7]} == {calls[0]["session"]}


EVERYTHING_POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["get-env"],
    "tools": {"echo": {}, "get-sum": {"deny_if": [{"path": "args.a", "op": "gt", "value": 100}]}},
}


def test_ts_v2_client_against_legacy_only_servers(gateways: Any, upstreams: Any) -> None:
    """server-everything speaks 2025-11-25 only. Directly, a client in mode "auto" falls back
    to `initialize` and one pinned to 2026-07-28 fails. Through toolgate, over stdio and over
    Streamable HTTP alike (where toolgate finds out the server's era with a probe of its own),
    toolgate holds a legacy session itself, answers `server/discover`, and the client speaks
    2026-07-28 through it."""
    servers = [
        http_server("ev-http", "ev", upstreams.everything_http().url),
        everything_stdio_server("ev-stdio", "ev"),
    ]
    gw = gateways.new(servers, {"ev": EVERYTHING_POLICY})
    script = {
        "list": True,
        "calls": [
            {"name": "echo", "arguments": {"message": "legacy only"}},
            {"name": "get-sum", "arguments": {"a": 500, "b": 1}},
            {"name": "get-env"},
        ],
    }
    for server in ("ev-http", "ev-stdio"):
        token = gw.grant(server, f"ts-v2-{server}")
        for mode in ("legacy", "auto"):
            out = v2(gw.url(server), token, script | {"mode": mode})
            http = out["http"]
            translated = mode == "auto"
            if mode == "auto" and not translated:
                probe = http.pop(0)
                assert probe["rpc"] == "server/discover" and probe["status"] == 400, (server, probe)
            assert_era(out | {"http": http}, "modern" if translated else "legacy")
            assert set(out["tools"]) == {"echo", "get-sum"}, (server, mode, out["tools"])
            echo, big, hidden = out["calls"]
            assert result_text(echo["result"]) == "Echo: legacy only", (server, mode, echo)
            assert parse_denial(big["result"]).rule == "/tools/get-sum/deny_if/0", (server, mode, big)
            assert hidden.get("error", {}).get("code") == -32602, (server, mode, hidden)

        pinned = v2(gw.url(server), token, {"mode": MODERN, "list": True})
        assert pinned["ok"] and set(pinned["tools"]) == {"echo", "get-sum"}, pinned


INPUT_REQUIRED_POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "test_input_required_result_elicitation": {},
        "test_input_required_result_multi_round": {},
        "test_input_required_result_sampling": {},
        "test_input_required_result_list_roots": {},
    },
}


def test_ts_v2_client_input_required_through_toolgate(request: Any, gateways: Any, tmp_path: Any) -> None:
    """2026-07-28 multi-round-trip requests: the upstream answers `input_required`, the client
    fulfils the input requests with its handlers and retries with a new id; toolgate judges
    every round as a call of its own and relays `inputResponses` and `requestState` intact."""
    upstream = start_conformance_server(tmp_path)
    request.node.stash.setdefault(LOG_SOURCES, []).append(upstream)
    try:
        gw = gateways.new([http_server("conf", "p", upstream.url)], {"p": INPUT_REQUIRED_POLICY})
        token = gw.grant("conf", "ts-v2-input-required")
        out = v2(
            gw.url("conf"),
            token,
            {
                "mode": MODERN,
                "elicit": {"name": "Alice", "color": "teal", "context": "a dentist's calendar"},
                "sample": "Paris",
                "roots": [{"uri": "file:///srv/project", "name": "project"}],
                "calls": [
                    {"name": "test_input_required_result_elicitation"},
                    {"name": "test_input_required_result_multi_round"},
                    {"name": "test_input_required_result_sampling"},
                    {"name": "test_input_required_result_list_roots"},
                    {"name": "test_input_required_result_request_state"},
                ],
                "prompts": [{"name": "test_input_required_result_prompt"}],
            },
        )
    finally:
        upstream.stop()

    assert_era(out, "modern")
    elicitation, multi_round, sampling, roots, unlisted = out["calls"]
    assert result_text(elicitation["result"]) == "Hello, Alice!", elicitation
    assert result_text(multi_round["result"]) == "Alice likes teal", multi_round
    assert result_text(sampling["result"]) == "The model said: Paris", sampling
    assert result_text(roots["result"]) == "Roots: file:///srv/project", roots
    assert parse_denial(unlisted["result"]).rule == "(default deny)", unlisted
    (prompt,) = out["prompts"]
    assert "a dentist's calendar" in prompt["result"]["messages"][0]["content"]["text"], prompt
    assert out["handled"] == {"elicitation/create": 4, "sampling/createMessage": 1, "roots/list": 1}, out["handled"]

    # Round by round: the retry is a new request (new id) with the same tool, judged again.
    rounds = [(h["rpc"], h["mcpName"]) for h in out["http"] if h["rpc"] in ("tools/call", "prompts/get")]
    assert rounds == [
        ("tools/call", "test_input_required_result_elicitation"),
        ("tools/call", "test_input_required_result_elicitation"),
        ("tools/call", "test_input_required_result_multi_round"),
        ("tools/call", "test_input_required_result_multi_round"),
        ("tools/call", "test_input_required_result_multi_round"),
        ("tools/call", "test_input_required_result_sampling"),
        ("tools/call", "test_input_required_result_sampling"),
        ("tools/call", "test_input_required_result_list_roots"),
        ("tools/call", "test_input_required_result_list_roots"),
        ("tools/call", "test_input_required_result_request_state"),
        ("prompts/get", "test_input_required_result_prompt"),
        ("prompts/get", "test_input_required_result_prompt"),
    ], rounds
    ids = [h["id"] for h in out["http"] if h["rpc"] == "tools/call"]
    assert len(set(ids)) == len(ids), ids
    judged = [(r["tool"], r["decision"]) for r in gw.audit_records("--kind", "call") if r.get("method") == "tools/call"]
    assert judged == [(name, "allow") for _, name in rounds[:9]] + [
        ("test_input_required_result_request_state", "deny")
    ]
