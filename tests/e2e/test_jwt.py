"""JWT identities: with `[auth.jwt]`, an agent may present a JWT from the configured issuer
(keys the test mints itself: an RSA key and its JWKS file). The identity claim picks the
grant bound to that identity. Expired, wrong-audience, foreign-key and unsigned tokens are
refused with 401 pointing at the RFC 9728 protected resource metadata."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from helpers import INITIALIZE, MCP_HEADERS, assert_allowed, demo_server, mcp_client, run

ISSUER = "https://issuer.e2e.example"
AUDIENCE = "toolgate-e2e"
POLICY = {"version": "1", "default": "deny", "tools": {"list_patients": {}}}


def keypair(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return key, public


def token(key: Any, kid: str, sub: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300} | claims
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def post(url: str, bearer: str) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {bearer}"), timeout=30)


def test_jwt_identities(gateways: Any, tmp_path: Path) -> None:
    key, public = keypair("k1")
    other, _ = keypair("k2")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    extra = {"auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)}}}
    gw = gateways.new([demo_server("demo", "p")], {"p": POLICY}, extra=extra)
    gw.cli("grants create", "--server", "demo", "--label", "alice-jwt", "--identity", "alice@example.com")

    alice = token(key, "k1", "alice@example.com")

    async def as_alice() -> None:
        async with mcp_client(gw.url("demo"), alice) as client:
            assert_allowed(await client.call_tool("list_patients", {"limit": 1}))

    run(as_alice)
    calls = [r for r in gw.audit_records("--kind", "call") if r.get("tool") == "list_patients"]
    assert calls and calls[0]["identity"] == "alice@example.com" and calls[0]["grant_label"] == "alice-jwt"

    bob = post(gw.url("demo"), token(key, "k1", "bob@example.com"))
    assert bob.status_code == 403 and "bob@example.com" in bob.json()["error"]["message"], bob.text

    metadata_url = gw.base_url + "/.well-known/oauth-protected-resource/mcp/demo"
    for bad, why in [
        (token(key, "k1", "alice@example.com", exp=int(time.time()) - 3600), "expired"),
        (token(key, "k1", "alice@example.com", nbf=int(time.time()) + 3600), "not valid yet"),
        (token(key, "k1", "alice@example.com", aud="someone-else"), "audience"),
        (token(key, "k1", "alice@example.com", iss="https://evil.example"), "issuer"),
        (token(other, "k2", "alice@example.com"), "foreign key"),
        (token(other, "k1", "alice@example.com"), "wrong signature"),
        (jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice@example.com", "exp": int(time.time()) + 60},
                    "secret-0123456789abcdef0123456789", algorithm="HS256"), "symmetric"),
    ]:
        r = post(gw.url("demo"), bad)
        assert r.status_code == 401, f"{why}: {r.status_code} {r.text}"
        challenge = r.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge and f'resource_metadata="{metadata_url}"' in challenge, (why, challenge)

    meta = httpx.get(metadata_url, timeout=10).json()
    assert meta["authorization_servers"] == [ISSUER]
    assert meta["resource"] == gw.url("demo")
    assert httpx.get(gw.base_url + "/.well-known/oauth-protected-resource/mcp/nope", timeout=10).status_code == 404
