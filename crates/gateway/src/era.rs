//! Which protocol era a Streamable HTTP upstream speaks, found out when a 2026-07-28
//! request first needs to know: a `server/discover` (that era's own question) whose answer
//! lists `2026-07-28` means it does; a refusal (HTTP 4xx, a JSON-RPC error, an unsupported
//! version) means it speaks only the legacy era, and toolgate then relays 2026-07-28
//! requests to it over a legacy session of its own ([`crate::virtual_server::pooled`]).
//! The answer is kept for [`crate::state::ERA_KEEP`]; a probe that fails (no answer) is not kept, and the
//! request is forwarded as it is. `era = "legacy" | "modern"` on a server skips the probe.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::{json, Value};

use crate::config::{EraSetting, ServerConfig, Transport};
use crate::relay::{own_headers, read_capped, upstream_request};
use crate::respond::{METHOD_HEADER, NAME_HEADER, VERSION_HEADER};
use crate::session::{Session, UpstreamSession};
use crate::state::AppState;

/// The 2026-07-28 era's version.
pub const MODERN: &str = "2026-07-28";

/// True when `srv` serves the 2026-07-28 era, false when it serves only the legacy era,
/// `None` when that could not be found out (the request goes on as it is).
pub async fn speaks_modern(st: &AppState, srv: &ServerConfig) -> Option<bool> {
    match (srv.era, &srv.transport) {
        (EraSetting::Modern, _) => return Some(true),
        (EraSetting::Legacy, _) => return Some(false),
        (EraSetting::Auto, Transport::Http { .. }) => {}
        (EraSetting::Auto, _) => return Some(false),
    }
    match st.eras.get(&srv.name) {
        Some(Some(known)) => return Some(known),
        // A probe failed a moment ago: not asked again at once (an upstream that is down
        // would get a probe with every request).
        Some(None) => return None,
        None => {}
    }
    let Transport::Http { url, headers } = &srv.transport else {
        return Some(false);
    };
    let found = probe(st, url, headers).await;
    match found {
        Some(modern) => {
            tracing::info!(server = %srv.name, era = if modern { MODERN } else { "legacy only" }, "upstream era found out (server/discover)");
            st.eras.put(&srv.name, modern);
        }
        None => {
            tracing::warn!(server = %srv.name, "the upstream's era could not be found out; the request is forwarded as it is (asked again in {} s)", crate::state::ERA_RETRY.as_secs());
            st.eras.failed(&srv.name);
        }
    }
    found
}

async fn probe(st: &AppState, url: &str, extra: &[(String, String)]) -> Option<bool> {
    match discover(st, url, extra).await? {
        Discovered::Refused => Some(false),
        Discovered::Result(r) => {
            let versions = r.get("supportedVersions")?.as_array()?;
            Some(versions.iter().any(|v| v.as_str() == Some(MODERN)))
        }
    }
}

/// What a `server/discover` of toolgate's own got.
enum Discovered {
    /// Refused: HTTP 400/404/405/406 or a JSON-RPC error (a server without that era).
    Refused,
    /// The result.
    Result(Value),
}

/// Sends `server/discover` to a Streamable HTTP server; `None` when no answer came (or one
/// that could not be read).
async fn discover(st: &AppState, url: &str, extra: &[(String, String)]) -> Option<Discovered> {
    let mut h = own_headers(Some(MODERN));
    h.insert(METHOD_HEADER, HeaderValue::from_static("server/discover"));
    let body = json!({
        "jsonrpc": "2.0", "id": "toolgate-probe", "method": "server/discover",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    });
    let resp = upstream_request(st, reqwest::Method::POST, url, &h, extra, None)
        .timeout(Duration::from_secs(10))
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    let status = resp.status();
    if matches!(status.as_u16(), 400 | 404 | 405 | 406) {
        // A legacy server refuses a request without a session or with this version.
        return Some(Discovered::Refused);
    }
    if !status.is_success() {
        return None;
    }
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let bytes = read_capped(resp, 1 << 20).await.ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let message: Value = if sse {
        text.split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                serde_json::from_str::<Value>(&data.join("\n")).ok()
            })
            .find(|v| v.get("id") == Some(&json!("toolgate-probe")))?
    } else {
        serde_json::from_str(&text).ok()?
    };
    if message.get("error").is_some() {
        return Some(Discovered::Refused);
    }
    message.get("result").cloned().map(Discovered::Result)
}

/// A legacy client's session with a Streamable HTTP server that serves only the 2026-07-28
/// era (it refused `initialize`): toolgate answers `initialize` from the server's
/// `server/discover` and keeps the session itself; each request then goes to the server
/// statelessly, in that era ([`as_modern`]). `None` when the server does not answer
/// `server/discover` either.
pub async fn legacy_over_modern(
    st: &AppState,
    srv: &ServerConfig,
    grant_id: &str,
    our_id: &str,
    init_body: &[u8],
    id_text: &str,
) -> Option<(Session, String)> {
    let Transport::Http { url, headers } = &srv.transport else {
        return None;
    };
    let Discovered::Result(found) = discover(st, url, headers).await? else {
        return None;
    };
    let init: Value = serde_json::from_slice(init_body).unwrap_or(Value::Null);
    let asked = init
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str)?;
    // Only a legacy handshake is translated: an `initialize` in the 2026-07-28 era (where
    // it is removed) gets the server's own refusal.
    if !(asked.starts_with("20") && asked < MODERN)
        || init
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .is_some()
    {
        return None;
    }
    let version = asked;
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": found.get("capabilities").cloned().unwrap_or_else(|| json!({})),
    });
    let info = found
        .get("serverInfo")
        .or_else(|| found.pointer("/_meta/io.modelcontextprotocol~1serverInfo"))
        .cloned()
        .unwrap_or_else(|| json!({"name": srv.name, "version": "unknown"}));
    result["serverInfo"] = info;
    if let Some(i) = found.get("instructions") {
        result["instructions"] = i.clone();
    }
    let mut session = Session::new(
        our_id.to_string(),
        srv.name.clone(),
        grant_id.to_string(),
        UpstreamSession::Http { session_id: None },
    )
    .with_client_caps(crate::session::client_caps(init_body));
    session.modern_upstream = Some(
        init.pointer("/params/capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    let id: Value = serde_json::from_str(id_text).unwrap_or(Value::Null);
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    Some((session, answer))
}

/// A legacy client's request as a 2026-07-28 server takes it: the envelope keys in
/// `_meta` (the version, the client's capabilities from its `initialize`) and the
/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers.
pub fn as_modern(bytes: &[u8], headers: &HeaderMap, caps: &Value) -> Option<(Bytes, HeaderMap)> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    let method = v.get("method").and_then(Value::as_str)?.to_string();
    if !v.get("params").is_some_and(Value::is_object) {
        v["params"] = json!({});
    }
    if !v["params"].get("_meta").is_some_and(Value::is_object) {
        v["params"]["_meta"] = json!({});
    }
    v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
    v["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = caps.clone();
    let name = v
        .pointer("/params/name")
        .or_else(|| v.pointer("/params/uri"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut h = headers.clone();
    h.insert(VERSION_HEADER, HeaderValue::from_static(MODERN));
    if let Ok(m) = HeaderValue::from_str(&method) {
        h.insert(METHOD_HEADER, m);
    }
    match name.and_then(|n| HeaderValue::from_str(&n).ok()) {
        Some(n) => {
            h.insert(NAME_HEADER, n);
        }
        None => {
            h.remove(NAME_HEADER);
        }
    }
    Some((Bytes::from(v.to_string()), h))
}

/// A legacy client's GET stream on its session over a server that serves only the
/// 2026-07-28 era: that era's `subscriptions/listen` (every list change the client can
/// take), whose notifications are relayed as the stream's messages (its acknowledgement is
/// toolgate's business, not the client's). Lasts until either side leaves.
pub async fn listen_for_legacy(
    st: &AppState,
    cfg: &crate::config::Config,
    srv: &ServerConfig,
    session: &Session,
    caps: &Value,
) -> axum::response::Response {
    let max = cfg.max_answer;
    // One per session: a newer GET ends the older one's listen.
    let mut superseded = session.take_over_listen();
    use axum::response::IntoResponse;
    let Transport::Http { url, headers } = &srv.transport else {
        return axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let request = json!({
        "jsonrpc": "2.0",
        "id": "toolgate-listen",
        "method": "subscriptions/listen",
        "params": {"notifications": {
            "toolsListChanged": true,
            "promptsListChanged": true,
            "resourcesListChanged": true,
        }},
    });
    let Some((bytes, h)) = as_modern(request.to_string().as_bytes(), &own_headers(None), caps)
    else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let sent = tokio::time::timeout(
        Duration::from_secs(cfg.upstream_timeout_secs),
        upstream_request(st, reqwest::Method::POST, url, &h, headers, None)
            .body(bytes)
            .send(),
    )
    .await;
    let resp = match sent {
        Ok(Ok(r)) => r,
        Err(_) => {
            return crate::respond::http_error(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "null",
                toolgate_protocol::error_codes::UPSTREAM_ERROR,
                &format!(
                    "upstream `{}` did not open its subscriptions/listen stream in time",
                    srv.name
                ),
            )
        }
        Ok(Err(e)) => {
            return crate::respond::http_error(
                axum::http::StatusCode::BAD_GATEWAY,
                "null",
                toolgate_protocol::error_codes::UPSTREAM_ERROR,
                &format!("upstream `{}`: {}", srv.name, crate::relay::short_err(&e)),
            )
        }
    };
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
    if !resp.status().is_success() || !sse {
        let status = resp.status();
        tracing::info!(server = %srv.name, status = %status, "no subscriptions/listen stream for a legacy client's GET");
        return axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let body = resp.bytes_stream();
    let stream = async_stream::stream! {
        use futures::StreamExt;
        let mut parser = toolgate_protocol::sse::SseParser::with_limit(max);
        futures::pin_mut!(body);
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = superseded.changed() => break,
            };
            let Some(Ok(chunk)) = chunk else { break };
            let Ok(events) = parser.push(&chunk) else { break };
            for ev in events {
                let v: Option<Value> = serde_json::from_str(&ev.data).ok();
                let Some(v) = v else { continue };
                // Only notifications: the acknowledgement and any answer stay here.
                match v.get("method").and_then(Value::as_str) {
                    Some(m) if m != "notifications/subscriptions/acknowledged" && v.get("id").is_none() => {
                        yield Ok::<Bytes, std::io::Error>(toolgate_protocol::sse::encode(&ev.data, None));
                    }
                    _ => {}
                }
            }
        }
    };
    crate::respond::sse_response(axum::body::Body::from_stream(stream))
}
