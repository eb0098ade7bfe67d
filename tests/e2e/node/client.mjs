#!/usr/bin/env node
// A real TypeScript SDK client (@modelcontextprotocol/sdk 1.32.2, legacy era) for toolgate's
// end-to-end tests. Connects over Streamable HTTP, runs a small script of requests and prints
// one JSON document on stdout describing what happened.
//
//   node client.mjs URL [TOKEN] [SCRIPT_JSON]
//
// TOKEN ("" or "-" for none) is sent as `Authorization: Bearer TOKEN` on every HTTP request
// (requestInit.headers). SCRIPT_JSON (default {"list": true}) is
//   {"list": bool, "calls": [{"name": str, "arguments": {...}, "progress": bool}], "timeoutMs": n}
// Output:
//   {"ok": true, "protocolVersion", "sessionId", "serverVersion", "tools": [names] | null,
//    "calls": [{"name", "result"} | {"name", "error": {"code", "message"}}, with "progress": [...]]}
// A failure to connect prints {"ok": false, "error": {"code", "message"}} and exits 1.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, tokenArg, scriptArg] = process.argv.slice(2);
if (!url) {
  console.error("usage: node client.mjs URL [TOKEN] [SCRIPT_JSON]");
  process.exit(2);
}
const token = tokenArg && tokenArg !== "-" ? tokenArg : null;
const script = scriptArg ? JSON.parse(scriptArg) : { list: true };
const timeout = script.timeoutMs ?? 20000;

function describeError(err) {
  return {
    code: typeof err?.code === "number" ? err.code : null,
    message: String(err?.message ?? err),
    name: err?.constructor?.name ?? null,
  };
}

const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "toolgate-e2e-ts", version: "0.0.0" }, { capabilities: {} });
const transportErrors = [];

const out = { ok: true };
try {
  await client.connect(transport, { timeout });
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: describeError(err) }));
  process.exit(1);
}
// Errors reported by the transport outside a request (e.g. the optional GET stream).
transport.onerror = (err) => transportErrors.push(describeError(err));

out.protocolVersion = transport.protocolVersion ?? null;
out.sessionId = transport.sessionId ?? null;
out.serverVersion = client.getServerVersion() ?? null;
out.tools = null;
if (script.list) {
  try {
    const listed = await client.listTools(undefined, { timeout });
    out.tools = listed.tools.map((t) => t.name);
  } catch (err) {
    out.listError = describeError(err);
  }
}
out.calls = [];
for (const call of script.calls ?? []) {
  const entry = { name: call.name };
  const progress = [];
  const options = { timeout };
  if (call.progress) {
    options.onprogress = (p) => progress.push(p);
  }
  try {
    entry.result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, options);
  } catch (err) {
    entry.error = describeError(err);
  }
  if (call.progress) {
    entry.progress = progress;
  }
  out.calls.push(entry);
}
out.transportErrors = transportErrors;
try {
  await transport.terminateSession();
} catch (err) {
  out.terminateError = describeError(err);
}
await client.close();
console.log(JSON.stringify(out));
process.exit(0);
