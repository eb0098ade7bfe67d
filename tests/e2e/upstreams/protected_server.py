"""A protected MCP server for toolgate's end-to-end tests (issue 23), on the official Python
SDK's server-side auth (mcp 2.3.0: `MCPServer` with a `TokenVerifier` and `AuthSettings`).

It answers only bearer tokens that its authorization server (tests/e2e/node/oauth-provider.mjs)
issued for this server's own URL, serves RFC 9728 protected resource metadata pointing at that
server, and has two tools: `whoami` (the token's `sub`, `client_id`, scopes, resource) and
`echo`.

    python protected_server.py --issuer http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
        [--verify jwt|introspection] [--scopes "mcp:tools"] [--introspector ID:SECRET] [--log FILE]
        [--advertise-issuer URL] [--advertise-resource URL]

With `--port 0` it picks a free port. Once it accepts connections it prints
`protected-server: listening on http://HOST:PORT/mcp`: that URL is its MCP endpoint and its
resource identifier (RFC 8707), the `aud` its tokens must carry.

- Without a valid token: 401 with `WWW-Authenticate: Bearer error="invalid_token",
  error_description="Authentication required", resource_metadata="http://HOST:PORT/.well-known/oauth-protected-resource/mcp"`
  (the SDK's RequireAuthMiddleware). A token without a required scope: 403 `insufficient_scope`.
- Metadata (RFC 9728) at `/.well-known/oauth-protected-resource/mcp` (the SDK's route, path
  inserted per RFC 9728 section 3.1) and the same document at `/.well-known/oauth-protected-resource`:
  `resource`, `authorization_servers: [ISSUER]`, `scopes_supported`, `bearer_methods_supported`.
- `--verify jwt` (default): the token must be an RFC 9068 JWT (`typ: at+jwt`, RS256) signed by
  a key of the issuer's JWKS (`jwks_uri` of its RFC 8414 metadata, fetched at start and again
  for an unknown `kid`), with `iss` = the issuer, `aud` = this server's URL, `exp` in the future
  (no leeway), `sub` and `client_id`.
- `--verify introspection`: each request's token is introspected (RFC 7662) at the issuer as the
  confidential client `--introspector` (default `protected-server:protected-server-secret`, which
  oauth-provider.mjs registers); it must be `active` with `aud` = this server's URL. A revoked
  token is refused at once. Needs the provider's `--format opaque` (it will not introspect JWTs).
- `--advertise-issuer URL` / `--advertise-resource URL` (bad-input tests): the metadata
  names this authorization server / this resource instead of the real ones (tokens are still
  verified against `--issuer` and this server's own URL).
- `--log FILE` appends one JSON line per HTTP request: `{"method", "path", "status", "auth":
  "none"|"ok"|"invalid", "sub", "client_id", "token_sha256"}` (the first 16 hex digits of the
  token's SHA-256, never the token).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from typing import Any

import anyio
import httpx
import jwt
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

_LOG_LOCK = threading.Lock()


def _log(line: str) -> None:
    print(f"protected-server: {line}", flush=True)


def _audience_matches(aud: Any, resource: str) -> bool:
    values = aud if isinstance(aud, list) else [aud]
    return any(isinstance(v, str) and v.rstrip("/") == resource.rstrip("/") for v in values)


class JwtVerifier:
    """RFC 9068 access tokens checked against the issuer's JWKS."""

    def __init__(self, issuer: str, resource: str, metadata: dict[str, Any]) -> None:
        self.issuer = issuer
        self.resource = resource
        self.jwks_uri = metadata["jwks_uri"]
        self.keys: dict[str, Any] = {}
        self._load(httpx.get(self.jwks_uri, timeout=10).json())

    def _load(self, jwks: dict[str, Any]) -> None:
        self.keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys if key.key_id}

    async def _key(self, kid: str | None) -> Any:
        if kid not in self.keys:  # a rotated key: fetch the set again, once
            async with httpx.AsyncClient(timeout=10) as http:
                self._load((await http.get(self.jwks_uri)).json())
        return self.keys.get(kid)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                raise jwt.InvalidTokenError(f"typ {header.get('typ')!r} is not at+jwt")
            key = await self._key(header.get("kid"))
            if key is None:
                raise jwt.InvalidTokenError(f"unknown kid {header.get('kid')!r}")
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.resource,
                issuer=self.issuer,
                leeway=0,
                options={"require": ["exp", "iat", "sub", "client_id", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            _log(f"refused a token: {exc}")
            return None
        return AccessToken(
            token=token,
            client_id=claims["client_id"],
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=claims["sub"],
            claims=claims,
        )


class IntrospectionVerifier:
    """RFC 7662 introspection at the issuer, on every request (so revocation shows at once)."""

    def __init__(self, issuer: str, resource: str, metadata: dict[str, Any], client: tuple[str, str]) -> None:
        self.issuer = issuer
        self.resource = resource
        self.endpoint = metadata["introspection_endpoint"]
        self.client = client

    async def verify_token(self, token: str) -> AccessToken | None:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(self.endpoint, data={"token": token}, auth=self.client)
        if response.status_code != 200:
            _log(f"introspection answered {response.status_code}: {response.text[:200]}")
            return None
        body = response.json()
        if not body.get("active"):
            _log("refused a token: not active")
            return None
        if body.get("iss", self.issuer) != self.issuer or not _audience_matches(body.get("aud"), self.resource):
            _log(f"refused a token: iss {body.get('iss')!r} aud {body.get('aud')!r}")
            return None
        if body.get("token_type") not in (None, "Bearer"):
            _log(f"refused a token: token_type {body.get('token_type')!r}")
            return None
        return AccessToken(
            token=token,
            client_id=body["client_id"],
            scopes=str(body.get("scope", "")).split(),
            expires_at=body.get("exp"),
            resource=self.resource,
            subject=body.get("sub"),
            claims=body,
        )


class _RequestLog:
    """ASGI wrapper: one JSON line per HTTP request, written when the answer starts (after the
    SDK's authentication middleware has put the verified user in the scope)."""

    def __init__(self, app: Any, path: str | None) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.path:
            await self.app(scope, receive, send)
            return

        async def send_and_log(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self._write(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_and_log)

    def _write(self, scope: dict[str, Any], status: int) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        authorization = headers.get("authorization", "")
        bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
        user = scope.get("user")
        record: dict[str, Any] = {
            "time": time.time(),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "auth": "none" if bearer is None else "invalid",
            "sub": None,
            "client_id": None,
            "token_sha256": hashlib.sha256(bearer.encode()).hexdigest()[:16] if bearer else None,
        }
        if isinstance(user, AuthenticatedUser):
            record.update(auth="ok", sub=user.access_token.subject, client_id=user.access_token.client_id)
        assert self.path is not None
        with _LOG_LOCK, open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


class _MetadataOverride:
    """ASGI wrapper: serve `document` at both RFC 9728 paths, in place of the SDK's route."""

    def __init__(self, app: Any, document: dict[str, Any]) -> None:
        self.app = app
        self.body = json.dumps(document).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/.well-known/oauth-protected-resource"):
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)


def metadata_document(args: argparse.Namespace, resource: str) -> dict[str, Any]:
    """The RFC 9728 document this server publishes (as the SDK writes it)."""
    document: dict[str, Any] = {
        "resource": args.advertise_resource or resource,
        "authorization_servers": [(args.advertise_issuer or args.issuer).rstrip("/")],
        "bearer_methods_supported": ["header"],
    }
    if args.scopes.split():
        document["scopes_supported"] = args.scopes.split()
    return document


def build(args: argparse.Namespace, resource: str) -> MCPServer:
    issuer = args.issuer.rstrip("/")
    metadata = httpx.get(issuer + "/.well-known/oauth-authorization-server", timeout=10).json()
    if metadata.get("issuer") != issuer:
        raise SystemExit(f"protected-server: metadata names issuer {metadata.get('issuer')!r}, not {issuer!r}")
    if args.verify == "jwt":
        verifier: Any = JwtVerifier(issuer, resource, metadata)
    else:
        client_id, _, secret = args.introspector.partition(":")
        verifier = IntrospectionVerifier(issuer, resource, metadata, (client_id, secret))
    scopes = args.scopes.split() or None
    server = MCPServer(
        name="toolgate-e2e-protected",
        instructions="A protected test upstream: whoami tells who the token belongs to.",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=scopes,
            validate_token_resource=True,
        ),
    )

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who the bearer token of this call belongs to: its sub, client_id, scopes, resource."""
        token = get_access_token()
        assert token is not None, "no verified token on an authenticated route"
        return {
            "sub": token.subject,
            "client_id": token.client_id,
            "scopes": token.scopes,
            "resource": token.resource,
            "expires_at": token.expires_at,
        }

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    document = metadata_document(args, resource)

    # RFC 9728 at the root too, beside the SDK's path-inserted route: some clients try it.
    @server.custom_route("/.well-known/oauth-protected-resource", methods=["GET"])
    async def root_metadata(_request: Request) -> Response:
        return JSONResponse(document)

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--issuer", required=True, help="the authorization server's issuer URL")
    parser.add_argument("--verify", choices=["jwt", "introspection"], default="jwt")
    parser.add_argument("--scopes", default="mcp:tools", help="required scopes, space-separated ('' for none)")
    parser.add_argument("--introspector", default="protected-server:protected-server-secret")
    parser.add_argument("--log", default=None, help="append one JSON line per HTTP request here")
    parser.add_argument("--advertise-issuer", default=None, help="name this authorization server in the metadata")
    parser.add_argument("--advertise-resource", default=None, help="name this resource in the metadata")
    args = parser.parse_args()

    # Bind first, so a port of 0 becomes a real one: the resource URL names it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    resource = f"http://{host}:{port}/mcp"

    server = build(args, resource)
    app = server.streamable_http_app(streamable_http_path="/mcp", host=args.host)
    if args.advertise_issuer or args.advertise_resource:
        app = _MetadataOverride(app, metadata_document(args, resource))
    config = uvicorn.Config(_RequestLog(app, args.log), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def announce_when_started() -> None:
        while not uv.started:
            await anyio.sleep(0.02)
        _log(f"listening on {resource}")

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce_when_started)
            await uv.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
