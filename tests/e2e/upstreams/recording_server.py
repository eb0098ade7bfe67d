"""A Streamable HTTP upstream for toolgate's end-to-end tests, on the official Python SDK.

It serves a few tools through `MCPServer` (mcp 2.3.0) and records the headers of every HTTP
request it receives, so a test can prove what toolgate forwards upstream (a configured
upstream header) and what it never forwards (the agent's own `Authorization`).

    python recording_server.py --port 0 [--host 127.0.0.1] [--log FILE] [--notes FILE] [--json-response] [--stateless] [--legacy-sse] [--modern-only]

With `--port 0` it picks a free port. Once it accepts connections it prints one line on
stdout, `recording-server: listening on http://HOST:PORT/mcp`, which the fixtures wait for.
`--log FILE` appends one JSON line per HTTP request: `{"method", "path", "headers"}` (header
names lower-cased, as received). `--notes FILE` is where the `note` tool writes each nonce it
receives, on disk before it answers. `--modern-only` refuses `initialize` (HTTP 404 with
-32601, as that era answers a removed method), so it serves only the 2026-07-28 era, as a server that dropped the legacy
handshake would. In that mode it also serves four tools for the era tests
(tests/e2e/test_era_matrix.py): `ask_name` and `ask_model` (ask for input the 2026-07-28 way:
an `input_required` result with an elicitation, or a sampling, request under the key `answer`
and a `requestState`; the retry with `inputResponses` gets the final result), `change_tools` (adds or
removes the tool `dynamic_tool` and announces `notifications/tools/list_changed` on
`subscriptions/listen` streams) and `wait_for_cancel` (waits, and prints
`recording-server: cancelled NONCE` when its request is cancelled, `... finished NONCE` when
it ran to the end).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)

server = MCPServer(
    name="toolgate-e2e-recording",
    instructions="A test upstream that records request headers.",
)

# Filled in by main(): where each HTTP request's headers are appended.
_LOG_PATH: str | None = None
_LOG_LOCK = threading.Lock()
# Filled in by main(): where `note` appends each nonce (flushed to disk before it answers).
_NOTES_PATH: str | None = None


@server.tool()
def note(nonce: str) -> str:
    """Write the nonce to the notes file (on disk before answering), so a test knows every
    call that reached this server."""
    if _NOTES_PATH is not None:
        with _LOG_LOCK, open(_NOTES_PATH, "a", encoding="utf-8") as notes:
            notes.write(nonce + "\n")
            notes.flush()
            os.fsync(notes.fileno())
    return "noted " + nonce


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def delete_everything(confirm: bool = False) -> str:
    """Pretend to delete every record (a destructive tool for policies to deny)."""
    return "deleted everything" if confirm else "nothing deleted (confirm was false)"


@server.tool()
def shutdown_server() -> str:
    """Pretend to shut the server down (a tool for policies to hide)."""
    return "not really shutting down"


@server.tool()
def server_time() -> str:
    """The server's clock (a harmless tool that test policies leave unlisted)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@server.tool()
async def slow_progress(steps: int = 3, delay: float = 0.05, ctx: Context | None = None) -> str:
    """Work in `steps` steps, reporting progress after each one."""
    for done in range(1, steps + 1):
        await anyio.sleep(delay)
        if ctx is not None:
            await ctx.report_progress(done, steps, f"step {done}/{steps}")
    return f"done after {steps} steps"


@server.tool()
def seen_headers(ctx: Context) -> dict[str, Any]:
    """The HTTP headers of the request that called this tool (names lower-cased)."""
    headers = ctx.headers
    return {"headers": {k.lower(): v for k, v in headers.items()} if headers is not None else None}


# The tools of `--modern-only` (registered by main() in that mode only, so the other modes
# list what they always did).

NEEDS_INPUT_STATE = "recording-server-asked"


def _needs_input(kind: str, ctx: Context) -> str | InputRequiredResult:
    """Ask for input the 2026-07-28 way: an `input_required` result with one request under the
    key `answer` (`kind` "elicitation": a form asking a name; "sampling": a question for the
    client's model) and a `requestState`. The retry carrying the answer and that state gets
    "Hello, NAME!" or "The model said: TEXT"."""
    answer = (ctx.input_responses or {}).get("answer")
    if answer is None or ctx.request_state != f"{NEEDS_INPUT_STATE}:{kind}":
        if kind == "sampling":
            question = TextContent(type="text", text="What is the capital of France?")
            message = SamplingMessage(role="user", content=question)
            request: ElicitRequest | CreateMessageRequest = CreateMessageRequest(
                params=CreateMessageRequestParams(messages=[message], max_tokens=50)
            )
        else:
            schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
            form = ElicitRequestFormParams(message="What is your name?", requested_schema=schema)
            request = ElicitRequest(params=form)
        return InputRequiredResult(input_requests={"answer": request}, request_state=f"{NEEDS_INPUT_STATE}:{kind}")
    if kind == "sampling":
        return f"The model said: {getattr(getattr(answer, 'content', None), 'text', '')}"
    content = getattr(answer, "content", None) or {}
    return f"Hello, {content.get('name', '') if isinstance(content, dict) else ''}!"


async def ask_name(ctx: Context) -> str | InputRequiredResult:
    """Ask the user's name (elicitation) through an `input_required` result; "Hello, NAME!"."""
    return _needs_input("elicitation", ctx)


async def ask_model(ctx: Context) -> str | InputRequiredResult:
    """Ask the client's model (sampling) through an `input_required` result; "The model said: TEXT"."""
    return _needs_input("sampling", ctx)


def dynamic_tool() -> str:
    """Comes and goes with `change_tools`."""
    return "dynamic"


async def change_tools(ctx: Context) -> str:
    """Add the tool `dynamic_tool`, or remove it if it is there, and announce
    `notifications/tools/list_changed` (on `subscriptions/listen` streams)."""
    if server._tool_manager.get_tool("dynamic_tool") is None:  # noqa: SLF001 (no public lookup)
        server.add_tool(dynamic_tool, name="dynamic_tool")
        change = "added"
    else:
        server.remove_tool("dynamic_tool")
        change = "removed"
    await ctx.notify_tools_changed()
    return f"tool list changed: dynamic_tool {change}"


async def wait_for_cancel(nonce: str, seconds: float = 10.0) -> str:
    """Wait `seconds`; print `recording-server: cancelled NONCE` on stdout if the request is
    cancelled first (the client went away), `recording-server: finished NONCE` otherwise."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        print(f"recording-server: cancelled {nonce}", flush=True)
        raise
    print(f"recording-server: finished {nonce}", flush=True)
    return f"waited {seconds} s"


def _add_modern_only_tools() -> None:
    server.add_tool(ask_name)
    server.add_tool(ask_model)
    server.add_tool(change_tools)
    server.add_tool(wait_for_cancel)


class _RecordHeaders:
    """ASGI middleware: append every HTTP request's method, path and headers to the log."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and _LOG_PATH is not None:
            headers: dict[str, str] = {}
            for raw_name, raw_value in scope.get("headers", []):
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            line = json.dumps({"method": scope.get("method"), "path": scope.get("path"), "headers": headers})
            with _LOG_LOCK, open(_LOG_PATH, "a", encoding="utf-8") as log:
                log.write(line + "\n")
        await self.app(scope, receive, send)


class _ModernOnly:
    """ASGI middleware: refuse `initialize` (the legacy handshake); everything else passes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            if scope.get("type") == "http" and scope.get("method") in ("GET", "DELETE"):
                await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"POST")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("method") == "initialize":
            # What a 2026-07-28 server answers for a method that era removed.
            error = {"jsonrpc": "2.0", "id": request.get("id"),
                     "error": {"code": -32601, "message": "initialize is not served: this server speaks 2026-07-28 only"}}
            payload = json.dumps(error).encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": payload})
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def main() -> None:
    global _LOG_PATH, _NOTES_PATH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None, help="append each HTTP request's headers here (JSON lines)")
    parser.add_argument("--json-response", action="store_true", help="answer with JSON instead of SSE")
    parser.add_argument("--stateless", action="store_true", help="no sessions")
    parser.add_argument("--notes", default=None, help="where the `note` tool appends its nonces")
    parser.add_argument("--legacy-sse", action="store_true", help="serve the legacy HTTP+SSE transport (GET /sse, POST /messages/)")
    parser.add_argument("--modern-only", action="store_true", help="refuse initialize: serve the 2026-07-28 era only")
    args = parser.parse_args()
    _LOG_PATH = args.log
    _NOTES_PATH = args.notes

    # Bind first, so a port of 0 becomes a real one that we can print and uvicorn can use.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]

    if args.modern_only:
        _add_modern_only_tools()
    if args.legacy_sse:
        app = server.sse_app(host=args.host)
        path = "/sse"
    else:
        app = server.streamable_http_app(
            streamable_http_path="/mcp",
            json_response=args.json_response,
            stateless_http=args.stateless,
            host=args.host,
        )
        path = "/mcp"
    if args.modern_only:
        app = _ModernOnly(app)
    config = uvicorn.Config(_RecordHeaders(app), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def announce_when_started() -> None:
        while not uv.started:
            await anyio.sleep(0.02)
        print(f"recording-server: listening on http://{host}:{port}{path}", flush=True)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce_when_started)
            await uv.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
