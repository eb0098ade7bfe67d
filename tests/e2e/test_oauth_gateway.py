"""toolgate as the OAuth client of a protected MCP server (issue 23), end to end with real
parts on loopback: the authorization server is npm `oidc-provider` (node/oauth-provider.mjs),
the protected server is the Python SDK's server-side auth (upstreams/protected_server.py), the
agents are the official Python SDK client. Each identity connects once (`toolgate connect`,
the consent driven over HTTP, the browser's return to toolgate's `/oauth/callback`), then
each call reaches the server with that identity's own token; refresh, disconnection, the
token key, and bad input (forged `state`, replayed code, metadata naming another origin, a
token endpoint that hangs)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from helpers import INITIALIZE, MCP_HEADERS, Gateway, assert_allowed, assert_denied, free_port, mcp_client, run
from oauth_fixtures import (
    Parts,
    drive_consent,
    protected_requests,
    server_metadata,
    set_token_busy,
    set_token_delay,
    set_token_hold,
    start_oauth_provider,
)

KEY_ENV = "TOOLGATE_E2E_TOKEN_KEY"
KEY = "5f" * 32
POLICY = {"version": "1", "default": "allow"}


@pytest.fixture(autouse=True)
def token_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway and its CLI read the token key from this variable."""
    monkeypatch.setenv(KEY_ENV, KEY)


def oauth_gateway(gateways: Any, server_url: str, *, store_url: str | None = None, start: bool = True) -> Gateway:
    port = free_port()
    return gateways.new(
        [{"name": "prot", "policy": "open", "url": server_url, "auth": "oauth"}],
        {"open": POLICY},
        extra={
            "listen": f"127.0.0.1:{port}",
            "oauth": {"token_key_env": KEY_ENV, "public_url": f"http://127.0.0.1:{port}"},
        },
        store_url=store_url,
        start=start,
    )


def connect(gw: Gateway, identity: str) -> str:
    """`toolgate connect prot --identity ID`, the consent as `identity`, and the browser's
    return to toolgate: returns the callback URL used (to replay or tamper with)."""
    out = gw.cli("connect", "prot", "--identity", identity, "--json").stdout
    url = json.loads(out.strip().splitlines()[-1])["authorization_url"]
    callback = drive_consent(url, identity)
    assert callback.startswith(gw.base_url + "/oauth/callback?"), callback
    r = httpx.get(callback, timeout=30)
    assert r.status_code == 200, r.text
    assert "Connected" in r.text
    return callback


def initialize(gw: Gateway, token: str, server: str = "prot") -> httpx.Response:
    """A bare legacy `initialize` to `server` (to see a refusal as it is)."""
    return httpx.post(gw.url(server), json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}"), timeout=30)


def connections(gw: Gateway) -> list[dict[str, Any]]:
    return json.loads(gw.cli("connections", "--json").stdout)["connections"]


async def whoami(gw: Gateway, token: str) -> dict[str, Any]:
    async with mcp_client(gw.url("prot"), token) as client:
        return json.loads(assert_allowed(await client.call_tool("whoami", {})))


def test_two_identities_each_reach_the_server_as_themselves(gateways: Any, parts: Parts) -> None:
    provider = parts.provider()
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    alice, bob = gw.grant("prot", "alice"), gw.grant("prot", "bob")

    # Not connected yet: a clear refusal that says how to connect, and nothing upstream.
    r = initialize(gw, alice)
    assert r.status_code == 403, r.text
    assert "toolgate connect prot --identity alice" in r.json()["error"]["message"]
    assert not [q for q in protected_requests(server) if q["auth"] != "none"]

    callback = connect(gw, "alice")
    connect(gw, "bob")

    # The same callback again (a replayed code and state): refused, nothing changed.
    before = connections(gw)
    replay = httpx.get(callback, timeout=30)
    assert replay.status_code == 400 and "matches no consent flow" in replay.text, replay.text
    assert connections(gw) == before
    assert {(c["identity"], c["subject"]) for c in before} == {("alice", "alice"), ("bob", "bob")}

    seen_alice = run(lambda: whoami(gw, alice))
    seen_bob = run(lambda: whoami(gw, bob))
    assert seen_alice["sub"] == "alice" and seen_bob["sub"] == "bob"
    assert seen_alice["resource"] == server.url

    # Each forwarded request went with its identity's own token, none was refused.
    forwarded = [q for q in protected_requests(server) if q["auth"] != "none"]
    assert forwarded and all(q["auth"] == "ok" for q in forwarded), forwarded
    assert {q["sub"] for q in forwarded} == {"alice", "bob"}

    # The audit record names the upstream identity, never the token.
    calls = [rec for rec in gw.audit_records() if rec.get("tool") == "whoami" and rec.get("decision")]
    assert {(c["identity"], c.get("upstream_sub")) for c in calls} == {("alice", "alice"), ("bob", "bob")}
    assert all(c.get("upstream_client_id") for c in calls)

    # No token anywhere an operator or agent looks: logs, the audit log, /metrics, the API.
    jwt_like = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ")
    admin = gw.cli("admin-tokens create", "--name", "ops", "--role", "admin", "--json").stdout
    admin_token = json.loads(admin.strip().splitlines()[-1])["token"]
    api = httpx.get(gw.base_url + "/api/v1/connections", headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    assert api.status_code == 200, api.text
    # Connected identities, and those of the server's grants with no connection (the
    # first start's `quickstart` grant).
    assert {(c["identity"], c["connected"]) for c in api.json()["connections"]} == {
        ("alice", True),
        ("bob", True),
        ("quickstart", False),
    }
    metrics = httpx.get(gw.base_url + "/metrics", timeout=10).text
    audit_dump = gw.cli("audit query", "--format", "jsonl").stdout
    for where, text in [("logs", gw.logs), ("audit", audit_dump), ("metrics", metrics), ("api", api.text)]:
        assert not jwt_like.search(text), f"a token shows in the {where}"

    # The store holds only sealed bytes: a stolen copy without the key is useless.
    db = sqlite3.connect(gw.db_path)
    sealed = [bytes(row[0]) for row in db.execute("SELECT sealed FROM oauth_connections")]
    db.close()
    assert len(sealed) == 2 and not any(b"eyJ" in s for s in sealed)
    gw.stop()
    os.environ[KEY_ENV] = "a0" * 32
    gw.start()
    try:

        async def with_other_key() -> None:
            async with mcp_client(gw.url("prot"), alice) as client:
                await client.call_tool("whoami", {})

        with pytest.raises(Exception, match="do not open with this key"):
            run(with_other_key)
    finally:
        os.environ[KEY_ENV] = KEY
    gw.stop()
    # Without the key toolgate does not start, and says why.
    del os.environ[KEY_ENV]
    try:
        with pytest.raises(AssertionError, match=KEY_ENV):
            gw.start(timeout=15)
    finally:
        os.environ[KEY_ENV] = KEY


def test_refresh_happens_before_expiry_without_a_failed_call(gateways: Any, parts: Parts) -> None:
    # Tokens live 12 s; toolgate refreshes a short-lived token at half its life (a minute
    # before expiry for one living two minutes or more): after 6 s, at the next call.
    provider = parts.provider(access_ttl=12)
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")

    async def calls() -> list[dict[str, Any]]:
        seen = []
        async with mcp_client(gw.url("prot"), alice) as client:
            seen.append(json.loads(assert_allowed(await client.call_tool("whoami", {}))))
            await asyncio.sleep(6.5)
            # Eight calls at once: one refresh among them.
            results = await asyncio.gather(*[client.call_tool("whoami", {}) for _ in range(8)])
            seen += [json.loads(assert_allowed(r)) for r in results]
        return seen

    seen = run(calls)
    assert all(s["sub"] == "alice" for s in seen)
    assert seen[0]["expires_at"] < seen[-1]["expires_at"], "the later calls used a new token"
    refreshes = provider.log.read_text().count("grant.success grant_type=refresh_token")
    assert refreshes == 1, provider.log.read_text()[-3000:]
    assert all(q["status"] < 400 for q in protected_requests(server) if q["auth"] != "none")


def test_a_busy_token_endpoint_does_not_disconnect_anyone(gateways: Any, parts: Parts) -> None:
    """A refresh answered 429 (a rate limit, not `invalid_grant`): the call goes on with the
    token still valid and the connection stays; the next call refreshes."""
    provider = parts.provider(access_ttl=12)
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with mcp_client(gw.url("prot"), alice) as client:
            await asyncio.sleep(6.5)  # the refresh is due; the token is valid ~5 s more
            await asyncio.to_thread(set_token_busy, provider.url, 1)
            first = json.loads(assert_allowed(await client.call_tool("whoami", {})))
            assert "token request answered 429" in provider.log.read_text()
            still = await asyncio.to_thread(connections, gw)
            assert [c["identity"] for c in still] == ["alice"], "still connected"
            second = json.loads(assert_allowed(await client.call_tool("whoami", {})))
            return first, second

    first, second = run(scenario)
    assert first["sub"] == second["sub"] == "alice"
    assert second["expires_at"] > first["expires_at"], "refreshed at the next call"
    refreshes = provider.log.read_text().count("grant.success grant_type=refresh_token")
    assert refreshes == 1, provider.log.read_text()[-3000:]


def test_a_refresh_under_way_never_undoes_a_disconnect(gateways: Any, parts: Parts) -> None:
    """A refresh the server has answered but whose answer is still on its way when alice is
    disconnected: toolgate does not write the new tokens back (alice stays disconnected),
    revokes them, and the call is denied `(not connected)`."""
    provider = parts.provider(access_ttl=12)
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")

    async def scenario() -> Any:
        async with mcp_client(gw.url("prot"), alice) as client:
            await asyncio.sleep(6.5)  # the refresh is due
            await asyncio.to_thread(set_token_hold, provider.url, 3)
            call = asyncio.create_task(client.call_tool("whoami", {}))
            deadline = time.monotonic() + 10
            while "holding a token answer" not in provider.log.read_text():
                assert time.monotonic() < deadline, "the refresh never reached the provider"
                await asyncio.sleep(0.1)
            await asyncio.to_thread(set_token_hold, provider.url, 0)
            out = await asyncio.to_thread(gw.cli, "disconnect", "prot", "--identity", "alice", "--json")
            assert json.loads(out.stdout.strip().splitlines()[-1])["disconnected"] is True
            return await call

    denial = assert_denied(run(scenario), "(not connected)")
    assert "while its token was being refreshed" in denial.text, denial.text
    assert connections(gw) == [], "the refresh did not bring the connection back"
    log = provider.log.read_text()
    assert log.count("grant_type=refresh_token") == 1, log[-3000:]
    # The disconnect revoked the old set (refresh and access token); the refresh's new set
    # was revoked too.
    assert log.count("revocation request") == 4, log[-3000:]


def test_disconnect_revokes_and_calls_are_denied_not_connected(gateways: Any, parts: Parts) -> None:
    provider = parts.provider(token_format="opaque")
    server = parts.server(provider.url, verify="introspection")
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")

    async def scenario() -> None:
        async with mcp_client(gw.url("prot"), alice) as client:
            # Twice: the token toolgate keeps in memory is in use (the first call's tool
            # list pins the tools, which empties that cache once).
            for _ in range(2):
                assert json.loads(assert_allowed(await client.call_tool("whoami", {})))["sub"] == "alice"
            # Another process (the CLI) disconnects: the gateway's next call must see it.
            out = await asyncio.to_thread(gw.cli, "disconnect", "prot", "--identity", "alice", "--json")
            doc = json.loads(out.stdout.strip().splitlines()[-1])
            assert doc["disconnected"] is True and doc["revocation"] is None, doc
            denial = assert_denied(await client.call_tool("whoami", {}), "(not connected)")
            assert "toolgate connect prot --identity alice" in denial.text

    run(scenario)
    assert connections(gw) == []
    # Revoked at the authorization server (RFC 7009), not only forgotten by toolgate.
    assert "event grant.revoked" in provider.log.read_text(), provider.log.read_text()[-2000:]
    denied = [rec for rec in gw.audit_records() if rec.get("rule") == "(not connected)"]
    assert len(denied) == 1 and denied[0]["decision"] == "deny"


def test_a_token_goes_only_to_the_url_it_was_issued_for(gateways: Any, parts: Parts) -> None:
    """The server's `url` changes in the config after alice connected (here: a second
    gateway on the same store, naming the server by another host): her token is not sent
    to the new URL; she is told to reconnect. The first gateway still uses it."""
    provider = parts.provider()
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")
    moved = server.url.replace("127.0.0.1", "localhost")
    assert moved != server.url
    gw2 = oauth_gateway(gateways, moved, store_url=f"sqlite://{gw.db_path}")
    before = len(protected_requests(server))
    r = initialize(gw2, alice)
    message = r.json()["error"]["message"]
    assert r.status_code == 403 and "was made for" in message and "toolgate connect prot" in message, r.text
    assert len(protected_requests(server)) == before, "nothing sent to the new URL"
    assert run(lambda: whoami(gw, alice))["sub"] == "alice"


def test_bad_input_is_refused_and_nothing_is_stored(gateways: Any, parts: Parts) -> None:
    provider = parts.provider()
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)

    # A forged `state` at the callback.
    out = gw.cli("connect", "prot", "--identity", "mallory", "--json").stdout
    url = json.loads(out.strip().splitlines()[-1])["authorization_url"]
    callback = drive_consent(url, "mallory")
    parts_ = urlsplit(callback)
    q = parse_qs(parts_.query)
    q["state"] = ["f" * 64]
    forged = urlunsplit(parts_._replace(query=urlencode({k: v[0] for k, v in q.items()})))
    r = httpx.get(forged, timeout=30)
    assert r.status_code == 400 and "matches no consent flow" in r.text, r.text
    assert connections(gw) == []
    # The real state with the `iss` taken off (a mix-up attack's shape): the provider
    # promises `iss` on every answer (RFC 9207), so toolgate refuses; the flow is spent.
    assert server_metadata(provider.url).get("authorization_response_iss_parameter_supported") is True
    q = parse_qs(parts_.query)
    q.pop("iss", None)
    stripped = urlunsplit(parts_._replace(query=urlencode({k: v[0] for k, v in q.items()})))
    r = httpx.get(stripped, timeout=30)
    assert r.status_code == 400 and "has no `iss`" in r.text, r.text
    r = httpx.get(callback, timeout=30)
    assert r.status_code == 400 and "matches no consent flow" in r.text, "a flow is taken once"
    assert connections(gw) == []

    # A token endpoint that hangs: the callback gives up after 10 s, says so, stores nothing.
    out = gw.cli("connect", "prot", "--identity", "mallory", "--json").stdout
    url = json.loads(out.strip().splitlines()[-1])["authorization_url"]
    callback = drive_consent(url, "mallory")
    set_token_delay(provider.url, 20)
    try:
        started = time.monotonic()
        r = httpx.get(callback, timeout=60)
        took = time.monotonic() - started
    finally:
        set_token_delay(provider.url, 0)
    assert r.status_code == 400 and "did not answer within 10 s" in r.text, r.text
    assert 9 < took < 20, took
    assert connections(gw) == []

    # Metadata that names another resource: `connect` refuses, nothing begun.
    liar = parts.server(provider.url, advertise_resource="http://127.0.0.1:9/mcp")
    gw2 = oauth_gateway(gateways, liar.url)
    bad = gw2.cli("connect", "prot", "--identity", "alice", "--json", check=False)
    assert bad.returncode != 0
    assert "not this server" in bad.stderr and "http://127.0.0.1:9/mcp" in bad.stderr, bad.stderr
    assert connections(gw2) == []
    # And one that names another authorization server: toolgate asks that one, whose own
    # metadata does not say it is the issuer named: refused.
    liar2 = parts.server(provider.url, advertise_issuer="http://127.0.0.1:9")
    gw3 = oauth_gateway(gateways, liar2.url)
    bad = gw3.cli("connect", "prot", "--identity", "alice", "--json", check=False)
    assert bad.returncode != 0 and "127.0.0.1:9" in bad.stderr, bad.stderr


def test_three_replicas_on_one_redis_refresh_once(gateways: Any, parts: Parts) -> None:
    from test_replicas import redis_database

    state = redis_database(43)
    provider = parts.provider(access_ttl=12)
    server = parts.server(provider.url)
    replicas = [oauth_gateway(gateways, server.url, store_url=state) for _ in range(3)]
    alice = replicas[0].grant("prot", "alice")
    connect(replicas[1], "alice")
    time.sleep(6.5)  # past half the token's life: due for refresh

    async def one(gw: Gateway) -> list[str]:
        async with mcp_client(gw.url("prot"), alice) as client:
            results = await asyncio.gather(*[client.call_tool("whoami", {}) for _ in range(4)])
            return [json.loads(assert_allowed(r))["sub"] for r in results]

    async def all_at_once() -> list[list[str]]:
        return await asyncio.gather(*[one(gw) for gw in replicas])

    subs = run(all_at_once)
    assert all(s == "alice" for batch in subs for s in batch)
    refreshes = provider.log.read_text().count("grant.success grant_type=refresh_token")
    assert refreshes == 1, provider.log.read_text()[-3000:]
    assert all(q["status"] < 400 for q in protected_requests(server) if q["auth"] != "none")


def test_the_dashboard_connects_and_disconnects_an_identity(gateways: Any, parts: Parts, tmp_path: Path) -> None:
    """In headless Chromium: Connect, consent at the authorization server's own pages, back
    on toolgate's callback, connected with its upstream subject; Disconnect (node/dashboard-connections.mjs)."""
    from test_dashboard import chromium

    browser = chromium()
    node = shutil.which("node")
    assert node, "node is not on PATH"
    provider = parts.provider()
    server = parts.server(provider.url)
    gw = oauth_gateway(gateways, server.url)
    gw.grant("prot", "carol")
    admin = json.loads(gw.cli("admin-tokens create", "--name", "dash", "--role", "admin", "--json").stdout.strip().splitlines()[-1])
    env = dict(
        os.environ,
        GATEWAY=gw.base_url or "",
        ADMIN_TOKEN=admin["token"],
        SERVER="prot",
        IDENTITY="carol",
        CHROMIUM=browser,
        SCREENSHOT=str(tmp_path / "connections.png"),
    )
    script = Path(__file__).parent / "node" / "dashboard-connections.mjs"
    proc = subprocess.run([node, str(script)], capture_output=True, text=True, cwd=script.parent, env=env, timeout=120)
    print(proc.stdout)
    assert proc.returncode == 0 and "[connections] PASS" in proc.stdout, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert connections(gw) == []
    admin_records = [r.get("message", "") for r in gw.audit_records("--kind", "admin")]
    assert any("connected to `prot`" in m and "subject carol" in m for m in admin_records), admin_records
    assert any("connection of `carol` to `prot` removed" in m for m in admin_records), admin_records


def test_token_exchange_gives_each_agent_its_own_upstream_token(gateways: Any, parts: Parts, tmp_path: Path) -> None:
    """`auth = "token_exchange"`: the agent's own JWT (verified by [auth.jwt]) is exchanged
    (RFC 8693) at the server's authorization server for an upstream token, with no consent
    step; one exchange per agent token while it lasts; a grant token gets a clear refusal."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    issuer, audience = "https://idp.e2e.example", "toolgate-e2e"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "RS256", "use": "sig"}
    jwks = tmp_path / "agents-jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    provider = parts.provider(exchange_jwks=jwks, exchange_issuer=issuer, exchange_audience=audience)
    server = parts.server(provider.url)
    port = free_port()
    gw = gateways.new(
        [
            # The provider is not the agents' JWT issuer: it is trusted by name.
            {"name": "prot", "policy": "open", "url": server.url, "auth": "token_exchange",
             "authorization_server": provider.url},
            # The same server as toolgate's own sessions reach it (pinned legacy: a 2026-07-28
            # client goes through toolgate's pooled session), and through a virtual server.
            {"name": "held", "policy": "open", "url": server.url, "auth": "token_exchange", "era": "legacy",
             "authorization_server": provider.url},
            # Not trusted by name: an agent's JWT is not sent to an authorization server
            # only the upstream's metadata names.
            {"name": "unnamed", "policy": "open", "url": server.url, "auth": "token_exchange"},
        ],
        {"open": POLICY},
        extra={
            "listen": f"127.0.0.1:{port}",
            "oauth": {"token_key_env": KEY_ENV, "public_url": f"http://127.0.0.1:{port}"},
            "auth": {"jwt": {"issuer": issuer, "audience": audience, "jwks_file": str(jwks)}},
        },
        virtual_servers=[{"name": "v", "policy": "open", "include": [{"server": "held", "prefix": "h_"}]}],
    )
    for who in ("frank@example.com", "grace@example.com"):
        gw.cli("grants create", "--server", "prot", "--label", who.split("@")[0], "--identity", who)
    for server_name in ("held", "v", "unnamed"):
        gw.cli("grants create", "--server", server_name, "--label", f"frank-{server_name}", "--identity", "frank@example.com")

    def agent_jwt(sub: str) -> str:
        now = int(time.time())
        body = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + 300}
        return pyjwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})

    async def calls(token: str) -> list[str]:
        async with mcp_client(gw.url("prot"), token) as client:
            return [json.loads(assert_allowed(await client.call_tool("whoami", {})))["sub"] for _ in range(3)]

    assert run(lambda: calls(agent_jwt("frank@example.com"))) == ["frank@example.com"] * 3
    assert run(lambda: calls(agent_jwt("grace@example.com"))) == ["grace@example.com"] * 3
    log = provider.log.read_text()
    # Each agent token exchanged once (its calls reuse it), and nothing needed consent.
    assert log.count("event token_exchange sub=frank@example.com") == 1, log[-2000:]
    assert log.count("event token_exchange sub=grace@example.com") == 1, log[-2000:]
    assert "event login" not in log
    calls_seen = [r for r in gw.audit_records() if r.get("tool") == "whoami" and r.get("decision")]
    assert {r.get("upstream_sub") for r in calls_seen} == {"frank@example.com", "grace@example.com"}

    # A grant token has no JWT to exchange: refused, saying what to send instead.
    grant = gw.grant("prot", "plain")
    r = initialize(gw, grant)
    assert r.status_code == 403 and "send a JWT" in r.json()["error"]["message"], r.text
    # Nothing to connect for such a server.
    bad = gw.cli("connect", "prot", "--identity", "frank@example.com", check=False)
    assert bad.returncode != 0 and "nothing to connect" in bad.stderr, bad.stderr

    # Through the sessions toolgate holds: the agent's JWT is exchanged for the members'
    # requests too.
    from test_modern_era import MODERN, modern_client

    frank = agent_jwt("frank@example.com")

    async def modern_held() -> str:
        async with modern_client(gw.url("held"), frank, MODERN) as client:
            return json.loads(assert_allowed(await client.call_tool("whoami", {})))["sub"]

    async def virtual() -> str:
        async with mcp_client(gw.url("v"), frank) as client:
            return json.loads(assert_allowed(await client.call_tool("h_whoami", {})))["sub"]

    assert run(modern_held) == "frank@example.com"
    assert run(virtual) == "frank@example.com"

    exchanges = provider.log.read_text().count("event token_exchange")
    r = initialize(gw, frank, "unnamed")
    message = r.json()["error"]["message"]
    assert r.status_code == 503 and "did not issue the agents' JWTs" in message, r.text
    assert f'authorization_server = "{provider.url}"' in message, message
    assert provider.log.read_text().count("event token_exchange") == exchanges, "nothing sent to it"


def test_a_token_the_server_no_longer_accepts_is_a_clear_error_not_its_401(gateways: Any, parts: Parts) -> None:
    """The authorization server forgets every grant (restarted on the same port, as after a
    revocation toolgate did not make): the protected server, which introspects each token,
    answers 401; the agent gets toolgate's error saying what to do, never that 401."""
    from mcp.shared.exceptions import MCPError

    port = free_port()
    provider = parts.provider(token_format="opaque", port=port)
    server = parts.server(provider.url, verify="introspection")
    gw = oauth_gateway(gateways, server.url)
    alice = gw.grant("prot", "alice")
    connect(gw, "alice")

    async def scenario() -> str:
        async with mcp_client(gw.url("prot"), alice) as client:
            assert json.loads(assert_allowed(await client.call_tool("whoami", {})))["sub"] == "alice"
            provider.stop()
            parts.started.append(start_oauth_provider(parts.workdir, token_format="opaque", port=port))
            with pytest.raises(MCPError) as refused:
                await client.call_tool("whoami", {})
            return str(refused.value)

    message = run(scenario)
    assert "refused the token toolgate sent" in message and "toolgate connect prot" in message, message
    assert any(q["status"] == 401 and q["auth"] == "invalid" for q in protected_requests(server))


def test_sessions_toolgate_holds_carry_each_identitys_token(gateways: Any, parts: Parts) -> None:
    """Where toolgate holds the upstream sessions itself, each request still goes with the
    agent identity's own current token: a 2026-07-28 client of the server pinned to the
    legacy era (toolgate's pooled session per grant), and a virtual server including it."""
    from test_modern_era import MODERN, modern_client

    provider = parts.provider()
    server = parts.server(provider.url)
    port = free_port()
    gw = gateways.new(
        [{"name": "prot", "policy": "open", "url": server.url, "auth": "oauth", "era": "legacy"}],
        {"open": POLICY},
        extra={"listen": f"127.0.0.1:{port}", "oauth": {"token_key_env": KEY_ENV, "public_url": f"http://127.0.0.1:{port}"}},
        virtual_servers=[{"name": "v", "policy": "open", "include": [{"server": "prot", "prefix": "p_"}]}],
    )
    alice, bob = gw.grant("prot", "alice"), gw.grant("prot", "bob")
    alice_v = gw.cli("grants create", "--server", "v", "--label", "alice-v", "--identity", "alice", "--json").stdout
    alice_v = json.loads(alice_v.strip().splitlines()[-1])["token"]
    connect(gw, "alice")
    connect(gw, "bob")

    async def modern(token: str) -> str:
        async with modern_client(gw.url("prot"), token, MODERN) as client:
            return json.loads(assert_allowed(await client.call_tool("whoami", {})))["sub"]

    assert run(lambda: modern(alice)) == "alice"
    assert run(lambda: modern(bob)) == "bob"

    async def through_virtual() -> str:
        async with mcp_client(gw.url("v"), alice_v) as client:
            return json.loads(assert_allowed(await client.call_tool("p_whoami", {})))["sub"]

    assert run(through_virtual) == "alice"
    calls = [r for r in gw.audit_records() if r.get("method") == "tools/call" and r.get("decision")]
    assert {(r["server"], r["identity"]) for r in calls} == {("prot", "alice"), ("prot", "bob"), ("v", "alice")}
    # Each record names the upstream identity used, through the virtual server too.
    assert {(r["identity"], r.get("upstream_sub")) for r in calls} == {("alice", "alice"), ("bob", "bob")}, calls
    assert all(r.get("upstream_client_id") for r in calls), calls
    forwarded = [q for q in protected_requests(server) if q["auth"] != "none"]
    assert forwarded and all(q["auth"] == "ok" for q in forwarded), forwarded


def _test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "toolgate e2e CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _tls_front(port: int, backend: str, cert: Path, key: Path) -> Any:
    """An https server on 127.0.0.1:`port` passing GET requests to `backend` (toolgate on
    plain http), as a TLS-terminating proxy in front of a gateway does."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            r = httpx.get(backend + self.path, timeout=30)
            self.send_response(r.status_code)
            for name in ("content-type", "cache-control"):
                if name in r.headers:
                    self.send_header(name, r.headers[name])
            self.send_header("content-length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Forward)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_client_id_metadata_document_when_the_server_takes_one(
    gateways: Any, parts: Parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An authorization server that takes Client ID Metadata Documents gets toolgate's own
    (served at {public_url}/oauth/client-metadata.json, https behind a TLS front): no
    registration; the client id the server sees is that URL."""
    ca, cert, key = _test_ca(tmp_path)
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(ca))
    provider = parts.provider(cimd=True)
    server = parts.server(provider.url)
    tls_port, gw_port = free_port(), free_port()
    public = f"https://127.0.0.1:{tls_port}"
    gw = gateways.new(
        [{"name": "prot", "policy": "open", "url": server.url, "auth": "oauth"}],
        {"open": POLICY},
        extra={"listen": f"127.0.0.1:{gw_port}", "oauth": {"token_key_env": KEY_ENV, "public_url": public}},
    )
    front = _tls_front(tls_port, gw.base_url or "", cert, key)
    try:
        document_url = f"{public}/oauth/client-metadata.json"
        doc = httpx.get(document_url, verify=str(ca), timeout=10).json()
        assert doc["client_id"] == document_url and doc["redirect_uris"] == [f"{public}/oauth/callback"], doc
        alice = gw.grant("prot", "alice")
        out = gw.cli("connect", "prot", "--identity", "alice", "--json").stdout
        url = json.loads(out.strip().splitlines()[-1])["authorization_url"]
        assert parse_qs(urlsplit(url).query)["client_id"] == [document_url], url
        callback = drive_consent(url, "alice")
        assert callback.startswith(f"{public}/oauth/callback?"), callback
        r = httpx.get(callback, verify=str(ca), timeout=30)
        assert r.status_code == 200 and "Connected" in r.text, r.text
        seen = run(lambda: whoami(gw, alice))
        assert seen["sub"] == "alice" and seen["client_id"] == document_url, seen
        assert "event registration" not in provider.log.read_text()
    finally:
        front.shutdown()
