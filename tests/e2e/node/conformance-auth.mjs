// Preload for `@modelcontextprotocol/conformance server` runs through toolgate:
//
//   NODE_OPTIONS="--import /abs/path/conformance-auth.mjs" \
//   TOOLGATE_CONFORMANCE_BASE=http://127.0.0.1:PORT/mcp/NAME \
//   TOOLGATE_CONFORMANCE_TOKEN=<grant token> \
//   conformance server --url http://127.0.0.1:PORT/mcp/NAME
//
// Why: toolgate answers 401 without `Authorization: Bearer <token>`, and the conformance
// runner (0.1.16, 0.2.0-alpha.12) has no option to send a header in server mode. This file stands in for the
// missing `--header` option that upstream issue modelcontextprotocol/conformance#453 asks for;
// drop it once the runner has one.
//
// What it does, and nothing else: every HTTP request whose URL starts with
// TOOLGATE_CONFORMANCE_BASE gets `Authorization: Bearer $TOOLGATE_CONFORMANCE_TOKEN`, unless it
// already carries an Authorization header. Other URLs, methods, bodies and headers are left
// as they are. Three layers are covered:
//  - `globalThis.fetch`, which the scenarios' MCP SDK client and their raw requests use;
//  - undici's global dispatcher, which undici's own `request()` uses (the
//    `dns-rebinding-protection` scenario sends its requests that way). Node's fetch also goes
//    through that dispatcher; the header is only added once;
//  - `node:http`'s `request()` and `get()` (0.2.0-alpha's `http-header-validation` and
//    `http-custom-header-server-validation` send raw requests that way, to keep the exact
//    header casing they test).

import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { getGlobalDispatcher, setGlobalDispatcher } from 'undici';

const base = process.env.TOOLGATE_CONFORMANCE_BASE;
const token = process.env.TOOLGATE_CONFORMANCE_TOKEN;
if (!base || !token) {
  throw new Error('conformance-auth.mjs: set TOOLGATE_CONFORMANCE_BASE and TOOLGATE_CONFORMANCE_TOKEN');
}
const bearer = `Bearer ${token}`;
const matches = (url) => String(url).startsWith(base);

// --- fetch -----------------------------------------------------------------------------------
const originalFetch = globalThis.fetch;
globalThis.fetch = function fetchWithToolgateAuth(input, init) {
  const url = input instanceof Request ? input.url : input instanceof URL ? input.href : String(input);
  if (!matches(url)) {
    return originalFetch.call(this, input, init);
  }
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has('authorization')) {
    headers.set('authorization', bearer);
  }
  return originalFetch.call(this, input, { ...init, headers });
};

// --- undici dispatcher (undici.request) ------------------------------------------------------
// Request headers reach a dispatcher as an object, a flat [name, value, ...] array or an
// iterable of pairs; add the header in whichever form came, keeping the rest as it is.
function withAuthorization(headers) {
  if (headers == null) {
    return { authorization: bearer };
  }
  if (Array.isArray(headers)) {
    const flat = headers.every((h) => !Array.isArray(h));
    const names = flat ? headers.filter((_, i) => i % 2 === 0) : headers.map(([name]) => name);
    if (names.some((name) => String(name).toLowerCase() === 'authorization')) {
      return headers;
    }
    return flat ? [...headers, 'authorization', bearer] : [...headers, ['authorization', bearer]];
  }
  if (typeof headers[Symbol.iterator] === 'function') {
    return withAuthorization([...headers]);
  }
  if (Object.keys(headers).some((name) => name.toLowerCase() === 'authorization')) {
    return headers;
  }
  return { ...headers, authorization: bearer };
}

const addToolgateAuth = (dispatch) => (opts, handler) => {
  const url = `${String(opts.origin ?? '').replace(/\/$/, '')}${opts.path ?? ''}`;
  if (!matches(url)) {
    return dispatch(opts, handler);
  }
  return dispatch({ ...opts, headers: withAuthorization(opts.headers) }, handler);
};

setGlobalDispatcher(getGlobalDispatcher().compose(addToolgateAuth));

// --- node:http (http.request, http.get) ------------------------------------------------------
// Called as (url[, options][, callback]) or (options[, callback]); `url` is a string or a URL,
// `options` an object with `headers` (an object, or a flat [name, value, ...] array).
function httpTarget(url, options) {
  if (url != null) {
    return String(url instanceof URL ? url.href : url);
  }
  const protocol = options.protocol ?? 'http:';
  const host = options.hostname ?? options.host ?? 'localhost';
  const port = options.port ? `:${options.port}` : '';
  return `${protocol}//${host}${port}${options.path ?? '/'}`;
}

const withHttpAuth = (original) =>
  function requestWithToolgateAuth(...args) {
    const url = typeof args[0] === 'string' || args[0] instanceof URL ? args.shift() : null;
    const options = args[0] != null && typeof args[0] === 'object' ? args.shift() : {};
    if (!matches(httpTarget(url, options))) {
      return url == null ? original.call(this, options, ...args) : original.call(this, url, options, ...args);
    }
    const authorized = { ...options, headers: withAuthorization(options.headers) };
    return url == null ? original.call(this, authorized, ...args) : original.call(this, url, authorized, ...args);
  };

http.request = withHttpAuth(http.request);
http.get = withHttpAuth(http.get);
syncBuiltinESMExports();
