#!/usr/bin/env node
// The TypeScript SDK v2 client (@modelcontextprotocol/client 2.4.0) for toolgate's end-to-end
// tests, in either protocol era. Connects over Streamable HTTP, runs a small script of requests
// and prints one JSON document on stdout describing what happened, HTTP exchanges included.
//
//   node client-v2.mjs URL [TOKEN] [SCRIPT_JSON]
//
// TOKEN ("" or "-" for none) is sent as `Authorization: Bearer TOKEN` on every HTTP request.
// SCRIPT_JSON (default {"list": true}):
//   {"mode": "legacy" | "auto" | "2026-07-28",   era: the initialize handshake (default), the
//                                                 server/discover probe, or pinned 2026-07-28
//    "list": bool,
//    "calls": [{"name", "arguments", "progress": bool,
//               "cancelAfterMs": n,          abort the call after n ms (AbortSignal)
//               "pauseAfterMs": n,           wait n ms after the call (the session stays open)
//               "awaitNotification": {"method", "waitMs", "tries"}}],   after the call, wait
//                                            up to waitMs for a new `method` notification;
//                                            call again (at most `tries` calls in all) until one comes
//    "prompts": [{"name", "arguments"}],
//    "elicit": {...},     answer every elicitation/create with action "accept" and this content
//    "sample": "text",    answer every sampling/createMessage with this text
//    "roots": [{"uri", "name"}],   answer roots/list with these
//    "notifications": ["notifications/tools/list_changed", ...],   count these notifications
//    "listen": {"toolsListChanged": bool, ...},   in the 2026-07-28 era, open a
//                                                 subscriptions/listen stream with this filter first
//    "timeoutMs": n}
// The client declares the elicitation, sampling and roots capabilities only when the script
// gives the matching answer. In the 2026-07-28 era an `input_required` result is fulfilled by
// the same handlers and retried by the SDK (auto-fulfil), inside callTool/getPrompt.
// Output:
//   {"ok": true, "era", "protocolVersion", "sessionId", "serverVersion", "tools": [names] | null,
//    "calls": [{"name", "result"} | {"name", "error": {"code", "message"}}, with "progress"],
//    "prompts": [...same shape...], "handled": {"elicitation/create": n, ...},
//    "notifications": {method: n}, "listen": {"honoredFilter"} | {"error"} (when asked),
//    each call also with "elapsedMs" (and "attempts" with awaitNotification),
//    "closingAtMs": the clock (ms since the epoch) when the client began to close,
//    "http": [{"method", "rpc", "id", "mcpMethod", "mcpName", "protocolVersion", "sessionId",
//              "status"}]}
// A failure to connect prints {"ok": false, "error": {...}, "http": [...]} and exits 1.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, tokenArg, scriptArg] = process.argv.slice(2);
if (!url) {
  console.error('usage: node client-v2.mjs URL [TOKEN] [SCRIPT_JSON]');
  process.exit(2);
}
const token = tokenArg && tokenArg !== '-' ? tokenArg : null;
const script = scriptArg ? JSON.parse(scriptArg) : { list: true };
const timeout = script.timeoutMs ?? 20000;
const mode = script.mode ?? 'legacy';

function describeError(err) {
  return {
    code: typeof err?.code === 'number' ? err.code : null,
    message: String(err?.message ?? err),
    name: err?.constructor?.name ?? null,
  };
}

// Every HTTP exchange, as the client sent it: which era's headers went out, and what came back.
const http = [];
async function recordingFetch(input, init) {
  const headers = new Headers(init?.headers);
  const entry = {
    method: init?.method ?? 'GET',
    mcpMethod: headers.get('mcp-method'),
    mcpName: headers.get('mcp-name'),
    protocolVersion: headers.get('mcp-protocol-version'),
    sessionId: headers.get('mcp-session-id'),
  };
  if (typeof init?.body === 'string') {
    try {
      const body = JSON.parse(init.body);
      entry.rpc = body.method ?? null;
      entry.id = body.id ?? null;
    } catch {
      entry.rpc = null;
    }
  }
  http.push(entry);
  const response = await fetch(input, init);
  entry.status = response.status;
  return response;
}

const capabilities = {};
if (script.elicit !== undefined) capabilities.elicitation = { form: {} };
if (script.sample !== undefined) capabilities.sampling = {};
if (script.roots !== undefined) capabilities.roots = {};

const versionNegotiation = mode === 'legacy' ? { mode: 'legacy' } : mode === 'auto' ? { mode: 'auto' } : { mode: { pin: mode } };
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers }, fetch: recordingFetch });
const client = new Client({ name: 'toolgate-e2e-ts-v2', version: '0.0.0' }, { capabilities, versionNegotiation });

const handled = {};
const count = (method) => {
  handled[method] = (handled[method] ?? 0) + 1;
};
if (capabilities.elicitation) {
  client.setRequestHandler('elicitation/create', async () => {
    count('elicitation/create');
    return { action: 'accept', content: script.elicit };
  });
}
if (capabilities.sampling) {
  client.setRequestHandler('sampling/createMessage', async () => {
    count('sampling/createMessage');
    return { model: 'toolgate-e2e', role: 'assistant', content: { type: 'text', text: script.sample } };
  });
}
if (capabilities.roots) {
  client.setRequestHandler('roots/list', async () => {
    count('roots/list');
    return { roots: script.roots };
  });
}

const notified = {};
for (const method of script.notifications ?? []) {
  notified[method] = 0;
  client.setNotificationHandler(method, () => {
    notified[method] += 1;
  });
}
const waitForNotification = async (method, since, waitMs) => {
  const deadline = Date.now() + waitMs;
  while ((notified[method] ?? 0) <= since && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return (notified[method] ?? 0) > since;
};

const out = { ok: true };
try {
  await client.connect(transport, { timeout });
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: describeError(err), http }));
  process.exit(1);
}

out.era = client.getProtocolEra() ?? null;
out.protocolVersion = client.getNegotiatedProtocolVersion() ?? null;
out.sessionId = transport.sessionId ?? null;
out.serverVersion = client.getServerVersion() ?? null;
out.tools = null;
if (script.list) {
  try {
    const listed = await client.listTools(undefined, { timeout, cacheMode: 'bypass' });
    out.tools = listed.tools.map((t) => t.name);
  } catch (err) {
    out.listError = describeError(err);
  }
}

let subscription = null;
if (script.listen !== undefined) {
  if (out.era === 'modern') {
    try {
      subscription = await client.listen(script.listen, { timeout });
      out.listen = { honoredFilter: subscription.honoredFilter };
    } catch (err) {
      out.listen = { error: describeError(err) };
    }
  } else {
    out.listen = { skipped: 'legacy era: notifications come on the GET stream' };
  }
}

out.calls = [];
for (const call of script.calls ?? []) {
  const entry = { name: call.name };
  const progress = [];
  const wanted = call.awaitNotification;
  const tries = wanted ? (wanted.tries ?? 1) : 1;
  const started = Date.now();
  for (let attempt = 1; attempt <= tries; attempt++) {
    const options = { timeout };
    if (call.progress) {
      options.onprogress = (p) => progress.push(p);
    }
    if (call.cancelAfterMs !== undefined) {
      options.signal = AbortSignal.timeout(call.cancelAfterMs);
    }
    const since = wanted ? (notified[wanted.method] ?? 0) : 0;
    delete entry.result;
    delete entry.error;
    try {
      entry.result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, options);
    } catch (err) {
      entry.error = describeError(err);
    }
    if (wanted) {
      entry.attempts = attempt;
      if (await waitForNotification(wanted.method, since, wanted.waitMs ?? 1000)) break;
    }
  }
  entry.elapsedMs = Date.now() - started;
  if (call.progress) {
    entry.progress = progress;
  }
  out.calls.push(entry);
  if (call.pauseAfterMs) {
    await new Promise((resolve) => setTimeout(resolve, call.pauseAfterMs));
  }
}

out.prompts = [];
for (const prompt of script.prompts ?? []) {
  const entry = { name: prompt.name };
  try {
    entry.result = await client.getPrompt({ name: prompt.name, arguments: prompt.arguments ?? {} }, { timeout });
  } catch (err) {
    entry.error = describeError(err);
  }
  out.prompts.push(entry);
}

out.handled = handled;
out.closingAtMs = Date.now();
if (script.notifications !== undefined) {
  out.notifications = notified;
}
if (subscription) {
  try {
    await subscription.close();
  } catch (err) {
    out.listen.closeError = describeError(err);
  }
}
if (out.sessionId) {
  try {
    await transport.terminateSession();
  } catch (err) {
    out.terminateError = describeError(err);
  }
}
await client.close();
out.http = http;
console.log(JSON.stringify(out));
process.exit(0);
