//! The upstream relay: requests forwarded to Streamable HTTP upstreams (`reqwest`) and to
//! session channels (stdio children, legacy SSE), and their answers relayed back: JSON read
//! whole within `max_answer`, SSE event by event, each answer event through its [`Hook`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use toolgate_protocol::sse::{encode, SseParser};
use toolgate_protocol::{error_codes, error_response};

use crate::config::{ServerConfig, Transport};
use crate::enforce::{classify, Hook, Seen};
use crate::respond::{
    http_error, json_response, sse_response, METHOD_HEADER, NAME_HEADER, SESSION_HEADER,
    VERSION_HEADER,
};
use crate::session::{Session, UpstreamSession};
use crate::state::AppState;
use crate::upstream::channel::Channel;
use crate::upstream::id_key;

/// Headers passed from the agent to an HTTP upstream (never `Authorization`).
pub(crate) fn upstream_request(
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

/// Headers for a request toolgate itself sends an HTTP server.
pub(crate) fn own_headers(version: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert(VERSION_HEADER, v);
    }
    h
}

pub(crate) fn http_parts(srv: &ServerConfig) -> Option<(&str, &[(String, String)])> {
    match &srv.transport {
        Transport::Http { url, headers } => Some((url.as_str(), headers.as_slice())),
        Transport::Stdio { .. } | Transport::Sse { .. } | Transport::Virtual { .. } => None,
    }
}

/// An `auth = "oauth"` or `"token_exchange"` server refused the token toolgate sent for
/// the identity (HTTP 401: revoked at its authorization server, or expired there early):
/// a clear error, never the upstream's 401 (the agent has no token of its own to fix).
pub(crate) fn token_refused(srv: &ServerConfig, id_text: &str) -> Response {
    let hint = match &srv.oauth {
        Some(o) if o.exchange => "the agent's exchanged token was not accepted; retry with a fresh JWT".to_string(),
        _ => format!(
            "the identity's connection may have been revoked at the authorization server: reconnect it (`toolgate connect {} --identity …`)",
            srv.name
        ),
    };
    http_error(
        StatusCode::FORBIDDEN,
        id_text,
        error_codes::UPSTREAM_ERROR,
        &format!(
            "upstream `{}` refused the token toolgate sent for this identity (HTTP 401): {hint}",
            srv.name
        ),
    )
}

/// True when an upstream's answer is a refusal of the token toolgate sent.
pub(crate) fn refused_token(srv: &ServerConfig, status: reqwest::StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED && srv.oauth.is_some()
}

pub(crate) fn upstream_failure(id_text: &str, e: &reqwest::Error, server: &str) -> Response {
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

pub(crate) fn short_err(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Opens a session's channel: starts the stdio child, or connects to the SSE server.
pub(crate) async fn open_channel(
    st: &AppState,
    srv: &ServerConfig,
) -> Result<Arc<Channel>, String> {
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
        Transport::Virtual { .. } => Err("a virtual server has no channel of its own".into()),
    }
}

/// Notifications and responses from the agent: forwarded, answered 202.
pub(crate) async fn relay_one_way(
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
                Ok(r) if refused_token(srv, r.status()) => token_refused(srv, "null"),
                Ok(r) => {
                    relay_response(
                        r,
                        "null",
                        Hook::None,
                        &srv.name,
                        st.config().max_answer,
                        None,
                    )
                    .await
                }
                Err(e) => upstream_failure("null", &e, &srv.name),
            }
        }
        UpstreamSession::Virtual(_) => StatusCode::ACCEPTED.into_response(),
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
                Ok(r) if refused_token(srv, r.status()) => {
                    hook.upstream_status(r.status().as_u16());
                    hook.never_reached();
                    token_refused(srv, id_text)
                }
                Ok(r) => {
                    relay_response(
                        r,
                        id_text,
                        hook,
                        &srv.name,
                        cfg.max_answer,
                        session.member_of.clone(),
                    )
                    .await
                }
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
            // Forgotten when this answer is dropped, whatever the reason (a cancelled or
            // parked call must not stay in the channel's routes).
            let (mut rx, registration) = proc.register_guarded(id_text, progress_token);
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
            let member_of = session.member_of.clone();
            let id_owned = id_text.to_string();
            let server = srv.name.clone();
            let stream = async_stream::stream! {
                let _registration = registration;
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
                                Seen::Other(m) => yield Ok(member_message(member_of.as_deref(), &m)),
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
        UpstreamSession::Virtual(_) => {
            hook.never_reached();
            http_error(
                StatusCode::BAD_GATEWAY,
                id_text,
                error_codes::INTERNAL_ERROR,
                "a virtual session has no upstream of its own",
            )
        }
    }
}

/// One message a member of a virtual session sends the client, SSE-encoded: its requests
/// carry ids tagged with the member's server ([`crate::session::tag_request`]).
fn member_message(member_of: Option<&str>, m: &[u8]) -> Bytes {
    if let Some(tagged) = member_of.and_then(|s| crate::session::tag_request(s, m)) {
        return encode(&tagged, None);
    }
    encode(&String::from_utf8_lossy(m), None)
}

/// Relays an HTTP upstream's response: JSON read whole (bounded) and hooked; SSE streamed
/// event by event, raw unless the hook rewrites the response event.
pub(crate) async fn relay_response(
    resp: reqwest::Response,
    id_text: &str,
    hook: Hook,
    server: &str,
    max_answer: usize,
    member_of: Option<String>,
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
                        Seen::Other(m) if member_of.is_some() => yield Ok(member_message(member_of.as_deref(), &m)),
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
                    &crate::enforce::unreadable_message(server, &e),
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
pub(crate) enum Capped {
    /// The body passed the cap.
    Over,
    /// The transport failed.
    Failed(reqwest::Error),
}

/// Reads a whole upstream body of at most `max` bytes, without ever holding more.
pub(crate) async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Bytes, Capped> {
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
