// A real OAuth 2.1 authorization server for toolgate's end-to-end tests: the npm package
// `oidc-provider` (9.13.3, a certified OpenID Provider) on a loopback port, configured as the
// authorization server of protected MCP servers (tests/e2e/upstreams/protected_server.py).
//
//   node oauth-provider.mjs [PORT] [--access-ttl S] [--refresh-ttl S] [--format jwt|opaque]
//       [--scopes "mcp:tools mcp:admin"] [--introspector ID:SECRET]
//       [--exchange-jwks FILE --exchange-issuer ISS [--exchange-audience AUD]] [--cimd]
//
// PORT 0 (the default) picks a free one. When it accepts connections it prints
// `oauth-provider: listening on http://127.0.0.1:PORT` (that URL is the issuer), then one line
// per event worth seeing in a test's log (`oauth-provider: event ...`).
// Every option has an environment form: OAUTH_PORT, OAUTH_ACCESS_TTL, OAUTH_REFRESH_TTL,
// OAUTH_FORMAT, OAUTH_SCOPES, OAUTH_INTROSPECTOR, OAUTH_EXCHANGE_JWKS, OAUTH_EXCHANGE_ISSUER,
// OAUTH_EXCHANGE_AUDIENCE, OAUTH_CIMD=1; a flag wins over its variable. `--cimd` turns on
// Client ID Metadata Documents (oidc-provider's draft-02 feature): a client_id that is an
// https URL is fetched as the client's metadata (NODE_EXTRA_CA_CERTS for a test CA).
//
// What it serves (metadata at /.well-known/oauth-authorization-server and
// /.well-known/openid-configuration):
// - authorization code with PKCE, S256 required for every client (/auth, /token);
// - refresh tokens for every client registered with the `refresh_token` grant type (no
//   `offline_access` scope needed), rotated on every use; a rotated (consumed) refresh token
//   used again revokes the whole grant (oidc-provider's reuse detection);
// - open dynamic client registration, RFC 7591 (/reg, no initial access token);
// - resource indicators, RFC 8707: any http(s) URL is a resource server; the access token
//   for it has `aud` = that URL, the scopes of --scopes that were asked and granted, TTL
//   --access-ttl; `jwt` format (RFC 9068, `typ: at+jwt`, RS256, keys at /jwks) or `opaque`;
//   an authorization request without `scope` gets all of --scopes (oidc-provider refuses an
//   authorization that grants no scope);
// - revocation, RFC 7009 (/token/revocation) and introspection, RFC 7662
//   (/token/introspection): opaque tokens only (oidc-provider refuses JWT access tokens
//   there with `unsupported_token_type`); revoking an access or refresh token revokes every
//   token of its grant (a replayed authorization code does the same);
// - token exchange, RFC 8693 (grant type urn:ietf:params:oauth:grant-type:token-exchange),
//   only with --exchange-jwks: a subject token that is a JWT signed by a key of that JWKS,
//   from --exchange-issuer (and for --exchange-audience when given), becomes an access
//   token for the requested `resource` with `sub` = the subject token's `sub`;
// - a statically registered confidential client for resource servers to introspect with
//   (--introspector, default `protected-server:protected-server-secret`).
//
// Interactions (login and consent) without a browser and without devInteractions: see
// INTERACTIONS below. Any login name is an account whose `sub` is that name.
// Test controls make the token endpoint hang, busy or slow to answer: POST
// /__control/token-delay, /__control/token-busy and /__control/token-hold (below).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// --- options -------------------------------------------------------------------------------

function parseArgs(argv) {
  const env = process.env;
  const opts = {
    port: Number(env.OAUTH_PORT ?? 0),
    accessTtl: Number(env.OAUTH_ACCESS_TTL ?? 300),
    refreshTtl: Number(env.OAUTH_REFRESH_TTL ?? 86400),
    format: env.OAUTH_FORMAT ?? 'jwt',
    scopes: env.OAUTH_SCOPES ?? 'mcp:tools',
    introspector: env.OAUTH_INTROSPECTOR ?? 'protected-server:protected-server-secret',
    exchangeJwks: env.OAUTH_EXCHANGE_JWKS,
    exchangeIssuer: env.OAUTH_EXCHANGE_ISSUER,
    exchangeAudience: env.OAUTH_EXCHANGE_AUDIENCE,
    cimd: env.OAUTH_CIMD === '1',
  };
  const flags = {
    '--access-ttl': (v) => { opts.accessTtl = Number(v); },
    '--refresh-ttl': (v) => { opts.refreshTtl = Number(v); },
    '--format': (v) => { opts.format = v; },
    '--scopes': (v) => { opts.scopes = v; },
    '--introspector': (v) => { opts.introspector = v; },
    '--exchange-jwks': (v) => { opts.exchangeJwks = v; },
    '--exchange-issuer': (v) => { opts.exchangeIssuer = v; },
    '--exchange-audience': (v) => { opts.exchangeAudience = v; },
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const [name, inline] = arg.split(/=(.*)/s, 2);
    if (name === '--cimd') {
      opts.cimd = true;
    } else if (flags[name]) {
      const value = inline ?? argv[(i += 1)];
      if (value === undefined) throw new Error(`${name} needs a value`);
      flags[name](value);
    } else if (/^\d+$/.test(arg)) {
      opts.port = Number(arg);
    } else {
      throw new Error(`unknown argument ${arg}`);
    }
  }
  for (const key of ['port', 'accessTtl', 'refreshTtl']) {
    if (!Number.isInteger(opts[key]) || opts[key] < 0) throw new Error(`${key} must be a whole number`);
  }
  if (opts.accessTtl < 1 || opts.refreshTtl < 1) throw new Error('TTLs must be at least 1 s');
  if (!opts.scopes.trim()) throw new Error('--scopes needs at least one scope');
  if (!['jwt', 'opaque'].includes(opts.format)) throw new Error('--format is jwt or opaque');
  if (!/^[^:]+:.+$/.test(opts.introspector)) throw new Error('--introspector is ID:SECRET');
  if (opts.exchangeJwks && !opts.exchangeIssuer) throw new Error('--exchange-jwks needs --exchange-issuer');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const log = (line) => process.stdout.write(`oauth-provider: ${line}\n`);

// --- keys ----------------------------------------------------------------------------------

// A fresh RSA signing key per run (no development keys, no files).
function signingJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] };
}

// --- token exchange (RFC 8693) ---------------------------------------------------------------

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// Verify a subject token: an RS256/ES256 JWT signed by a key of --exchange-jwks.
function verifySubjectToken(token) {
  const jwks = JSON.parse(fs.readFileSync(opts.exchangeJwks, 'utf8'));
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new errors.InvalidGrant('subject_token is not a JWT');
  let header;
  let claims;
  try {
    header = b64json(parts[0]);
    claims = b64json(parts[1]);
  } catch {
    throw new errors.InvalidGrant('subject_token is not a JWT');
  }
  const algs = { RS256: 'sha256', ES256: 'sha256' };
  if (!algs[header.alg]) throw new errors.InvalidGrant(`subject_token alg ${header.alg} not accepted`);
  const jwk = jwks.keys.find((k) => (header.kid ? k.kid === header.kid : true));
  if (!jwk) throw new errors.InvalidGrant('subject_token signed by an unknown key');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const ok = crypto.verify(
    algs[header.alg],
    Buffer.from(`${parts[0]}.${parts[1]}`),
    header.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key,
    Buffer.from(parts[2], 'base64url'),
  );
  if (!ok) throw new errors.InvalidGrant('subject_token signature invalid');
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || claims.exp <= now) throw new errors.InvalidGrant('subject_token expired');
  if (typeof claims.nbf === 'number' && claims.nbf > now) throw new errors.InvalidGrant('subject_token not yet valid');
  if (claims.iss !== opts.exchangeIssuer) throw new errors.InvalidGrant('subject_token issuer not trusted');
  if (opts.exchangeAudience) {
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(opts.exchangeAudience)) throw new errors.InvalidGrant('subject_token audience not accepted');
  }
  if (typeof claims.sub !== 'string' || !claims.sub) throw new errors.InvalidGrant('subject_token has no sub');
  return claims;
}

async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  const provider = ctx.oidc.provider;
  if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter \'subject_token\'');
  if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.subject_token_type)) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens can be requested');
  }
  if (!params.resource) throw new errors.InvalidTarget('a resource is required');
  const claims = verifySubjectToken(params.subject_token);
  const info = resourceServerInfo(params.resource);
  const asked = (params.scope ?? '').split(' ').filter(Boolean);
  const allowed = new Set(info.scope.split(' '));
  const scope = asked.length ? asked.filter((s) => allowed.has(s)) : [...allowed];

  const grant = new provider.Grant({ accountId: claims.sub, clientId: client.clientId });
  grant.addResourceScope(params.resource, scope.join(' '));
  const grantId = await grant.save();

  const at = new provider.AccessToken({
    accountId: claims.sub,
    client,
    grantId,
    gty: 'token_exchange',
    scope: scope.join(' '),
  });
  at.resourceServer = new provider.ResourceServer(params.resource, info);
  ctx.oidc.entity('AccessToken', at);
  const value = await at.save();
  log(`event token_exchange sub=${claims.sub} client=${client.clientId} resource=${params.resource}`);
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: at.expiration,
    scope: at.scope || undefined,
  };
}

// --- configuration -------------------------------------------------------------------------

function resourceServerInfo(indicator) {
  const info = {
    scope: opts.scopes,
    audience: indicator,
    accessTokenTTL: opts.accessTtl,
    accessTokenFormat: opts.format,
  };
  if (opts.format === 'jwt') info.jwt = { sign: { alg: 'RS256' } };
  return info;
}

const [introspectorId, introspectorSecret] = opts.introspector.split(/:(.*)/s, 2);

function configuration() {
  return {
    jwks: signingJwks(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Any login name is an account, `sub` = that name.
    async findAccount(_ctx, sub) {
      return { accountId: sub, async claims() { return { sub }; } };
    },
    clients: [{
      client_id: introspectorId,
      client_secret: introspectorSecret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    }],
    scopes: ['openid', 'offline_access'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    // --cimd on loopback: oidc-provider's fetch refuses special-use addresses (127.0.0.1)
    // against SSRF; the tests' client documents are on loopback, so that guard is lifted
    // here (only with --cimd, only in this fixture).
    ...(opts.cimd ? {
      fetch: (url, options) => {
        const { dispatcher: _unused, ...rest } = options;
        return globalThis.fetch(url, rest);
      },
    } : {}),
    features: {
      devInteractions: { enabled: false },
      dPoP: { enabled: false },
      registration: { enabled: true, initialAccessToken: false },
      // --cimd: Client ID Metadata Documents (draft-02): an https client_id is fetched
      // (Node must trust its certificate: NODE_EXTRA_CA_CERTS).
      clientIdMetadataDocument: { enabled: opts.cimd, ack: 'draft-02' },
      revocation: {
        enabled: true,
        // A client revokes its own tokens; another's are left alone (200, RFC 7009 2.2).
        async allowedPolicy(_ctx, client, token) { return token.clientId === client.clientId; },
      },
      introspection: {
        enabled: true,
        // The resource server's own client may introspect any token; a client its own.
        async allowedPolicy(ctx, client, token) {
          return client.clientId === introspectorId || token.clientId === client.clientId;
        },
      },
      resourceIndicators: {
        enabled: true,
        // Without `resource` at the token or refresh request, the granted one.
        async defaultResource(_ctx, _client, oneOf) { return oneOf; },
        async useGrantedResource() { return true; },
        async getResourceServerInfo(_ctx, indicator) {
          let url;
          try {
            url = new URL(indicator);
          } catch {
            throw new errors.InvalidTarget('resource must be an absolute URL');
          }
          if (!['http:', 'https:'].includes(url.protocol) || url.hash) {
            throw new errors.InvalidTarget('resource must be an http(s) URL without a fragment');
          }
          return resourceServerInfo(indicator);
        },
      },
    },
    // Refresh tokens for every client allowed the grant type; rotated on every use.
    async issueRefreshToken(_ctx, client) { return client.grantTypeAllowed('refresh_token'); },
    rotateRefreshToken: () => true,
    expiresWithSession: async () => false,
    ttl: {
      AccessToken: () => opts.accessTtl,
      RefreshToken: () => opts.refreshTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: opts.refreshTtl,
      IdToken: 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // Errors as JSON rather than an HTML page, for tests to read.
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

// --- INTERACTIONS --------------------------------------------------------------------------
//
// GET  /interaction/UID          what is asked: JSON {"uid", "prompt": "login"|"consent",
//                                "details", "client_id", "params"} with Accept: application/json,
//                                else a small HTML page with the form(s) below
// POST /interaction/UID/login    form `login=NAME`: signs NAME in (sub = NAME)
// POST /interaction/UID/confirm  grants what was asked (scopes for each resource)
// POST /interaction/UID/abort    refuses: the client gets error=access_denied
// Each POST answers 303 to the authorization endpoint's resume URL (/auth/UID), which answers
// 303 to the next interaction or to the client's redirect_uri with ?code=..&state=..&iss=..
// The `_interaction` and `_interaction_resume` cookies set by /auth must come along.

function readForm(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > 64 * 1024) {
        reject(new Error('form too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(provider, req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, 'application/json', JSON.stringify({ error: 'invalid_interaction', error_description: err.message }));
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, 'application/json', JSON.stringify({ error: 'invalid_interaction', error_description: 'uid mismatch' }));
    return;
  }
  const { prompt, params, session } = details;
  if (req.method === 'GET' && !action) {
    const doc = { uid, prompt: prompt.name, details: prompt.details, client_id: params.client_id, params };
    if ((req.headers.accept ?? '').includes('application/json')) {
      send(res, 200, 'application/json', JSON.stringify(doc));
      return;
    }
    const form = prompt.name === 'login'
      ? `<form method="post" action="/interaction/${uid}/login"><input name="login" autofocus>
         <button type="submit">Sign in</button></form>`
      : `<p>Allow <b>${escapeHtml(params.client_id)}</b>: ${escapeHtml(params.scope ?? '')}
         for ${escapeHtml(params.resource ?? '')}?</p>
         <form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>`;
    send(res, 200, 'text/html; charset=utf-8', `<!doctype html><title>${prompt.name}</title>${form}
      <form method="post" action="/interaction/${uid}/abort"><button type="submit">Cancel</button></form>`);
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, 'application/json', JSON.stringify({ error: 'method_not_allowed' }));
    return;
  }
  const form = await readForm(req);
  let result;
  if (action === 'login') {
    const login = (form.get('login') ?? '').trim();
    if (prompt.name !== 'login' || !login) {
      send(res, 400, 'application/json', JSON.stringify({ error: 'invalid_request', error_description: `prompt is ${prompt.name}; login needs a name` }));
      return;
    }
    log(`event login sub=${login} client=${params.client_id}`);
    result = { login: { accountId: login } };
  } else if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      send(res, 400, 'application/json', JSON.stringify({ error: 'invalid_request', error_description: `prompt is ${prompt.name}` }));
      return;
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    log(`event consent sub=${session.accountId} client=${params.client_id}`);
    result = { consent: { grantId: await grant.save() } };
  } else if (action === 'abort') {
    result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else {
    send(res, 404, 'application/json', JSON.stringify({ error: 'not_found' }));
    return;
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: action !== 'login' });
}

// --- the server ----------------------------------------------------------------------------

// Test controls (loopback only, no auth; not part of any standard):
// POST /__control/token-delay  form `seconds=N`: hold every later /token request N seconds
//                               before answering it (0: answer at once again); answers the
//                               new value as JSON {"token_delay": N}.
// POST /__control/token-busy   form `count=N`: answer the next N /token requests 429
//                               {"error":"temporarily_unavailable"} (a rate limit, not a
//                               refused grant); answers {"token_busy": N}.
// POST /__control/token-hold   form `seconds=N`: answer every later /token request at once
//                               (tokens issued, refresh tokens rotated) but hold the answer
//                               N seconds before sending it; {"token_hold": N}.
let tokenDelay = 0;
let tokenBusy = 0;
let tokenHold = 0;

// Each control: the form field it reads, whether that must be an integer, and what it sets.
const CONTROLS = {
  'token-delay': { field: 'seconds', integer: false, set: (v) => { tokenDelay = v; } },
  'token-hold': { field: 'seconds', integer: false, set: (v) => { tokenHold = v; } },
  'token-busy': { field: 'count', integer: true, set: (v) => { tokenBusy = v; } },
};

async function control(req, res, name) {
  const c = CONTROLS[name];
  if (req.method !== 'POST' || !c) {
    send(res, 404, 'application/json', JSON.stringify({ error: 'not_found' }));
    return;
  }
  const value = Number((await readForm(req)).get(c.field));
  if (!(c.integer ? Number.isInteger(value) : Number.isFinite(value)) || value < 0) {
    const kind = c.integer ? 'an integer' : 'a number';
    send(res, 400, 'application/json', JSON.stringify({ error: `${c.field} must be ${kind} >= 0` }));
    return;
  }
  c.set(value);
  log(`control ${name}=${value}`);
  send(res, 200, 'application/json', JSON.stringify({ [name.replace('-', '_')]: value }));
}

let provider;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const ctl = url.pathname.match(/^\/__control\/([a-z-]+)$/);
  if (ctl) {
    control(req, res, ctl[1]).catch((err) => {
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: String(err) }));
    });
    return;
  }
  if (url.pathname === '/token' && tokenBusy > 0) {
    tokenBusy -= 1;
    log('token request answered 429');
    send(res, 429, 'application/json', JSON.stringify({ error: 'temporarily_unavailable', error_description: 'busy' }));
    return;
  }
  if (url.pathname.endsWith('/revocation') && req.method === 'POST') log('revocation request');
  if (url.pathname === '/token' && tokenHold > 0) {
    const hold = tokenHold;
    const end = res.end.bind(res);
    res.end = (...args) => {
      log(`holding a token answer ${hold} s`);
      setTimeout(() => end(...args), hold * 1000);
      return res;
    };
  }
  if (url.pathname === '/token' && tokenDelay > 0) {
    const delay = tokenDelay;
    log(`holding a token request ${delay} s`);
    setTimeout(() => { if (!res.destroyed) provider.callback()(req, res); }, delay * 1000);
    return;
  }
  const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?\/?$/);
  if (match) {
    interaction(provider, req, res, match[1], match[2]).catch((err) => {
      log(`interaction error: ${err.stack ?? err}`);
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: 'server_error' }));
      else res.end();
    });
    return;
  }
  // RFC 6749 section 3.3: a request without `scope` gets the default one (every scope of
  // --scopes), as oidc-provider refuses an authorization that grants no scope at all.
  if (url.pathname === '/auth' && req.method === 'GET' && !url.searchParams.get('scope')) {
    url.searchParams.set('scope', opts.scopes);
    req.url = `${url.pathname}${url.search}`;
  }
  provider.callback()(req, res);
});

server.listen(opts.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = new Provider(issuer, configuration());
  if (opts.exchangeJwks) {
    provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, new Set([
      'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
      'requested_token_type', 'resource', 'audience', 'scope',
    ]));
  }
  // One line per event worth seeing in a test's log (never a token).
  const who = (ctx) => {
    const client = ctx?.oidc?.client?.clientId;
    const gty = ctx?.oidc?.params?.grant_type;
    const sub = ctx?.oidc?.entities?.Account?.accountId;
    return `${gty ? ` grant_type=${gty}` : ''}${client ? ` client=${client}` : ''}${sub ? ` sub=${sub}` : ''}`;
  };
  const why = (err) => ` error=${err?.error ?? err?.name} (${err?.error_detail ?? err?.error_description ?? err?.message})`;
  provider.on('grant.success', (ctx) => log(`event grant.success${who(ctx)}`));
  provider.on('grant.revoked', (ctx, grantId) => log(`event grant.revoked grant=${grantId}${who(ctx)}`));
  provider.on('registration_create.success', (ctx, client) => log(`event registration client=${client.clientId}`));
  for (const event of ['grant.error', 'authorization.error', 'revocation.error', 'introspection.error',
    'registration_create.error', 'server_error']) {
    provider.on(event, (ctx, err) => log(`event ${event}${who(ctx)}${why(err)}`));
  }
  log(`listening on ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
