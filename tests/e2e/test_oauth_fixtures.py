"""The real OAuth parts of issue 23, end to end WITHOUT toolgate: the authorization server
(npm `oidc-provider`, node/oauth-provider.mjs), the protected MCP server (Python SDK
server-side auth, upstreams/protected_server.py) and the reference client (oauth_fixtures.py)
with the Python SDK client. Proves the fixtures before the gateway tests build on them:
discovery from the 401, dynamic registration, PKCE (S256 required), the consent step driven by
HTTP for two logins, the code exchange with `resource`, each login's `sub` seen by the server,
refresh with rotation and reuse detection, expiry, revocation, introspection, token exchange."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from helpers import INITIALIZE, MCP_HEADERS, free_port, mcp_client, result_text, run
from oauth_fixtures import (
    Parts,
    authorization_url,
    authorize,
    client_auth,
    discover,
    drive_consent,
    exchange_code,
    introspect,
    jwt_claims,
    pkce_pair,
    protected_requests,
    refresh,
    register_client,
    revoke,
    set_token_delay,
    token_hash,
    token_request,
)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def status_with(url: str, token: str) -> int:
    """The status of an `initialize` POST with this bearer token."""
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=10).status_code


def whoami(url: str, token: str) -> dict[str, Any]:
    """`whoami` through the Python SDK client (mcp 2.3.0) with this bearer token; also `echo`."""

    async def call() -> dict[str, Any]:
        async with mcp_client(url, token) as client:
            echoed = await client.call_tool("echo", {"text": "through the SDK"})
            assert result_text(echoed) == "through the SDK", result_text(echoed)
            return json.loads(result_text(await client.call_tool("whoami", {})))

    return run(call, timeout=30)


def test_discovery_pkce_two_logins_refresh_revocation(parts: Parts) -> None:
    access_ttl = 5
    provider = parts.provider(access_ttl=access_ttl)
    server = parts.server(provider.url)
    resource = server.url

    # Discovery from the 401: WWW-Authenticate -> RFC 9728 metadata -> RFC 8414 metadata.
    found = discover(resource)
    assert found.resource_metadata_url == resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    assert found.resource_metadata["resource"] == resource
    assert found.resource_metadata["authorization_servers"] == [provider.url]
    assert found.resource_metadata["scopes_supported"] == ["mcp:tools"]
    root = httpx.get(resource.replace("/mcp", "/.well-known/oauth-protected-resource"), timeout=10).json()
    assert root["resource"] == resource and root["authorization_servers"] == [provider.url]
    metadata = found.metadata
    assert found.issuer == provider.url
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    for endpoint in ("registration", "revocation", "introspection", "token", "authorization"):
        assert metadata[f"{endpoint}_endpoint"].startswith(provider.url + "/"), endpoint
    assert metadata["authorization_response_iss_parameter_supported"] is True

    # Dynamic registration (RFC 7591), a confidential client as a gateway would be.
    redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/callback"
    client = register_client(metadata, [redirect_uri])
    assert client["client_secret"] and client["token_endpoint_auth_method"] == "client_secret_basic"
    client_id = client["client_id"]

    # PKCE is required, S256 only.
    _, challenge = pkce_pair()
    no_pkce = authorization_url(metadata, client_id, redirect_uri, resource, challenge, "s1").replace(
        f"&code_challenge={challenge}&code_challenge_method=S256", ""
    )
    refused = parse_qs(urlsplit(drive_consent(no_pkce, "mallory")).query)
    assert refused["error"] == ["invalid_request"] and "PKCE" in refused["error_description"][0]
    plain = authorization_url(metadata, client_id, redirect_uri, resource, challenge, "s2").replace("S256", "plain")
    assert parse_qs(urlsplit(drive_consent(plain, "mallory")).query)["error"] == ["invalid_request"]
    # Refusing at the consent page sends the client access_denied.
    denied = drive_consent(
        authorization_url(metadata, client_id, redirect_uri, resource, challenge, "s3"), "x", approve=False
    )
    assert parse_qs(urlsplit(denied).query)["error"] == ["access_denied"]

    # Two logins, each its own code and token set; the code exchanged with `resource`.
    tokens: dict[str, dict[str, Any]] = {}
    for login in ("alice", "bob"):
        authz = authorize(provider.url, client_id, redirect_uri, login, resource)
        # A wrong PKCE verifier is refused (and leaves the code unused).
        wrong = exchange_code(metadata, client, replace(authz, code_verifier="x" * 43), resource)
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
        response = exchange_code(metadata, client, authz, resource)
        assert response.status_code == 200, response.text
        tokens[login] = response.json()
        assert tokens[login]["token_type"] == "Bearer" and tokens[login]["expires_in"] == access_ttl
        assert tokens[login]["refresh_token"] and tokens[login]["scope"] == "mcp:tools"
        claims = jwt_claims(tokens[login]["access_token"])
        assert claims["sub"] == login and claims["aud"] == resource and claims["client_id"] == client_id
        assert claims["iss"] == provider.url and claims["exp"] - claims["iat"] == access_ttl

    # A replayed code is refused, and what the code gave is revoked with it.
    carol = authorize(provider.url, client_id, redirect_uri, "carol", resource)
    carol_tokens = exchange_code(metadata, client, carol, resource).json()
    replay = exchange_code(metadata, client, carol, resource)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    assert refresh(metadata, client, carol_tokens["refresh_token"]).json()["error"] == "invalid_grant"

    # The Python SDK client with each token: the server sees each login's subject.
    for login in ("alice", "bob"):
        seen = whoami(resource, tokens[login]["access_token"])
        assert seen["sub"] == login and seen["client_id"] == client_id, seen
        assert seen["resource"] == resource and seen["scopes"] == ["mcp:tools"], seen
    hashes = {r["token_sha256"]: r["sub"] for r in protected_requests(server) if r["auth"] == "ok"}
    assert hashes[token_hash(tokens["alice"]["access_token"])] == "alice"
    assert hashes[token_hash(tokens["bob"]["access_token"])] == "bob"

    # Refresh: a new access token and a rotated refresh token (no `resource` needed: the granted one).
    first = tokens["alice"]
    renewed = refresh(metadata, client, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert jwt_claims(second["access_token"])["aud"] == resource
    assert whoami(resource, second["access_token"])["sub"] == "alice"

    # Revocation (RFC 7009): a refresh token is revocable and then refused; a JWT access token is
    # not revocable at this provider: it stays valid at a JWT-verifying server until its `exp`.
    bob = tokens["bob"]
    assert revoke(metadata, client, bob["refresh_token"], "refresh_token").status_code == 200
    assert refresh(metadata, client, bob["refresh_token"]).json()["error"] == "invalid_grant"
    jwt_revoke = revoke(metadata, client, bob["access_token"])
    assert jwt_revoke.status_code == 400 and jwt_revoke.json()["error"] == "unsupported_token_type"
    assert status_with(resource, bob["access_token"]) == 200

    # A token for another resource, a forged JWT, garbage: refused.
    other = f"http://127.0.0.1:{free_port()}/mcp"
    dave = authorize(provider.url, client_id, redirect_uri, "dave", other)
    foreign = exchange_code(metadata, client, dave, other).json()["access_token"]
    assert jwt_claims(foreign)["aud"] == other and status_with(resource, foreign) == 401
    forged = jwt.encode(
        {**jwt_claims(foreign), "aud": resource}, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    assert status_with(resource, forged) == 401
    assert status_with(resource, "not-a-token") == 401

    # Expiry: once `exp` has passed the server refuses the token (no leeway).
    latest_exp = max(jwt_claims(t["access_token"])["exp"] for t in (first, bob))
    time.sleep(max(0.0, latest_exp - time.time()) + 1.1)
    assert status_with(resource, first["access_token"]) == 401
    assert status_with(resource, bob["access_token"]) == 401

    # A rotated refresh token used again: refused, and the whole grant is revoked (reuse
    # detection), so the newest refresh token of that grant is dead too.
    third = refresh(metadata, client, second["refresh_token"])
    assert third.status_code == 200, third.text
    reused = refresh(metadata, client, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text
    assert refresh(metadata, client, third.json()["refresh_token"]).json()["error"] == "invalid_grant"
    assert status_with(resource, third.json()["access_token"]) == 200  # a JWT: valid until `exp`
    refusals = [r for r in protected_requests(server) if r["status"] == 401 and r["auth"] == "invalid"]
    assert {token_hash(first["access_token"]), token_hash(bob["access_token"])} <= {r["token_sha256"] for r in refusals}


def test_introspection_sees_revocation_at_once(parts: Parts) -> None:
    provider = parts.provider(token_format="opaque")
    server = parts.server(provider.url, verify="introspection")
    found = discover(server.url)
    redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/callback"
    client = register_client(found.metadata, [redirect_uri], auth_method="none")  # a public client
    assert "client_secret" not in client

    authz = authorize(provider.url, client["client_id"], redirect_uri, "erin", server.url)
    tokens = exchange_code(found.metadata, client, authz, server.url).json()
    assert tokens["access_token"].count(".") == 0, "expected an opaque access token"
    info = introspect(found.metadata, tokens["access_token"])
    assert info["active"] and info["sub"] == "erin" and info["aud"] == server.url, info
    assert whoami(server.url, tokens["access_token"])["sub"] == "erin"

    # Revoking the access token: refused at once; the grant's refresh token goes with it.
    assert revoke(found.metadata, client, tokens["access_token"]).status_code == 200
    assert status_with(server.url, tokens["access_token"]) == 401
    assert introspect(found.metadata, tokens["access_token"]) == {"active": False}
    assert refresh(found.metadata, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_token_exchange(parts: Parts, tmp_path: Path) -> None:
    issuer = "https://issuer.e2e.example"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "RS256", "use": "sig"}
    jwks = tmp_path / "agent-jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    provider = parts.provider(exchange_jwks=jwks, exchange_issuer=issuer, exchange_audience="toolgate-e2e")
    server = parts.server(provider.url)
    metadata = discover(server.url).metadata
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]
    client = register_client(metadata, [f"http://127.0.0.1:{free_port()}/cb"], grant_types=(TOKEN_EXCHANGE,))

    def exchange(**claims: Any) -> httpx.Response:
        now = int(time.time())
        body = {"iss": issuer, "aud": "toolgate-e2e", "sub": "frank@example.com", "iat": now, "exp": now + 60} | claims
        subject = jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "resource": server.url,
        }
        return token_request(metadata, client, form)

    response = exchange()
    assert response.status_code == 200, response.text
    issued = response.json()
    assert issued["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert "refresh_token" not in issued
    seen = whoami(server.url, issued["access_token"])
    assert seen["sub"] == "frank@example.com" and seen["client_id"] == client["client_id"], seen
    for bad in ({"aud": "someone-else"}, {"iss": "https://evil.example"}, {"exp": int(time.time()) - 5}):
        refused = exchange(**bad)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", (bad, refused.text)


def test_bad_input_controls(parts: Parts) -> None:
    """The knobs for the gateway's bad-input tests: metadata naming another origin, and a token
    endpoint that hangs."""
    provider = parts.provider()
    elsewhere = f"http://127.0.0.1:{free_port()}"
    server = parts.server(provider.url, advertise_issuer=elsewhere, advertise_resource=elsewhere + "/mcp")
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        document = httpx.get(server.url.replace("/mcp", path), timeout=10).json()
        assert document["authorization_servers"] == [elsewhere] and document["resource"] == elsewhere + "/mcp"

    metadata = discover(parts.server(provider.url).url).metadata
    client = register_client(metadata, [f"http://127.0.0.1:{free_port()}/cb"])
    form = {"grant_type": "refresh_token", "refresh_token": "none-such"}
    set_token_delay(provider.url, 3)
    with pytest.raises(httpx.ReadTimeout):
        fields, auth = client_auth(client)
        httpx.post(metadata["token_endpoint"], data=form | fields, auth=auth, timeout=0.5)
    set_token_delay(provider.url, 0)
    answered = token_request(metadata, client, form)
    assert answered.status_code == 400 and answered.json()["error"] == "invalid_grant", answered.text
