"""The upstream that the MCP conformance suite's server scenarios expect, on the official
Python SDK (`MCPServer`, mcp 2.3.0), served over Streamable HTTP (sessions, SSE answers).

`@modelcontextprotocol/conformance` (0.1.16 and 0.2.0-alpha.12) in server mode is a client: each
scenario connects, calls a tool, resource or prompt with a fixed name and checks what comes back.
The suite's own reference server (a TypeScript "everything server" in the conformance
repository) is not in the npm package, so this file implements the same names from the
scenarios' requirements (`src/scenarios/server/*.ts`):

- tools: `test_simple_text`, `test_image_content`, `test_audio_content`,
  `test_embedded_resource`, `test_multiple_content_types`, `test_tool_with_logging`,
  `test_tool_with_progress`, `test_error_handling`, `test_sampling`, `test_elicitation`,
  `test_elicitation_sep1034_defaults`, `test_elicitation_sep1330_enums`,
  `json_schema_2020_12_tool` (its input schema keeps `$schema`, `$defs`,
  `additionalProperties`, and for the alpha `allOf`/`anyOf`, `if`/`then`/`else` and an
  `$anchor`), `test_reconnection` (closes its SSE stream mid-call);
- resources: `test://static-text`, `test://static-binary`, `test://watched-resource`, the
  template `test://template/{id}/data`; `resources/subscribe` and `resources/unsubscribe`;
- prompts: `test_simple_prompt`, `test_prompt_with_arguments`,
  `test_prompt_with_embedded_resource`, `test_prompt_with_image`;
- for the 2026-07-28 scenarios of the alpha (the SDK serves that era on the same endpoint):
  `test_missing_capability` (-32021 without the `sampling` capability), `test_x_mcp_header`
  (`Mcp-Param-Region`), the `input_required` tools `test_input_required_result_*` (elicitation,
  sampling, list_roots, request_state, multiple_inputs, multi_round, tampered_state,
  capabilities) and prompt `test_input_required_result_prompt`, `test_trigger_tool_change` and
  `test_trigger_prompt_change` (list changes announced on `subscriptions/listen` streams, or
  with `--legacy-only` on the session's GET stream);
- `logging/setLevel`, `completion/complete`; DNS rebinding protection is the SDK's own
  (on by default for a loopback host); an in-memory event store, so that POST SSE streams
  are primed (for 2025-11-25 clients, as the SDK decides) and resumable with Last-Event-ID.

    python conformance_server.py --port 0 [--host 127.0.0.1] [--legacy-only]

With `--port 0` it picks a free port. Once it accepts connections it prints one line on
stdout, `conformance-server: listening on http://HOST:PORT/mcp`, which the test waits for.

`--legacy-only` serves the 2025-11-25 (legacy) era only, as a server on an SDK without the
2026-07-28 era would: a request in that era is refused (`_LegacyOnly`: HTTP 400 and -32600
for the `MCP-Protocol-Version: 2026-07-28` header, as mcp 1.x refuses a version it does not
know; HTTP 404 and -32601 for `server/discover`, a method it does not have; a request that
names the version only in `_meta` has no session and gets the SDK's own 400), and the
`input_required` fixtures ask their questions the legacy way instead, as server-to-client
requests inside the call (`_legacy_ask`), ending with the results the 2026-07-28 versions give
after the retry. The trigger tools then announce `notifications/tools/list_changed` and
`notifications/prompts/list_changed` on the session's GET stream, and `initialize` declares
`listChanged` for tools and prompts (the SDK leaves it false in the legacy era by default).
Capabilities are the session's, declared in `initialize`: `test_missing_capability` and
`test_input_required_result_capabilities` judge those.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import socket
import sys
import warnings
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolResult,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp.types.jsonrpc import JSONRPCMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import Field

# Logging, sampling and `resources/subscribe` are legacy-era features that mcp 2.3.0 marks
# deprecated; the 0.1.16 suite tests exactly those, so the warnings are only noise here.
warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

# A 1x1 PNG and a WAV header with two bytes of silence: small, valid media for the content tests.
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_TINY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

server = MCPServer(
    name="toolgate-e2e-conformance",
    version="1.0.0",
    instructions="The tools, resources and prompts of the MCP conformance suite's server scenarios.",
)


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


# ---------------------------------------------------------------------------------------------
# Tools


@server.tool(description="Returns one text block.")
def test_simple_text() -> CallToolResult:
    return CallToolResult(content=[_text("This is a simple text response for testing.")])


@server.tool(description="Returns one image block (a 1x1 PNG).")
def test_image_content() -> CallToolResult:
    return CallToolResult(content=[ImageContent(type="image", data=PNG_1X1, mime_type="image/png")])


@server.tool(description="Returns one audio block (a tiny WAV).")
def test_audio_content() -> CallToolResult:
    return CallToolResult(content=[AudioContent(type="audio", data=WAV_TINY, mime_type="audio/wav")])


@server.tool(description="Returns one embedded text resource.")
def test_embedded_resource() -> CallToolResult:
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return CallToolResult(content=[EmbeddedResource(type="resource", resource=resource)])


@server.tool(description="Returns text, an image and an embedded resource in one result.")
def test_multiple_content_types() -> CallToolResult:
    resource = TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return CallToolResult(
        content=[
            _text("Multiple content types test:"),
            ImageContent(type="image", data=PNG_1X1, mime_type="image/png"),
            EmbeddedResource(type="resource", resource=resource),
        ]
    )


@server.tool(description="Sends three info log messages while it runs.")
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.info("Tool execution started")
    await anyio.sleep(0.05)
    await ctx.info("Tool processing data")
    await anyio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@server.tool(description="Reports progress 0, 50 and 100 out of 100 while it runs.")
async def test_tool_with_progress(ctx: Context) -> str:
    for step, done in enumerate((0, 50, 100)):
        if step:
            await anyio.sleep(0.05)
        await ctx.report_progress(done, 100, f"Completed step {done} of 100")
    return "Tool with progress executed successfully"


@server.tool(description="Always fails (an isError result).")
def test_error_handling() -> str:
    raise ToolError("This tool intentionally returns an error for testing")


@server.tool(description="Closes its own SSE stream mid-call; the answer comes on the resumed stream (SEP-1699).")
async def test_reconnection(ctx: Context) -> str:
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)  # the client reconnects with Last-Event-ID meanwhile
    return "Reconnection test completed: the answer arrived after the stream was resumed."


@server.tool(description="Asks the client for an LLM completion (sampling/createMessage).")
async def test_sampling(prompt: str, ctx: Context) -> str:
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=_text(prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, TextContent) else json.dumps(content.model_dump(mode="json"))
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    result = await ctx.session.elicit_form(message, requested_schema=schema, related_request_id=ctx.request_id)
    return f"action={result.action}, content={json.dumps(result.content or {})}"


@server.tool(description="Asks the client for a username and an email (elicitation/create).")
async def test_elicitation(message: str, ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return "User response: " + await _elicit(ctx, message, schema)


@server.tool(description="Elicits a form whose fields all carry defaults (SEP-1034).")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name", "default": "John Doe"},
            "age": {"type": "integer", "description": "Age", "default": 30},
            "score": {"type": "number", "description": "Score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "Status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verified", "default": True},
        },
        "required": [],
    }
    return "Elicitation completed: " + await _elicit(ctx, "Review the fields (defaults filled in)", schema)


@server.tool(description="Elicits a form with the five enum shapes of SEP-1330.")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    def titled(prefix: str, titles: list[str]) -> list[dict[str, str]]:
        return [{"const": f"{prefix}{i}", "title": title} for i, title in enumerate(titles, start=1)]

    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": titled("value", ["First Option", "Second Option", "Third Option"]),
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {"anyOf": titled("value", ["First Choice", "Second Choice", "Third Choice"])},
            },
        },
        "required": [],
    }
    return "Elicitation completed: " + await _elicit(ctx, "Pick from the enum fields", schema)


@server.tool(description="A tool whose input schema uses JSON Schema 2020-12 keywords (SEP-1613).")
def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
    return "json_schema_2020_12_tool called with " + json.dumps({"name": name, "address": address})


# The schema the suite checks for: `$schema`, `$defs` and `additionalProperties` must survive
# listing (0.1.16), and since 0.2.0-alpha (SEP-2106) also a composition (`allOf`/`anyOf`), the
# conditional keywords (`if`/`then`/`else`) and an `$anchor` inside `$defs`. MCPServer derives
# schemas from signatures, so the tool's schema is replaced outright.
_JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "postalAddress",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"required": ["contactMethod"], "properties": {"contactMethod": {"const": "phone"}}},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
_tool = server._tool_manager.get_tool("json_schema_2020_12_tool")  # noqa: SLF001 (no public setter)
assert _tool is not None
_tool.parameters = _JSON_SCHEMA_2020_12


# ---------------------------------------------------------------------------------------------
# The 2026-07-28 era (0.2.0-alpha scenarios): capabilities declared per request, multi-round-trip
# requests (SEP-2322: an `input_required` result, answered by a retry carrying `inputResponses`
# and the echoed `requestState`), `Mcp-Param-*` headers (SEP-2243), list changes announced on
# `subscriptions/listen` streams. The SDK seals `requestState` (integrity and expiry) before it
# leaves and unseals it on the retry, so a tampered echo never reaches these functions.


def _ask(message: str, properties: dict[str, Any]) -> ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=_text(text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def _answer(ctx: Context, key: str) -> Any:
    """The client's answer to input request `key` on this round, or None."""
    return (ctx.input_responses or {}).get(key)


def _accepted(answer: Any, field: str) -> str:
    content = getattr(answer, "content", None) or {}
    return str(content.get(field, "")) if isinstance(content, dict) else ""


# With --legacy-only there is no `input_required`: a server of the legacy era asks what the
# 2026-07-28 fixtures put in `inputRequests` as server-to-client requests inside the call,
# waits for the client's answers and then ends with the result the 2026-07-28 fixture gives
# after the retry. No `requestState` either: the call's state stays in the running call.
LEGACY_ONLY = False

_RESULT_TYPES: dict[str, Any] = {
    "elicitation/create": ElicitResult,
    "sampling/createMessage": CreateMessageResult,
    "roots/list": ListRootsResult,
}


async def _legacy_ask(ctx: Context, request: InputRequest) -> Any:
    """`request` sent to the client inside this call (legacy era); the client's result.

    On the call's own response stream (`related_request_id`), where the SDK's `elicit_form`
    and `create_message` send theirs; `ServerSession.list_roots()` takes no request id (it
    would send on the session's GET stream), so all three go through `send_request`."""
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    return await ctx.session.send_request(request, _RESULT_TYPES[request.method], metadata=metadata)


async def _legacy_ask_all(ctx: Context, requests: dict[str, InputRequest]) -> dict[str, Any]:
    """Every request at once (several outstanding, as one `input_required` result asks
    several things); the answers by key, without those the client refused with an error."""
    answers: dict[str, Any] = {}

    async def ask(key: str, request: InputRequest) -> None:
        try:
            answers[key] = await _legacy_ask(ctx, request)
        except MCPError:
            pass

    async with anyio.create_task_group() as tg:
        for key, request in requests.items():
            tg.start_soon(ask, key, request)
    return answers


@server.tool(description="Needs the client's `sampling` capability: without it, error -32021 (SEP-2575).")
async def test_missing_capability(ctx: Context) -> str:
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.sampling is None:
        raise MCPError(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            "test_missing_capability needs the client capability `sampling`",
            {"requiredCapabilities": {"sampling": {}}},
        )
    return "the client declared sampling"


@server.tool(description="Its `region` argument is mirrored into the Mcp-Param-Region header (SEP-2243).")
def test_x_mcp_header(
    region: Annotated[
        str, Field(description="Sent as Mcp-Param-Region too", json_schema_extra={"x-mcp-header": "Region"})
    ] = "",
) -> str:
    return f"region={region}"


@server.tool(description="Asks the user's name through an input_required result (key `user_name`).")
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    question = _ask("What is your name?", {"name": {"type": "string"}})
    answer = await _legacy_ask(ctx, question) if LEGACY_ONLY else _answer(ctx, "user_name")
    if answer is None:
        return InputRequiredResult(input_requests={"user_name": question})
    return f"Hello, {_accepted(answer, 'name')}!"


@server.tool(description="Asks the client's LLM through an input_required result (key `capital_question`).")
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    question = _sample("What is the capital of France?", 100)
    answer = await _legacy_ask(ctx, question) if LEGACY_ONLY else _answer(ctx, "capital_question")
    if answer is None:
        return InputRequiredResult(input_requests={"capital_question": question})
    content = getattr(answer, "content", None)
    return f"The model said: {getattr(content, 'text', '')}"


@server.tool(description="Asks the client's roots through an input_required result (key `client_roots`).")
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    answer = await _legacy_ask(ctx, ListRootsRequest()) if LEGACY_ONLY else _answer(ctx, "client_roots")
    if answer is None:
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
    roots = [str(root.uri) for root in getattr(answer, "roots", [])]
    return "Roots: " + ", ".join(roots)


@server.tool(description="An input_required result with requestState, checked on the retry.")
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    question = _ask("Please confirm", {"ok": {"type": "boolean"}})
    if LEGACY_ONLY:
        # The state never leaves the call, so there is nothing to check (a gateway that turns
        # this request into an `input_required` result checks the state it gave out).
        await _legacy_ask(ctx, question)
    elif ctx.request_state != "awaiting-confirmation" or _answer(ctx, "confirm") is None:
        return InputRequiredResult(input_requests={"confirm": question}, request_state="awaiting-confirmation")
    return "state-ok: the echoed requestState was the one this server sent"


@server.tool(description="One input_required result with an elicitation, a sampling and a roots request.")
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    questions: dict[str, InputRequest] = {
        "user_name": _ask("What is your name?", {"name": {"type": "string"}}),
        "greeting": _sample("Generate a greeting", 50),
        "client_roots": ListRootsRequest(),
    }
    if LEGACY_ONLY:
        answers = await _legacy_ask_all(ctx, questions)
        if missing := sorted(set(questions) - set(answers)):
            raise ToolError(f"the client refused {', '.join(missing)}")
        return f"All three answered; the name is {_accepted(answers['user_name'], 'name')}"
    if ctx.request_state != "three-questions" or any(_answer(ctx, key) is None for key in questions):
        return InputRequiredResult(input_requests=questions, request_state="three-questions")
    return f"All three answered; the name is {_accepted(_answer(ctx, 'user_name'), 'name')}"


@server.tool(description="Two input_required rounds, each with its own requestState, then the result.")
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    if LEGACY_ONLY:
        step1 = await _legacy_ask(ctx, _ask("Step 1: What is your name?", {"name": {"type": "string"}}))
        step2 = await _legacy_ask(ctx, _ask("Step 2: What is your favorite color?", {"color": {"type": "string"}}))
        return f"{_accepted(step1, 'name')} likes {_accepted(step2, 'color')}"
    state = ctx.request_state or ""
    if state == "round-1" and _answer(ctx, "step1") is not None:
        name = _accepted(_answer(ctx, "step1"), "name")
        return InputRequiredResult(
            input_requests={"step2": _ask("Step 2: What is your favorite color?", {"color": {"type": "string"}})},
            request_state="round-2:" + json.dumps({"name": name}),
        )
    if state.startswith("round-2:") and _answer(ctx, "step2") is not None:
        name = json.loads(state.removeprefix("round-2:"))["name"]
        return f"{name} likes {_accepted(_answer(ctx, 'step2'), 'color')}"
    return InputRequiredResult(
        input_requests={"step1": _ask("Step 1: What is your name?", {"name": {"type": "string"}})},
        request_state="round-1",
    )


@server.tool(description="Its requestState is sealed by the SDK; a tampered echo is refused.")
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    if LEGACY_ONLY:
        # Nothing to tamper with here: the state stays in the call (see the request_state tool).
        await _legacy_ask(ctx, _ask("Please confirm", {"ok": {"type": "boolean"}}))
        return "state-ok: untampered"
    if ctx.request_state is None:
        return InputRequiredResult(
            input_requests={"confirm": _ask("Please confirm", {"ok": {"type": "boolean"}})},
            request_state="untampered",
        )
    return f"state-ok: {ctx.request_state}"


@server.tool(description="Asks only through the capabilities the request declares (sampling, elicitation).")
async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    # In the legacy era, the capabilities the client declared in `initialize`.
    capabilities = ctx.client_capabilities
    if ctx.input_responses and not LEGACY_ONLY:
        return "answered: " + ", ".join(sorted(ctx.input_responses))
    requests: dict[str, InputRequest] = {}
    if capabilities is not None and capabilities.sampling is not None:
        requests["sample"] = _sample("Say hello", 50)
    if capabilities is not None and capabilities.elicitation is not None:
        requests["ask"] = _ask("What is your name?", {"name": {"type": "string"}})
    if LEGACY_ONLY:
        return "answered: " + ", ".join(sorted(await _legacy_ask_all(ctx, requests)))
    return InputRequiredResult(input_requests=requests or None, request_state="capabilities-checked")


def _dynamic() -> str:
    return "added and removed by the trigger tools"


@server.tool(description="Adds or removes a tool and announces tools/list_changed on listen streams.")
async def test_trigger_tool_change(ctx: Context) -> str:
    if server._tool_manager.get_tool("test_dynamic_tool") is None:  # noqa: SLF001
        server.add_tool(_dynamic, name="test_dynamic_tool", description="Comes and goes.")
    else:
        server.remove_tool("test_dynamic_tool")
    if LEGACY_ONLY:
        await ctx.session.send_tool_list_changed()  # on the session's GET stream
    else:
        await ctx.notify_tools_changed()
    return "tool list changed"


@server.tool(description="Adds or removes a prompt and announces prompts/list_changed on listen streams.")
async def test_trigger_prompt_change(ctx: Context) -> str:
    from mcp.server.mcpserver.prompts.base import Prompt

    if "test_dynamic_prompt" in {p.name for p in server._prompt_manager.list_prompts()}:  # noqa: SLF001
        server.remove_prompt("test_dynamic_prompt")
    else:
        server.add_prompt(Prompt.from_function(_dynamic, name="test_dynamic_prompt", description="Comes and goes."))
    if LEGACY_ONLY:
        await ctx.session.send_prompt_list_changed()
    else:
        await ctx.notify_prompts_changed()
    return "prompt list changed"


# ---------------------------------------------------------------------------------------------
# Resources


@server.resource(
    "test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"
)
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource(
    "test://static-binary", name="static-binary", description="A static binary resource (PNG)", mime_type="image/png"
)
def static_binary() -> bytes:
    # Returned as bytes, the SDK serves it as a base64 `blob`.
    return base64.b64decode(PNG_1X1)


@server.resource(
    "test://watched-resource", name="watched-resource", description="A resource to subscribe to", mime_type="text/plain"
)
def watched_resource() -> str:
    return "Watched resource content"


@server.resource(
    "test://template/{id}/data",
    name="template",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
def template_data(id: str) -> str:  # noqa: A002 (the template's own variable name)
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# Subscriptions are only recorded: nothing changes the watched resource during a scenario.
SUBSCRIBED: set[str] = set()


async def _subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
    SUBSCRIBED.add(str(params.uri))
    return EmptyResult()


async def _unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
    SUBSCRIBED.discard(str(params.uri))
    return EmptyResult()


async def _set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


# MCPServer has no decorators for these legacy-era methods; the low-level server takes them.
_lowlevel = server._lowlevel_server  # noqa: SLF001
_lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
_lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)
_lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)


# ---------------------------------------------------------------------------------------------
# Prompts and completion


@server.prompt(description="A prompt without arguments.")
def test_simple_prompt() -> list[UserMessage]:
    return [UserMessage(_text("This is a simple prompt for testing."))]


@server.prompt(description="A prompt with two required arguments.")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    return [UserMessage(_text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]


@server.prompt(description="A prompt that embeds a resource.")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 (wire name)
    resource = TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(EmbeddedResource(type="resource", resource=resource)),
        UserMessage(_text("Please process the embedded resource above.")),
    ]


@server.prompt(description="A prompt that contains an image.")
def test_prompt_with_image() -> list[UserMessage]:
    return [
        UserMessage(ImageContent(type="image", data=PNG_1X1, mime_type="image/png")),
        UserMessage(_text("Please analyze the image above.")),
    ]


@server.prompt(description="Needs the user's context first: an input_required result (key `user_context`).")
async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
    question = _ask("What context should the prompt use?", {"context": {"type": "string"}})
    answer = await _legacy_ask(ctx, question) if LEGACY_ONLY else _answer(ctx, "user_context")
    if answer is None:
        return InputRequiredResult(input_requests={"user_context": question})
    return [UserMessage(_text(f"Answer with this context in mind: {_accepted(answer, 'context')}"))]


@server.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion:
    # Minimal, as the scenario allows: the capability and a well-formed (empty) answer.
    return Completion(values=[], total=0, has_more=False)



# ---------------------------------------------------------------------------------------------
# Resumability (SEP-1699): every POST SSE stream gets a priming event and can be resumed with
# Last-Event-ID, which `test_reconnection` (scenario `server-sse-polling`) relies on.


class MemoryEventStore(EventStore):
    """Every event of every stream, in memory, with ids that sort in the order they were made."""

    def __init__(self) -> None:
        self.counter = 0
        self.events: dict[str, tuple[str, JSONRPCMessage | None]] = {}

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        self.counter += 1
        event_id = f"{stream_id}_{self.counter:012d}"
        self.events[event_id] = (stream_id, message)
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        if last_event_id not in self.events:
            return None
        stream_id, _ = self.events[last_event_id]
        after = int(last_event_id.rsplit("_", 1)[1])
        for event_id, (stream, message) in list(self.events.items()):
            if stream == stream_id and int(event_id.rsplit("_", 1)[1]) > after and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


# ---------------------------------------------------------------------------------------------
# --legacy-only: the 2026-07-28 era refused at the door.


async def _refuse(send: Any, status: int, request_id: Any, code: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class _LegacyOnly:
    """ASGI middleware: refuse what the SDK would serve in the 2026-07-28 era, the way a
    server without that era does; everything else passes unchanged.

    - `server/discover`: HTTP 404, -32601 (a method the legacy era does not have);
    - an `MCP-Protocol-Version` header that is not a handshake version (2026-07-28), on any
      HTTP method: HTTP 400, -32600, with mcp 1.x's "Unsupported protocol version" message
      (mcp 2.3.0 routes such a request to its 2026-07-28 entry on the header alone);
    - a request naming 2026-07-28 only in `params._meta` passes: without a session, the SDK's
      legacy transport answers it with HTTP 400, -32600 "Missing session ID" itself.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        version = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"mcp-protocol-version"), None
        )
        body = b""
        request: Any = None
        if scope.get("method") == "POST":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            try:
                request = json.loads(body)
            except ValueError:
                request = None
        request_id = request.get("id") if isinstance(request, dict) else None
        if isinstance(request, dict) and request.get("method") == "server/discover":
            message = "Method not found: server/discover (this server speaks the 2025-11-25 era only)"
            await _refuse(send, 404, request_id, METHOD_NOT_FOUND, message)
            return
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            supported = ", ".join(HANDSHAKE_PROTOCOL_VERSIONS)
            message = f"Bad Request: Unsupported protocol version: {version}. Supported versions: {supported}"
            await _refuse(send, 400, request_id, INVALID_REQUEST, message)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
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
    global LEGACY_ONLY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--legacy-only", action="store_true", help="serve the 2025-11-25 era only (see above)")
    args = parser.parse_args()
    LEGACY_ONLY = args.legacy_only
    if LEGACY_ONLY:
        # The legacy era's `listChanged` flags come from NotificationOptions (false by default):
        # declared for the lists the trigger tools change.
        announced = NotificationOptions(prompts_changed=True, tools_changed=True)
        _lowlevel.create_initialization_options = functools.partial(_lowlevel.create_initialization_options, announced)

    # Bind first, so a port of 0 becomes a real one that we can print and uvicorn can use.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]

    app = server.streamable_http_app(
        streamable_http_path="/mcp", host=args.host, event_store=MemoryEventStore(), retry_interval=500
    )
    uv = uvicorn.Server(uvicorn.Config(_LegacyOnly(app) if LEGACY_ONLY else app, log_level="warning", lifespan="on"))

    async def announce_when_started() -> None:
        while not uv.started:
            await anyio.sleep(0.02)
        print(f"conformance-server: listening on http://{host}:{port}/mcp", flush=True)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce_when_started)
            await uv.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
