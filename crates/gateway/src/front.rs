//! The HTTP front: `/mcp/{server}` (Streamable HTTP, legacy era), `/healthz`, `/readyz`.
//!
//! Checks run in this order, each failing with one clear answer: unknown server (404),
//! `Origin` (403), bearer token (401 with `WWW-Authenticate`, 403 for another server's
//! grant), content type (415), accept (406), body size (413), JSON-RPC envelope (400),
//! session (400 missing, 404 unknown). Then the message is judged and relayed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use toolgate_protocol::{error_codes, error_response, Envelope, EnvelopeError, Era, Kind};
use toolgate_store::{Grant, GrantStatus};

use crate::call::{call_tool, CallCtx};
use crate::config::{Pinning, ServerConfig, Transport};
use crate::enforce::{classify, Hook, PinCtx, Sanitize, Seen};
use crate::session::{Session, UpstreamSession};
use crate::state::{now_ms, AppState};
use crate::trail;
use crate::upstream::channel::Channel;
use crate::upstream::id_key;
use toolgate_protocol::sse::{encode, SseParser};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
/// The first revision of the stateless era: no GET stream, no DELETE.
const MODERN_ERA: &str = "2026-07-28";

/// A GET or DELETE in the stateless era (by its `MCP-Protocol-Version`): 405.
fn modern_get_or_delete(headers: &HeaderMap) -> Option<Response> {
    let v = headers.get(VERSION_HEADER)?.to_str().ok()?;
    if v < MODERN_ERA || headers.contains_key(SESSION_HEADER) {
        return None;
    }
    let mut r = http_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "null",
        error_codes::INVALID_REQUEST,
        "the 2026-07-28 era has no GET stream and no DELETE: send requests with POST",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    Some(r)
}

/// The router: a value, tested with `oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mcp/{server}",
            post(post_mcp).get(get_mcp).delete(delete_mcp),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::handler))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(resource_metadata),
        )
        .merge(crate::api::routes())
        .merge(crate::dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::host::guard,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}

/// `/readyz`: 200 when the store, the counter store and the audit log all answer, else
/// 503; the body names each part's state (`ok` or the error), so a load balancer takes a
/// replica out while its Redis or PostgreSQL is unreachable and back when it recovers.
/// When every server has `state_fail_mode = "open"`, only the state store (grants) decides:
/// the replica serves while the counters' Redis or PostgreSQL is down (`"degraded": true`). At most 3 s.
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let needs_shared = st
        .config()
        .servers
        .iter()
        .any(|s| s.state_fail_mode == crate::config::FailMode::Closed);
    let check = tokio::task::spawn_blocking(move || {
        let store = st.store.check().map_err(|e| e.to_string());
        let counters = st.counters.check().map_err(|e| e.to_string());
        let audit = match &st.audit {
            Some(log) => log.check().map_err(|e| e.to_string()),
            None => Ok(()),
        };
        (store, counters, audit, st.audit.is_some())
    });
    let Ok(Ok((store, counters, audit, audited))) =
        tokio::time::timeout(Duration::from_secs(3), check).await
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "error": "the checks did not answer within 3 s"})),
        )
            .into_response();
    };
    let shared_ok = counters.is_ok() && audit.is_ok();
    let ready = store.is_ok() && (shared_ok || !needs_shared);
    let show = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::Value::from("ok"),
        Err(e) => serde_json::Value::from(e.as_str()),
    };
    let body = serde_json::json!({
        "ready": ready,
        "degraded": ready && !shared_ok,
        "store": show(&store),
        "counters": show(&counters),
        "audit": if audited { show(&audit) } else { serde_json::Value::from("off") },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// A request refused before MCP: the one place such refusals become HTTP.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    code: i64,
    message: String,
    www_authenticate: Option<String>,
}

impl Reject {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Reject {
            status,
            code,
            message: message.into(),
            www_authenticate: None,
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut r = http_error(self.status, "null", self.code, &self.message);
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// An HTTP error carrying a JSON-RPC error body.
fn http_error(status: StatusCode, id_text: &str, code: i64, message: &str) -> Response {
    let mut r = (status, error_response(id_text, code, message, None)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn unauthorized(message: &str, invalid: bool) -> Reject {
    let value = if invalid {
        format!(
            "Bearer realm=\"toolgate\", error=\"invalid_token\", error_description=\"{message}\""
        )
    } else {
        "Bearer realm=\"toolgate\"".to_string()
    };
    Reject {
        www_authenticate: Some(value),
        ..Reject::new(
            StatusCode::UNAUTHORIZED,
            error_codes::INVALID_REQUEST,
            message,
        )
    }
}

fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(origin) else {
        return false;
    };
    matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    )
}

/// The token of an `Authorization: Bearer TOKEN` header value, if it is one.
fn bearer_value(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The request's bearer token, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_value)
}

/// Authenticates the bearer token to an active grant for `server`.
async fn authenticate(st: &AppState, headers: &HeaderMap, server: &str) -> Result<Grant, Reject> {
    if let Some(g) = st.local_grant.as_ref().filter(|g| g.server == server) {
        return Ok(g.clone());
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing bearer token: send `Authorization: Bearer TOKEN`",
            false,
        ));
    };
    let token = value.to_str().ok().and_then(bearer_value);
    let Some(token) = token else {
        return Err(unauthorized(
            "malformed Authorization header: expected `Bearer TOKEN`",
            true,
        ));
    };
    let grant = match st.grant_by_token(token).await {
        Ok(Some(g)) => g,
        Ok(None) if crate::jwt::looks_like_jwt(token) && st.jwt.is_some() => {
            return grant_for_jwt(st, token, server).await;
        }
        Ok(None) => return Err(unauthorized("unknown token", true)),
        Err(e) => {
            tracing::error!("grant lookup failed: {e}");
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::INTERNAL_ERROR,
                "the grant store is unavailable; try again",
            ));
        }
    };
    match grant.status(now_ms()) {
        GrantStatus::Active => {}
        GrantStatus::Expired => return Err(unauthorized("this token has expired", true)),
        GrantStatus::Revoked => return Err(unauthorized("this token was revoked", true)),
    }
    if grant.server != server {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            format!(
                "this token is for server `{}`, not `{server}`",
                grant.server
            ),
        ));
    }
    Ok(grant)
}

/// The grant a verified JWT's identity holds on `server`.
async fn grant_for_jwt(st: &AppState, token: &str, server: &str) -> Result<Grant, Reject> {
    let Some(v) = &st.jwt else {
        return Err(unauthorized("unknown token", true));
    };
    let identity = v.verify(token).map_err(|e| unauthorized(&e, true))?;
    let (srv, who) = (server.to_string(), identity.clone());
    match st
        .state(move |s| s.grant_for_identity(&srv, &who, now_ms()))
        .await
    {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            format!("no active grant for identity `{identity}` on server `{server}` (toolgate grants create --server {server} --label LABEL --identity {identity})"),
        )),
        Err(e) => {
            tracing::error!("grant lookup failed: {e}");
            Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::INTERNAL_ERROR,
                "the grant store is unavailable; try again",
            ))
        }
    }
}

/// Before the synchronous checks: fetches the issuer's keys again if a JWT names a key
/// id not seen yet (key rotation).
async fn refresh_keys(st: &AppState, headers: &HeaderMap) {
    let Some(v) = &st.jwt else {
        return;
    };
    if let Some(t) = bearer(headers).filter(|t| crate::jwt::looks_like_jwt(t)) {
        v.refresh_if_unknown(t).await;
    }
}

/// Where this server's protected resource metadata is (RFC 9728), from the request's host.
fn resource_metadata_url(headers: &HeaderMap, server: &str) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Some(format!(
        "{scheme}://{host}/.well-known/oauth-protected-resource/mcp/{server}"
    ))
}

/// `GET /.well-known/oauth-protected-resource/mcp/{server}` (RFC 9728).
async fn resource_metadata(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (Some(v), Some(_)) = (&st.jwt, st.config().server(&server)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let body = serde_json::json!({
        "resource": format!("{scheme}://{host}/mcp/{server}"),
        "authorization_servers": [v.issuer()],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("toolgate: server {server}"),
    });
    json_response(StatusCode::OK, body.to_string())
}

/// The checks shared by POST, GET and DELETE: server, origin, token.
/// True when `MCP-Protocol-Version` is absent or shaped like a revision date.
fn version_header_ok(headers: &HeaderMap) -> bool {
    headers.get(VERSION_HEADER).is_none_or(|v| {
        v.to_str().is_ok_and(|s| {
            s.len() == 10
                && s.as_bytes().iter().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        *c == b'-'
                    } else {
                        c.is_ascii_digit()
                    }
                })
        })
    })
}

const BAD_VERSION_HEADER: &str =
    "malformed MCP-Protocol-Version header: expected a date such as 2025-11-25";

async fn admit(
    st: &AppState,
    headers: &HeaderMap,
    server: &str,
) -> Result<(Arc<crate::config::Config>, ServerConfig, Grant), Reject> {
    let cfg = st.config();
    let Some(srv) = cfg.server(server).cloned() else {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            error_codes::INVALID_REQUEST,
            format!("no server named `{server}`"),
        ));
    };
    if !origin_allowed(headers, &cfg.allowed_origins) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            "origin not allowed",
        ));
    }
    let grant = authenticate(st, headers, server).await.map_err(|mut r| {
        if r.status == StatusCode::UNAUTHORIZED && st.jwt.is_some() {
            if let (Some(w), Some(url)) =
                (&r.www_authenticate, resource_metadata_url(headers, server))
            {
                r.www_authenticate = Some(format!("{w}, resource_metadata=\"{url}\""));
            }
        }
        r
    })?;
    Ok((cfg, srv, grant))
}

fn session_of(
    st: &AppState,
    headers: &HeaderMap,
    srv: &ServerConfig,
    grant: &Grant,
    id_text: &str,
) -> Result<Arc<Session>, Box<Response>> {
    let Some(sid) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            id_text,
            error_codes::INVALID_REQUEST,
            "missing Mcp-Session-Id header: send `initialize` first",
        )));
    };
    st.sessions.get(sid, &srv.name, &grant.id).ok_or_else(|| {
        Box::new(http_error(
            StatusCode::NOT_FOUND,
            id_text,
            error_codes::SESSION_NOT_FOUND,
            "session not found (expired, closed or unknown): send `initialize` again",
        ))
    })
}

fn new_session_id() -> String {
    toolgate_store::grants::random_hex(16)
        .map(|h| format!("tgs_{h}"))
        .unwrap_or_else(|_| format!("tgs_{}", now_ms()))
}

async fn post_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    refresh_keys(&st, &headers).await;
    let (cfg, srv, grant) = match admit(&st, &headers, &server).await {
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
    if env.method() == "initialize" && env.kind == Kind::Request {
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
                return *r;
            }
            match &srv.transport {
                // Stateless: each request stands alone; nothing is kept between them.
                Transport::Http { .. } => Arc::new(Session::new(
                    format!("modern-{}", new_session_id().trim_start_matches("tgs_")),
                    srv.name.clone(),
                    grant.id.clone(),
                    UpstreamSession::Http { session_id: None },
                )),
                _ => {
                    return http_error(
                        StatusCode::BAD_REQUEST,
                        &id_text,
                        error_codes::INVALID_REQUEST,
                        &format!(
                            "server `{}` is reached over stdio or legacy HTTP+SSE, which toolgate relays in the legacy era only (initialize and Mcp-Session-Id); this request is in the 2026-07-28 era",
                            srv.name
                        ),
                    )
                }
            }
        }
        _ => match session_of(&st, &headers, &srv, &grant, &id_text) {
            Ok(s) => s,
            Err(r) => return *r,
        },
    };
    // In use until its answer ends: never closed to make room for another session.
    let in_use = session.enter();
    let response = async {
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
            trail::request_record(
                &cfg,
                &srv,
                &grant,
                &session.id,
                env.method(),
                &id_text,
                bytes.len(),
            )
        });
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
                            error_response(&id_text, error_codes::INVALID_PARAMS, &e.to_string(), None),
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
                let ctx = CallCtx {
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
    }
    .await;
    keep_until_body_ends(response, in_use)
}

/// Holds `guard` until the response's body has been sent (or dropped).
fn keep_until_body_ends<G: Send + Sync + 'static>(response: Response, guard: G) -> Response {
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
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
) -> Result<(), Box<Response>> {
    let mismatch = |what: &str, header: &str, body: &str| {
        Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            id_text,
            error_codes::HEADER_MISMATCH,
            &format!("the {what} header `{header}` does not match the body's `{body}`"),
        )))
    };
    if let Some(h) = headers.get(METHOD_HEADER) {
        let h = h.to_str().unwrap_or("");
        if h != env.method() {
            return mismatch("Mcp-Method", h, env.method());
        }
    }
    if let (Some(h), Some(name)) = (headers.get(NAME_HEADER), env.name.as_deref()) {
        let h = h.to_str().unwrap_or("");
        if h != name {
            return mismatch("Mcp-Name", h, name);
        }
    }
    Ok(())
}

/// Headers passed from the agent to an HTTP upstream (never `Authorization`).
fn upstream_request(
    st: &AppState,
    method: reqwest::Method,
    url: &str,
    headers: &HeaderMap,
    extra: &[(String, String)],
    upstream_session: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut req = st.http.request(method, url);
    for name in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    for name in [VERSION_HEADER, "last-event-id", METHOD_HEADER, NAME_HEADER] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    for (name, v) in headers {
        if name.as_str().starts_with("mcp-param-") {
            req = req.header(name, v.clone());
        }
    }
    if let Some(s) = upstream_session {
        req = req.header(SESSION_HEADER, s);
    }
    for (k, v) in extra {
        req = req.header(k.as_str(), v.as_str());
    }
    req
}

fn http_parts(srv: &ServerConfig) -> Option<(&str, &[(String, String)])> {
    match &srv.transport {
        Transport::Http { url, headers } => Some((url.as_str(), headers.as_slice())),
        Transport::Stdio { .. } | Transport::Sse { .. } => None,
    }
}

fn upstream_failure(id_text: &str, e: &reqwest::Error, server: &str) -> Response {
    if e.is_timeout() {
        http_error(
            StatusCode::GATEWAY_TIMEOUT,
            id_text,
            error_codes::UPSTREAM_ERROR,
            &format!("upstream `{server}` timed out"),
        )
    } else {
        http_error(
            StatusCode::BAD_GATEWAY,
            id_text,
            error_codes::UPSTREAM_ERROR,
            &format!("upstream `{server}` is unreachable: {}", short_err(e)),
        )
    }
}

fn short_err(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
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
    let _slot = match st
        .sessions
        .reserve(&srv.name, &grant.id, cfg.sessions.caps(&srv.transport))
    {
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
            let upstream_sid = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let ok = resp.status().is_success();
            let mut out =
                relay_response(resp, id_text, Hook::None, &srv.name, cfg.max_answer).await;
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

/// Opens a session's channel: starts the stdio child, or connects to the SSE server.
async fn open_channel(st: &AppState, srv: &ServerConfig) -> Result<Arc<Channel>, String> {
    match &srv.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => Channel::spawn(&srv.name, command, args, env, cwd, st.config().max_answer)
            .map_err(|e| format!("cannot start `{}`: {e}", command.display())),
        Transport::Sse { url, headers } => {
            Channel::connect_sse(&srv.name, &st.http, url, headers, st.config().max_answer).await
        }
        Transport::Http { .. } => Err("a Streamable HTTP server has no channel".into()),
    }
}

fn set_session_header(r: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
}

/// Notifications and responses from the agent: forwarded, answered 202.
async fn relay_one_way(
    st: &AppState,
    srv: &ServerConfig,
    session: &Session,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Response {
    match &session.upstream {
        UpstreamSession::Channel(p) => match p.send(&bytes).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => http_error(
                StatusCode::BAD_GATEWAY,
                "null",
                error_codes::UPSTREAM_ERROR,
                &format!("upstream `{}`: {e}", srv.name),
            ),
        },
        UpstreamSession::Http { session_id } => {
            let Some((url, extra)) = http_parts(srv) else {
                return StatusCode::ACCEPTED.into_response();
            };
            let req = upstream_request(
                st,
                reqwest::Method::POST,
                url,
                headers,
                extra,
                session_id.as_deref(),
            )
            .timeout(Duration::from_secs(30))
            .body(bytes);
            match req.send().await {
                Ok(r) if r.status().is_success() => StatusCode::ACCEPTED.into_response(),
                Ok(r) => {
                    relay_response(r, "null", Hook::None, &srv.name, st.config().max_answer).await
                }
                Err(e) => upstream_failure("null", &e, &srv.name),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay_request(
    st: &AppState,
    cfg: &crate::config::Config,
    srv: &ServerConfig,
    session: &Arc<Session>,
    headers: &HeaderMap,
    bytes: Bytes,
    id_text: &str,
    progress_token: Option<&str>,
    accepts_sse: bool,
    hook: Hook,
) -> Response {
    let timeout = Duration::from_secs(cfg.upstream_timeout_secs);
    match &session.upstream {
        UpstreamSession::Http { session_id } => {
            let Some((url, extra)) = http_parts(srv) else {
                hook.never_reached();
                return http_error(
                    StatusCode::BAD_GATEWAY,
                    id_text,
                    error_codes::UPSTREAM_ERROR,
                    "server transport changed; start a new session",
                );
            };
            let req = upstream_request(
                st,
                reqwest::Method::POST,
                url,
                headers,
                extra,
                session_id.as_deref(),
            )
            .timeout(timeout)
            .body(bytes);
            match req.send().await {
                Ok(r) if r.status() == StatusCode::NOT_FOUND && session_id.is_some() => {
                    hook.never_reached();
                    st.sessions.remove(&session.id);
                    http_error(
                        StatusCode::NOT_FOUND,
                        id_text,
                        error_codes::SESSION_NOT_FOUND,
                        "the upstream ended this session: send `initialize` again",
                    )
                }
                Ok(r) => relay_response(r, id_text, hook, &srv.name, cfg.max_answer).await,
                Err(e) => {
                    if e.is_timeout() {
                        hook.lost(true);
                    } else {
                        hook.never_reached();
                    }
                    upstream_failure(id_text, &e, &srv.name)
                }
            }
        }
        UpstreamSession::Channel(proc) => {
            let key = id_key(id_text);
            let mut rx = proc.register(id_text, progress_token);
            if let Err(e) = proc.send(&bytes).await {
                proc.unregister(id_text);
                hook.never_reached();
                st.sessions.remove(&session.id);
                return http_error(
                    StatusCode::BAD_GATEWAY,
                    id_text,
                    error_codes::UPSTREAM_ERROR,
                    &format!(
                        "upstream `{}` is not running: {e}; send `initialize` again",
                        srv.name
                    ),
                );
            }
            if !accepts_sse {
                // JSON only: wait for the response; other messages go to the log.
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => match classify(&m, &key) {
                                Seen::Answer(m) => {
                                    let body = hook.answer(&m, id_text, &srv.name).await.unwrap_or_else(|| String::from_utf8_lossy(&m).into_owned());
                                    return json_response(StatusCode::OK, body);
                                }
                                Seen::Other(m) => tracing::debug!(server = %srv.name, "not relayed to a JSON-only request: {}", toolgate_protocol::Escaped(&String::from_utf8_lossy(&m))),
                                Seen::Unreadable(e) => tracing::warn!(server = %srv.name, "upstream message dropped: {e}"),
                            },
                            None => {
                                hook.never_reached();
                                return http_error(StatusCode::BAD_GATEWAY, id_text, error_codes::UPSTREAM_ERROR, &format!("upstream `{}` exited before answering", srv.name));
                            }
                        },
                        _ = &mut deadline => {
                            proc.unregister(id_text);
                            hook.lost(true);
                            return http_error(StatusCode::GATEWAY_TIMEOUT, id_text, error_codes::UPSTREAM_ERROR, &format!("upstream `{}` timed out", srv.name));
                        }
                    }
                }
            }
            let proc = proc.clone();
            let id_owned = id_text.to_string();
            let server = srv.name.clone();
            let stream = async_stream::stream! {
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => match classify(&m, &key) {
                                Seen::Answer(m) => {
                                    let body = hook.answer(&m, &id_owned, &server).await.unwrap_or_else(|| String::from_utf8_lossy(&m).into_owned());
                                    yield Ok::<Bytes, std::io::Error>(encode(&body, None));
                                    break;
                                }
                                Seen::Other(m) => yield Ok(encode(&String::from_utf8_lossy(&m), None)),
                                Seen::Unreadable(e) => tracing::warn!(server = %server, "upstream message dropped: {e}"),
                            },
                            None => {
                                hook.never_reached();
                                let e = error_response(&id_owned, error_codes::UPSTREAM_ERROR, &format!("upstream `{server}` exited before answering"), None);
                                yield Ok(encode(&e, None));
                                break;
                            }
                        },
                        _ = &mut deadline => {
                            proc.unregister(&id_owned);
                            hook.lost(true);
                            let e = error_response(&id_owned, error_codes::UPSTREAM_ERROR, &format!("upstream `{server}` timed out"), None);
                            yield Ok(encode(&e, None));
                            break;
                        }
                    }
                }
            };
            sse_response(Body::from_stream(stream))
        }
    }
}

pub(crate) fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Relays an HTTP upstream's response: JSON read whole (bounded) and hooked; SSE streamed
/// event by event, raw unless the hook rewrites the response event.
async fn relay_response(
    resp: reqwest::Response,
    id_text: &str,
    hook: Hook,
    server: &str,
    max_answer: usize,
) -> Response {
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    hook.upstream_status(status.as_u16());
    if !status.is_success() {
        hook.never_reached();
    }
    if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    let key = id_key(id_text);
    if ctype.starts_with("text/event-stream") {
        let server = server.to_string();
        let mut upstream = resp.bytes_stream();
        let stream = async_stream::stream! {
            let mut parser = SseParser::with_limit(max_answer);
            let mut answered = false;
            // Events with ids can be resumed by the client (GET with Last-Event-ID): a stream
            // that ends early then is polling, not a failure.
            let mut resumable = false;
            let mut ended = false;
            while let Some(chunk) = upstream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        ended = true;
                        tracing::warn!(server = %server, "upstream stream broke: {}", short_err(&e));
                        if !answered {
                            hook.lost(e.is_timeout());
                        }
                        if !answered && key != "null" {
                            let msg = if e.is_timeout() { "timed out" } else { "closed the stream before answering" };
                            yield Ok::<Bytes, std::io::Error>(encode(&error_response(&key, error_codes::UPSTREAM_ERROR, &format!("upstream `{server}` {msg}"), None), None));
                        }
                        break;
                    }
                };
                let events = match parser.push(&chunk) {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::error!(server = %server, "{e}");
                        if !answered {
                            hook.lost(false);
                            if key != "null" {
                                yield Ok(encode(&error_response(&key, error_codes::UPSTREAM_ERROR, &format!("upstream `{server}`: {e}"), None), None));
                            }
                        }
                        ended = true;
                        break;
                    }
                };
                for ev in events {
                    resumable |= ev.id.is_some();
                    if ev.data.is_empty() {
                        yield Ok(ev.raw);
                        continue;
                    }
                    match classify(ev.data.as_bytes(), &key) {
                        Seen::Answer(m) if !answered => {
                            answered = true;
                            match hook.answer(&m, &key, &server).await {
                                Some(rewritten) => yield Ok(encode(&rewritten, ev.id.as_deref())),
                                None if matches!(m, std::borrow::Cow::Owned(_)) => yield Ok(encode(&String::from_utf8_lossy(&m), ev.id.as_deref())),
                                None => yield Ok(ev.raw),
                            }
                        }
                        Seen::Answer(m) | Seen::Other(m) => match m {
                            std::borrow::Cow::Owned(m) => yield Ok(encode(&String::from_utf8_lossy(&m), ev.id.as_deref())),
                            std::borrow::Cow::Borrowed(_) => yield Ok(ev.raw),
                        },
                        Seen::Unreadable(e) => {
                            tracing::warn!(server = %server, "upstream event dropped: {e}");
                            if !answered {
                                answered = true;
                                hook.lost(false);
                                if key != "null" {
                                    yield Ok(encode(&crate::enforce::unreadable_answer(&key, &server, &e), None));
                                }
                            }
                        }
                    }
                }
            }
            if !ended && !answered && !resumable && key != "null" {
                tracing::warn!(server = %server, "upstream closed the stream before answering");
                hook.lost(false);
                yield Ok(encode(&error_response(&key, error_codes::UPSTREAM_ERROR, &format!("upstream `{server}` closed the stream before answering"), None), None));
            }
        };
        let mut r = sse_response(Body::from_stream(stream));
        *r.status_mut() = status;
        return r;
    }
    let body = match read_capped(resp, max_answer).await {
        Ok(b) => b,
        Err(Capped::Over) => {
            hook.lost(false);
            tracing::error!(server = %server, "upstream answer over max_answer ({max_answer} bytes); refused");
            return http_error(
                StatusCode::BAD_GATEWAY,
                id_text,
                error_codes::UPSTREAM_ERROR,
                &format!("upstream `{server}` answered more than max_answer ({max_answer} bytes); refused"),
            );
        }
        Err(Capped::Failed(e)) => {
            hook.lost(e.is_timeout());
            return upstream_failure(id_text, &e, server);
        }
    };
    // Lone surrogate escapes repaired (what clients read is what is judged and relayed).
    let body = match toolgate_protocol::upstream::repair(&body) {
        std::borrow::Cow::Owned(fixed) => Bytes::from(fixed),
        std::borrow::Cow::Borrowed(_) => body,
    };
    // An answer that is not JSON cannot be relayed as one: say what came instead.
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        if status.is_success() {
            hook.lost(false);
        }
        let shown: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        tracing::warn!(server = %server, status = %status, "upstream answered something that is not JSON: {shown:?}");
        let what = if status.is_success() {
            "something that is not JSON".to_string()
        } else {
            format!("HTTP {} ({shown:?})", status.as_u16())
        };
        return http_error(
            StatusCode::BAD_GATEWAY,
            id_text,
            error_codes::UPSTREAM_ERROR,
            &format!("upstream `{server}` answered {what}"),
        );
    }
    let body = if status.is_success() {
        match hook.apply(&body).await {
            Ok(rewritten) => rewritten.map(Bytes::from).unwrap_or(body),
            Err(e) => {
                tracing::warn!(server = %server, "upstream answer refused: {e}");
                hook.lost(false);
                return http_error(
                    StatusCode::BAD_GATEWAY,
                    id_text,
                    error_codes::UPSTREAM_ERROR,
                    &format!("upstream `{server}` answered something toolgate cannot judge ({e}); refused rather than relayed unchecked"),
                );
            }
        }
    } else {
        body
    };
    let mut r = (status, body).into_response();
    let ct = if ctype.is_empty() {
        "application/json".to_string()
    } else {
        ctype
    };
    if let Ok(v) = HeaderValue::from_str(&ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Why [`read_capped`] stopped.
enum Capped {
    /// The body passed the cap.
    Over,
    /// The transport failed.
    Failed(reqwest::Error),
}

/// Reads a whole upstream body of at most `max` bytes, without ever holding more.
async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Bytes, Capped> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Capped::Over);
    }
    let mut buf = bytes::BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Capped::Failed)?;
        if buf.len() + chunk.len() > max {
            return Err(Capped::Over);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The checks of GET and DELETE: server, origin, token, then an existing session.
async fn admit_session(
    st: &AppState,
    headers: &HeaderMap,
    server: &str,
) -> Result<(ServerConfig, Arc<Session>), Box<Response>> {
    let (_cfg, srv, grant) = admit(st, headers, server)
        .await
        .map_err(|r| Box::new(r.into_response()))?;
    if !version_header_ok(headers) {
        return Err(Box::new(
            Reject::new(
                StatusCode::BAD_REQUEST,
                error_codes::INVALID_REQUEST,
                BAD_VERSION_HEADER,
            )
            .into_response(),
        ));
    }
    let session = session_of(st, headers, &srv, &grant, "null")?;
    Ok((srv, session))
}

async fn get_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = modern_get_or_delete(&headers) {
        return r;
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
        Err(r) => return *r,
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

async fn delete_mcp(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = modern_get_or_delete(&headers) {
        return r;
    }
    let (srv, session) = match admit_session(&st, &headers, &server).await {
        Ok(x) => x,
        Err(r) => return *r,
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
    st.sessions.remove(&session.id);
    tracing::info!(server = %srv.name, session = %session.id, "session closed by the agent");
    StatusCode::OK.into_response()
}
