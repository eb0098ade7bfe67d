//! The MCP handlers of `/mcp/{server}`: POST (Streamable HTTP, both eras), GET (the
//! session's stream), DELETE (end a session), `initialize`.
//!
//! Checks run in this order, each failing with one clear answer: unknown server (404),
//! `Origin` (403), bearer token (401 with `WWW-Authenticate`, 403 for another server's
//! grant), content type (415), accept (406), body size (413), JSON-RPC envelope (400),
//! session (400 missing, 404 unknown). Then a `tools/call` goes to [`crate::pipeline`];
//! every other message is relayed ([`crate::relay`]) with its answer hook.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use toolgate_protocol::{error_codes, error_response, Envelope, EnvelopeError, Era, Kind};
use toolgate_store::Grant;

use crate::call::CallCtx;
use crate::clock::now_ms;
use crate::config::{Pinning, ServerConfig, Transport};
use crate::enforce::{Hook, PinCtx, Sanitize};
use crate::pipeline::call_tool;
use crate::session::{Session, UpstreamSession};
use crate::state::AppState;
use crate::trail;
use toolgate_protocol::sse::encode;

use super::admission::{
    admit, admit_session, bearer, refresh_keys, session_of, version_header_ok, Reject,
    BAD_VERSION_HEADER,
};
use crate::relay::{
    http_parts, open_channel, relay_one_way, relay_request, relay_response, short_err,
    upstream_failure, upstream_request,
};

use crate::respond::{
    http_error, json_response, sse_response, METHOD_HEADER, NAME_HEADER, SESSION_HEADER,
    VERSION_HEADER,
};
/// The first revision of the stateless era: no GET stream, no DELETE.
const MODERN_ERA: &str = "2026-07-28";

/// A GET or DELETE in the stateless era (by its `MCP-Protocol-Version`): 405.
fn modern_get_or_delete(headers: &HeaderMap) -> Option<Reject> {
    let v = headers.get(VERSION_HEADER)?.to_str().ok()?;
    if v < MODERN_ERA || headers.contains_key(SESSION_HEADER) {
        return None;
    }
    Some(
        Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            error_codes::INVALID_REQUEST,
            "the 2026-07-28 era has no GET stream and no DELETE: send requests with POST",
        )
        .with_header(header::ALLOW, HeaderValue::from_static("POST")),
    )
}

fn new_session_id() -> String {
    toolgate_store::grants::random_hex(16)
        .map(|h| format!("tgs_{h}"))
        .unwrap_or_else(|_| format!("tgs_{}", now_ms()))
}

pub(super) async fn post_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    refresh_keys(&st, &headers).await;
    let (cfg, mut srv, grant) = match admit(&st, &headers, &server).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "null",
            error_codes::INVALID_REQUEST,
            "Content-Type must be application/json",
        );
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*")
        .to_ascii_lowercase();
    let accepts_sse = accept.contains("text/event-stream") || accept.contains("*/*");
    if !(accept.contains("application/json") || accepts_sse || accept.contains("application/*")) {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            "null",
            error_codes::INVALID_REQUEST,
            "Accept must include application/json and text/event-stream",
        );
    }
    let read = tokio::time::timeout(
        Duration::from_secs(cfg.body_timeout_secs),
        axum::body::to_bytes(body, cfg.max_body),
    )
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_length_limit(&e) => {
            return http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "null",
                error_codes::INVALID_REQUEST,
                &format!("request body over the limit of {} bytes", cfg.max_body),
            )
        }
        Ok(Err(e)) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "null",
                error_codes::INVALID_REQUEST,
                &format!("the request body could not be read: {e}"),
            )
        }
        Err(_) => {
            return http_error(
                StatusCode::REQUEST_TIMEOUT,
                "null",
                error_codes::INVALID_REQUEST,
                &format!(
                    "the request body did not arrive within {} s (body_timeout)",
                    cfg.body_timeout_secs
                ),
            )
        }
    };
    let env = match Envelope::parse(&bytes) {
        Ok(e) => e,
        Err(e) => {
            let code = match e {
                EnvelopeError::Parse(_) => error_codes::PARSE_ERROR,
                _ => error_codes::INVALID_REQUEST,
            };
            return http_error(StatusCode::BAD_REQUEST, "null", code, &e.to_string());
        }
    };
    let id_text = env.id_text().to_string();
    // A legacy request must carry a well-formed version header. A modern one (its version
    // in `_meta`) goes on: the upstream answers an unsupported version itself (-32022 with
    // the versions it supports), which toolgate cannot know.
    if env.era() != Era::Modern && !version_header_ok(&headers) {
        return http_error(
            StatusCode::BAD_REQUEST,
            &id_text,
            error_codes::INVALID_REQUEST,
            BAD_VERSION_HEADER,
        );
    }
    // `auth = "oauth"`: the identity's own token goes upstream; without one, nothing does.
    // (Found only for a request that reads as one: nothing is asked of the store or the
    // authorization server for a malformed body.)
    let (upstream_who, offline) =
        match crate::oauth::attach(&st, &mut srv, &grant.identity, bearer(&headers)).await {
            Ok(who) => (who, None),
            Err(e) => (None, Some(e)),
        };
    if let Some(e) = &offline {
        // Only a `tools/call` gets its denial as a tool result (recorded, below).
        if !(env.kind == Kind::Request && env.method() == "tools/call") {
            return not_connected(&id_text, e);
        }
    }
    if env.method() == "initialize" && env.kind == Kind::Request {
        // `initialize` in the 2026-07-28 era, where it is removed: a server of that era says
        // so itself; for one toolgate translates, toolgate does (404, -32601).
        if env.era() == Era::Modern {
            let translated = match &srv.transport {
                Transport::Http { .. } => crate::era::speaks_modern(&st, &srv).await == Some(false),
                Transport::Stdio { .. } | Transport::Sse { .. } | Transport::Virtual { .. } => true,
            };
            if translated {
                if let Err(r) = check_translated(&headers, &env, &bytes, &id_text) {
                    return *r;
                }
            }
        }
        if st.audit.is_some() {
            let r =
                trail::request_record(&cfg, &srv, &grant, "", "initialize", &id_text, bytes.len());
            record_forwarded(&st, Some(r));
        }
        return initialize(&st, &cfg, &srv, &grant, &headers, bytes, &id_text).await;
    }
    let session = match headers.get(SESSION_HEADER) {
        None if env.era() == Era::Modern => {
            if let Err(r) = check_modern_headers(&headers, &env, &id_text) {
                return r.into_response();
            }
            let legacy_http = matches!(srv.transport, Transport::Http { .. })
                && crate::era::speaks_modern(&st, &srv).await == Some(false);
            match &srv.transport {
                // Stateless: each request stands alone; nothing is kept between them.
                Transport::Http { .. } if !legacy_http => Arc::new(Session::new(
                    format!("modern-{}", new_session_id().trim_start_matches("tgs_")),
                    srv.name.clone(),
                    grant.id.clone(),
                    UpstreamSession::Http { session_id: None },
                )),
                // toolgate holds the upstream sessions, in the legacy era: one set per
                // grant (a virtual server's included servers, or the one stdio or legacy
                // SSE server).
                // (A Streamable HTTP server that serves only the legacy era likewise.)
                Transport::Http { .. }
                | Transport::Virtual { .. }
                | Transport::Stdio { .. }
                | Transport::Sse { .. } => {
                    // No server checks this era's envelope here: toolgate does.
                    let caps = match check_translated(&headers, &env, &bytes, &id_text) {
                        Ok(caps) => caps,
                        Err(r) => return *r,
                    };
                    match crate::virtual_server::pooled(&st, &cfg, &srv, &grant, caps) {
                        Ok(s) => s,
                        Err(e) => {
                            return http_error(
                                StatusCode::TOO_MANY_REQUESTS,
                                &id_text,
                                error_codes::INVALID_REQUEST,
                                &e,
                            )
                        }
                    }
                }
            }
        }
        _ => match session_of(&st, &headers, &srv, &grant, &id_text) {
            Ok(s) => s,
            Err(r) => return r.into_response(),
        },
    };
    // The client's answer to a question toolgate asked (an approval through the client):
    // it goes to the held call, never upstream.
    if env.kind == Kind::Response {
        if let Some(raw) = env
            .id
            .map(|r| r.get())
            .filter(|r| crate::ask::is_question_id(r) || crate::input::is_question_id(r))
        {
            let response = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if !session.answer(raw, response) {
                tracing::info!(session = %session.id, "an answer to a question no held call waits for (decided or expired meanwhile)");
            }
            return StatusCode::ACCEPTED.into_response();
        }
    }
    // The client cancelled a request of this session: its answer ends now (the call's
    // outcome is recorded as abandoned); the notification still goes upstream.
    if env.kind == Kind::Notification && env.method() == "notifications/cancelled" {
        let cancelled = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/params/requestId").map(|id| id.to_string()));
        // (The key as `id_key_of` makes it: the id re-serialised.)
        if let Some(id) = cancelled {
            if session.cancel(&id) {
                tracing::info!(session = %session.id, request = %id, "the client cancelled a request");
            }
        }
    }
    // A legacy client's session over a 2026-07-28-only server: its requests go in that
    // era; it has no notifications or responses to send such a server (a cancellation
    // closes the request, above).
    let (bytes, headers) = match &session.modern_upstream {
        Some(_) if env.kind != Kind::Request => return StatusCode::ACCEPTED.into_response(),
        Some(caps) => match crate::era::as_modern(&bytes, &headers, caps) {
            Some(rewritten) => rewritten,
            None => {
                return http_error(
                    StatusCode::BAD_REQUEST,
                    &id_text,
                    error_codes::INVALID_REQUEST,
                    "the request could not be read",
                )
            }
        },
        None => (bytes.clone(), headers),
    };
    // In use until its answer ends: never closed to make room for another session.
    let in_use = session.enter();
    // A legacy client's request with a streamed answer can be cancelled
    // (`notifications/cancelled`) until that answer ends.
    let cancellable = env.kind == Kind::Request && env.era() != Era::Modern && id_text != "null";
    let is_virtual = matches!(session.upstream, UpstreamSession::Virtual(_));
    // The agent's JWT, for members reached by token exchange (kept only with [auth.jwt]).
    if let (UpstreamSession::Virtual(members), Some(_)) = (&session.upstream, &st.jwt) {
        if let Some(jwt) = bearer(&headers).filter(|t| crate::jwt::looks_like_jwt(t)) {
            members.agent_jwt.note(jwt);
        }
    }
    // The retry of a 2026-07-28 request whose legacy server asked the client something
    // (toolgate's `requestState`): the same call, judged already, goes on (crate::input).
    if is_virtual
        && env.kind == Kind::Request
        && matches!(
            env.method(),
            "tools/call" | "prompts/get" | "resources/read"
        )
        && crate::input::is_retry(&bytes)
    {
        let r = crate::input::resume(&st, &cfg, &session, &bytes, &id_text, accepts_sse).await;
        return keep_until_body_ends(r, in_use);
    }
    let response = async {
        if env.kind != Kind::Request && is_virtual {
            return crate::virtual_server::one_way(&st, &cfg, &session, bytes.clone()).await;
        }
        if env.kind != Kind::Request {
            return relay_one_way(&st, &srv, &session, &headers, bytes.clone()).await;
        }
        let policy = grant
            .policy
            .as_ref()
            .and_then(|p| cfg.policies.get(p))
            .cloned();
        st.metrics.request(&srv.name, env.method());
        let record = st.audit.as_ref().map(|_| {
            let mut r = trail::request_record(
                &cfg,
                &srv,
                &grant,
                &session.id,
                env.method(),
                &id_text,
                bytes.len(),
            );
            // Which era each side spoke: a session toolgate holds (virtual servers, and
            // 2026-07-28 clients of legacy servers) is legacy upstream; otherwise the
            // agent's era is relayed as it is.
            let modern = env.era() == Era::Modern;
            let era = |m: bool| if m { crate::era::MODERN } else { "legacy" }.to_string();
            r.client_era = Some(era(modern));
            r.upstream_era = Some(era(
                (modern && !is_virtual) || session.modern_upstream.is_some()
            ));
            if let Some(who) = &upstream_who {
                r.upstream_sub = who.subject.clone();
                r.upstream_client_id = Some(who.client_id.clone());
            }
            r
        });
        if is_virtual && env.method() != "tools/call" {
            record_forwarded(&st, record);
            let progress = env.progress_token.map(|t| t.get().to_string());
            return crate::virtual_server::Request {
                st: &st,
                cfg: &cfg,
                srv: &srv,
                grant: &grant,
                session: &session,
                headers: &headers,
                bytes: bytes.clone(),
                method: env.method(),
                id_text: &id_text,
                progress: progress.as_deref(),
                accepts_sse,
                modern: env.era() == Era::Modern,
            }
            .answer()
            .await;
        }
        let hook = match env.method() {
            "tools/call" => {
                let Some(tool) = env.name.clone() else {
                    return json_response(
                        StatusCode::OK,
                        error_response(
                            &id_text,
                            error_codes::INVALID_PARAMS,
                            "tools/call needs `params.name`: the name of the tool to call, as a string",
                            None,
                        ),
                    );
                };
                let args = match env.arguments_value() {
                    Ok(a) => a,
                    Err(e) => {
                        return json_response(
                            StatusCode::OK,
                            error_response(
                                &id_text,
                                error_codes::INVALID_PARAMS,
                                &e.to_string(),
                                None,
                            ),
                        )
                    }
                };
                let progress = env.progress_token.map(|t| t.get().to_string());
                let span = st.otlp.as_ref().map(|e| {
                    let s = e.begin(&tool, env.traceparent.as_deref());
                    s.set("mcp.server", srv.name.clone());
                    s.set("toolgate.grant", grant.label.clone());
                    s
                });
                let route = is_virtual
                    .then(|| crate::virtual_server::route_in(&srv, &session, &tool))
                    .flatten();
                // Through a virtual server to an `auth = "oauth"` server: the record names
                // the upstream identity the member's request goes with.
                let mut record = record;
                if let (Some(r), Some(route)) = (record.as_mut(), route.as_ref()) {
                    if cfg.server(&route.server).is_some_and(|s| s.oauth.is_some()) {
                        let who =
                            crate::oauth::identity_at(&st, &route.server, &grant.identity).await;
                        if let Some(who) = who {
                            r.upstream_sub = who.subject;
                            r.upstream_client_id = Some(who.client_id);
                        }
                    }
                }
                let ctx = CallCtx {
                    route,
                    st: st.clone(),
                    cfg: cfg.clone(),
                    srv: srv.clone(),
                    grant: grant.clone(),
                    session: session.clone(),
                    headers: headers.clone(),
                    bytes: bytes.clone(),
                    id_text: id_text.clone(),
                    progress,
                    accepts_sse,
                    started,
                    tool,
                    args,
                    record,
                    modern: env.era() == Era::Modern,
                    span,
                };
                if is_virtual && ctx.route.is_none() {
                    // No include claims the name: nothing to forward; answered as a hidden
                    // tool is (-32602) and recorded as a denial.
                    let mut d = toolgate_policy::Decision::denied(
                        "(unknown tool)",
                        &format!(
                            "virtual server `{}` exposes no tool named `{}`",
                            srv.name, ctx.tool
                        ),
                    );
                    d.hidden = true;
                    return ctx.deny(crate::enforce::denial_message(&id_text, &d), &d, None);
                }
                if let Some(e) = &offline {
                    let d = toolgate_policy::Decision::denied(NOT_CONNECTED, &e.to_string());
                    return ctx.deny(crate::enforce::denial_message(&id_text, &d), &d, None);
                }
                return call_tool(ctx).await;
            }
            "tools/list" => {
                record_forwarded(&st, record);
                let pins = (srv.pinning != Pinning::Off).then(|| PinCtx {
                    store: st.store.clone(),
                    server: srv.name.clone(),
                    enforce: srv.pinning == Pinning::Enforce,
                    audit: st.audit.clone(),
                    client_caps: session.client_caps.clone(),
                    clock: st.clock.clone(),
                    cache: st.cache.clone(),
                });
                Hook::FilterTools(
                    policy,
                    pins,
                    Sanitize {
                        on: srv.sanitize_descriptions,
                        server: srv.name.clone(),
                    },
                )
            }
            _ => {
                record_forwarded(&st, record);
                Hook::None
            }
        };
        let progress = env.progress_token.map(|t| t.get().to_string());
        if session.modern_upstream.is_some()
            && matches!(env.method(), "prompts/get" | "resources/read")
        {
            // What the server asks the client (input_required) is asked on the stream.
            return crate::input::LegacyRequest {
                st: st.clone(),
                cfg: cfg.clone(),
                srv: srv.clone(),
                session: session.clone(),
                headers: headers.clone(),
                bytes: bytes.clone(),
                id_text: id_text.clone(),
                progress,
            }
            .answer(hook, accepts_sse)
            .await;
        }
        relay_request(
            &st,
            &cfg,
            &srv,
            &session,
            &headers,
            bytes.clone(),
            &id_text,
            progress.as_deref(),
            accepts_sse,
            hook,
        )
        .await
    };
    // Only a streamed answer ends at a cancellation: by then the call was judged and
    // recorded, and what is dropped is the upstream's answer (outcome `abandoned`).
    let response = response.await;
    let response = if cancellable {
        end_when_cancelled(response, &session, &id_text)
    } else {
        response
    };
    keep_until_body_ends(response, in_use)
}

/// The rule of a call refused because its identity has no upstream connection.
pub const NOT_CONNECTED: &str = "(not connected)";

/// A request other than `tools/call` for an identity with no usable upstream connection
/// (or when the store cannot say): refused with the reason, never sent upstream.
fn not_connected(id_text: &str, e: &crate::oauth::BrokerError) -> Response {
    let code = match e {
        crate::oauth::BrokerError::NotConnected(_) => error_codes::INVALID_REQUEST,
        _ => error_codes::UPSTREAM_ERROR,
    };
    http_error(e.status(), id_text, code, &e.to_string())
}

/// Resolves when the client cancels (never, if the request stops being cancellable).
async fn cancelled(mut rx: tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A streamed answer that ends when the client cancels its request (what comes after is
/// dropped, and with it the upstream's answer: the call is recorded as abandoned).
fn end_when_cancelled(response: Response, session: &Arc<Session>, id_text: &str) -> Response {
    let streams = crate::respond::is_sse(&response);
    if !streams {
        return response;
    }
    let Some(cancel) = session.cancellable(&crate::session::id_key_of(id_text)) else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let ended = Box::pin(cancelled(cancel.rx.clone()));
    let cut = Response::from_parts(
        parts,
        Body::from_stream(body.into_data_stream().take_until(ended)),
    );
    // The request stays cancellable while its answer streams.
    keep_until_body_ends(cut, cancel)
}

/// Holds `guard` until the response's body has been sent (or dropped).
fn keep_until_body_ends<G: Send + Sync + 'static>(response: Response, guard: G) -> Response {
    let streams = crate::respond::is_sse(&response);
    if !streams {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// True when reading a body failed because it passed the size limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = err.source();
    }
    false
}

/// Records a request forwarded without judgement beyond the grant (not waited for).
fn record_forwarded(st: &AppState, record: Option<toolgate_audit::Record>) {
    if let (Some(log), Some(mut r)) = (&st.audit, record) {
        r.decision = Some("allow".into());
        log.append(r);
    }
}

/// The 2026-07-28 era's `Mcp-Method` and `Mcp-Name` headers must agree with the body
/// (policy is decided from the body; a mismatch could fool a router or a WAF in front).
fn check_modern_headers(
    headers: &HeaderMap,
    env: &Envelope<'_>,
    id_text: &str,
) -> Result<(), Reject> {
    let mismatch = |what: &str, header: &str, body: &str| {
        Err(Reject::new(
            StatusCode::BAD_REQUEST,
            error_codes::HEADER_MISMATCH,
            format!("the {what} header `{header}` does not match the body's `{body}`"),
        )
        .for_id(id_text))
    };
    // Header values are compared without their surrounding whitespace (RFC 9110 §5.5).
    if let Some(h) = headers.get(METHOD_HEADER) {
        let h = h.to_str().unwrap_or("").trim();
        if h != env.method() {
            return mismatch("Mcp-Method", h, env.method());
        }
    }
    if let (Some(h), Some(name)) = (headers.get(NAME_HEADER), env.name.as_deref()) {
        let h = h.to_str().unwrap_or("").trim();
        if h != name {
            return mismatch("Mcp-Name", h, name);
        }
    }
    Ok(())
}

/// The 2026-07-28 methods toolgate serves on the sessions it holds for servers without
/// that era; any other method there is not found (HTTP 404, -32601), as that era says.
const TRANSLATED_METHODS: [&str; 10] = [
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "subscriptions/listen",
];

/// The 2026-07-28 error for a protocol version a server does not serve.
const UNSUPPORTED_VERSION: i64 = -32022;

/// Checks a 2026-07-28 request that toolgate answers through a legacy session of its own
/// (no upstream of that era sees it to check it): `_meta` carries the version and the
/// client's capabilities (else HTTP 400, -32602); the `MCP-Protocol-Version` header is
/// there and says the same (else 400, -32020); the version is 2026-07-28 (else 400,
/// -32022 with the supported and requested versions); `Mcp-Method` is there, and
/// `Mcp-Name` for a request that names its target (else 400, -32020); the method is one of
/// that era's (else 404, -32601). Gives the [`crate::virtual_server::ClientAsks`] the
/// client declared.
fn check_translated(
    headers: &HeaderMap,
    env: &Envelope<'_>,
    bytes: &[u8],
    id_text: &str,
) -> Result<crate::virtual_server::ClientAsks, Box<Response>> {
    let reject = |status: StatusCode, code: i64, message: &str, data: Option<serde_json::Value>| {
        Err(Box::new(json_response(
            status,
            error_response(id_text, code, message, data),
        )))
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let meta = v.pointer("/params/_meta");
    let version = meta
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(serde_json::Value::as_str);
    let caps = meta
        .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
        .filter(|c| c.is_object());
    let (Some(version), Some(caps)) = (version, caps) else {
        if env.kind != Kind::Request {
            return Ok(crate::virtual_server::ClientAsks::default());
        }
        return reject(
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_PARAMS,
            "a 2026-07-28 request needs `params._meta` with `io.modelcontextprotocol/protocolVersion` and `io.modelcontextprotocol/clientCapabilities`",
            None,
        );
    };
    let header = headers
        .get(VERSION_HEADER)
        .and_then(|h| h.to_str().ok())
        .map(str::trim);
    if header != Some(version) {
        return reject(
            StatusCode::BAD_REQUEST,
            error_codes::HEADER_MISMATCH,
            &format!(
                "the MCP-Protocol-Version header `{}` does not match the body's `{version}`",
                header.unwrap_or("(none)")
            ),
            None,
        );
    }
    if version != crate::era::MODERN {
        return reject(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            Some(serde_json::json!({"supported": [crate::era::MODERN], "requested": version})),
        );
    }
    let asks = crate::virtual_server::ClientAsks::of(caps);
    if env.kind != Kind::Request {
        return Ok(asks);
    }
    let named = matches!(
        env.method(),
        "tools/call" | "prompts/get" | "resources/read"
    );
    for (header, needed) in [(METHOD_HEADER, true), (NAME_HEADER, named)] {
        if needed && headers.get(header).is_none() {
            return reject(
                StatusCode::BAD_REQUEST,
                error_codes::HEADER_MISMATCH,
                &format!(
                    "a 2026-07-28 `{}` request needs the `{header}` header",
                    env.method()
                ),
                None,
            );
        }
    }
    if !TRANSLATED_METHODS.contains(&env.method()) {
        return reject(
            StatusCode::NOT_FOUND,
            error_codes::METHOD_NOT_FOUND,
            &format!(
                "Method not found: `{}` (not a method of the 2026-07-28 era)",
                env.method()
            ),
            None,
        );
    }
    Ok(asks)
}

async fn initialize(
    st: &AppState,
    cfg: &crate::config::Config,
    srv: &ServerConfig,
    grant: &Grant,
    headers: &HeaderMap,
    bytes: Bytes,
    id_text: &str,
) -> Response {
    let our_id = new_session_id();
    // A place within the session caps, held until the session is in the table.
    let _slot = match st.sessions.reserve(
        &srv.name,
        &grant.id,
        crate::session::Caps::of(&cfg.sessions, &srv.transport),
    ) {
        Ok(slot) => slot,
        Err(full) => {
            st.metrics.session_refused(&srv.name);
            tracing::warn!(server = %srv.name, grant = %toolgate_protocol::Escaped(&grant.label), "session refused: {full}");
            let mut r = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                id_text,
                error_codes::INVALID_REQUEST,
                &format!("session refused: {full}"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return r;
        }
    };
    match &srv.transport {
        Transport::Http {
            url,
            headers: extra,
        } => {
            let init_body = bytes.clone();
            let req = upstream_request(st, reqwest::Method::POST, url, headers, extra, None)
                .timeout(Duration::from_secs(cfg.upstream_timeout_secs))
                .body(bytes);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return upstream_failure(id_text, &e, &srv.name),
            };
            // A server that refuses `initialize` but serves the 2026-07-28 era: toolgate
            // keeps the legacy client's session itself and speaks that era upstream.
            let legacy_header = headers
                .get(VERSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v < crate::era::MODERN);
            if resp.status().is_client_error()
                && legacy_header
                && crate::era::speaks_modern(st, srv).await == Some(true)
            {
                if let Some((session, answer)) =
                    crate::era::legacy_over_modern(st, srv, &grant.id, &our_id, &init_body, id_text)
                        .await
                {
                    st.sessions.insert(Arc::new(session));
                    tracing::info!(server = %srv.name, grant = %toolgate_protocol::Escaped(&grant.label), session = %our_id, "session opened (the server serves only the 2026-07-28 era: toolgate holds the session and speaks that era upstream)");
                    let mut out = json_response(StatusCode::OK, answer);
                    set_session_header(&mut out, &our_id);
                    return out;
                }
            }
            let upstream_sid = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let ok = resp.status().is_success();
            let mut out =
                relay_response(resp, id_text, Hook::None, &srv.name, cfg.max_answer, None).await;
            if ok {
                let s = Arc::new(
                    Session::new(
                        our_id.clone(),
                        srv.name.clone(),
                        grant.id.clone(),
                        UpstreamSession::Http {
                            session_id: upstream_sid,
                        },
                    )
                    .with_client_caps(crate::session::client_caps(&init_body)),
                );
                st.sessions.insert(s);
                set_session_header(&mut out, &our_id);
                tracing::info!(server = %srv.name, grant = %toolgate_protocol::Escaped(&grant.label), session = %our_id, "session opened");
            }
            out
        }
        Transport::Virtual { .. } => {
            let (session, answer) =
                crate::virtual_server::initialize(srv, grant, &our_id, &bytes, id_text);
            st.sessions.insert(session);
            tracing::info!(server = %srv.name, grant = %toolgate_protocol::Escaped(&grant.label), session = %our_id, "session opened (virtual server: its servers open when first needed)");
            let mut out = json_response(StatusCode::OK, answer);
            set_session_header(&mut out, &our_id);
            out
        }
        Transport::Stdio { .. } | Transport::Sse { .. } => {
            let proc = match open_channel(st, srv).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(server = %srv.name, "{e}");
                    return http_error(
                        StatusCode::BAD_GATEWAY,
                        id_text,
                        error_codes::UPSTREAM_ERROR,
                        &format!("upstream `{}` could not be reached: {e}", srv.name),
                    );
                }
            };
            let session = Arc::new(
                Session::new(
                    our_id.clone(),
                    srv.name.clone(),
                    grant.id.clone(),
                    UpstreamSession::Channel(proc),
                )
                .with_client_caps(crate::session::client_caps(&bytes)),
            );
            st.sessions.insert(session.clone());
            tracing::info!(server = %srv.name, grant = %toolgate_protocol::Escaped(&grant.label), session = %our_id, "session opened (upstream channel open)");
            let mut out = relay_request(
                st,
                cfg,
                srv,
                &session,
                headers,
                bytes,
                id_text,
                None,
                false,
                Hook::None,
            )
            .await;
            if out.status().is_success() {
                set_session_header(&mut out, &our_id);
            } else {
                st.sessions.remove(&our_id);
            }
            out
        }
    }
}

fn set_session_header(r: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
}

pub(super) async fn get_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = modern_get_or_delete(&headers) {
        return r.into_response();
    }
    if !headers.contains_key(SESSION_HEADER) {
        if let Err(r) = admit(&st, &headers, &server).await {
            return r.into_response();
        }
        // What a legacy HTTP+SSE (2024-11-05) client does first: say what is served here.
        return http_error(
            StatusCode::BAD_REQUEST,
            "null",
            error_codes::INVALID_REQUEST,
            "toolgate serves Streamable HTTP (MCP 2025-03-26 and later) here: POST `initialize` first; a GET stream needs the Mcp-Session-Id it returns. A GET without one is how a legacy HTTP+SSE (2024-11-05) client starts, which toolgate does not serve to agents: set the client's transport to Streamable HTTP",
        );
    }
    let (srv, session) = match admit_session(&st, &headers, &server).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let in_use = session.enter();
    let response = get_stream(&st, &srv, &session, &headers).await;
    keep_until_body_ends(response, in_use)
}

/// The session's GET stream (server-to-client messages).
async fn get_stream(
    st: &Arc<AppState>,
    srv: &ServerConfig,
    session: &Session,
    headers: &HeaderMap,
) -> Response {
    match &session.upstream {
        UpstreamSession::Virtual(_) => {
            crate::virtual_server::stream(st, &st.config(), srv, session).await
        }
        UpstreamSession::Channel(proc) => {
            let mut rx = proc.open_stream();
            let stream = async_stream::stream! {
                let mut keepalive = tokio::time::interval(Duration::from_secs(15));
                keepalive.tick().await;
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => yield Ok::<Bytes, std::io::Error>(encode(&String::from_utf8_lossy(&m), None)),
                            None => break,
                        },
                        _ = keepalive.tick() => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                    }
                }
            };
            sse_response(Body::from_stream(stream))
        }
        // A session over a 2026-07-28-only server: that era's listen stands in.
        UpstreamSession::Http { .. } if session.modern_upstream.is_some() => {
            let caps = session.modern_upstream.clone().unwrap_or_default();
            let cfg = st.config();
            crate::era::listen_for_legacy(st, &cfg, srv, session, &caps).await
        }
        UpstreamSession::Http { session_id } => {
            let Some((url, extra)) = http_parts(srv) else {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            };
            let req = upstream_request(
                st,
                reqwest::Method::GET,
                url,
                headers,
                extra,
                session_id.as_deref(),
            )
            .header(header::ACCEPT, "text/event-stream");
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    let status = r.status();
                    let stream = r.bytes_stream().map(|c| c.map_err(std::io::Error::other));
                    let mut resp = sse_response(Body::from_stream(stream));
                    *resp.status_mut() = status;
                    resp
                }
                Ok(r) if crate::relay::refused_token(srv, r.status()) => {
                    crate::relay::token_refused(srv, "null")
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.bytes().await.unwrap_or_default();
                    (status, body).into_response()
                }
                Err(e) => upstream_failure("null", &e, &srv.name),
            }
        }
    }
}

pub(super) async fn delete_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = modern_get_or_delete(&headers) {
        return r.into_response();
    }
    let (srv, session) = match admit_session(&st, &headers, &server).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    if let (
        UpstreamSession::Http {
            session_id: Some(sid),
        },
        Some((url, extra)),
    ) = (&session.upstream, http_parts(&srv))
    {
        let req = upstream_request(
            &st,
            reqwest::Method::DELETE,
            url,
            &headers,
            extra,
            Some(sid),
        )
        .timeout(Duration::from_secs(10));
        if let Err(e) = req.send().await {
            tracing::warn!(server = %srv.name, "upstream DELETE failed: {}", short_err(&e));
        }
    }
    crate::virtual_server::end(&st, &session).await;
    st.sessions.remove(&session.id);
    tracing::info!(server = %srv.name, session = %session.id, "session closed by the agent");
    StatusCode::OK.into_response()
}
