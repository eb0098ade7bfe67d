//! Which protocol era a Streamable HTTP upstream speaks, found out when a 2026-07-28
//! request first needs to know: a `server/discover` (that era's own question) whose answer
//! lists `2026-07-28` means it does; a refusal (HTTP 4xx, a JSON-RPC error, an unsupported
//! version) means it speaks only the legacy era, and toolgate then relays 2026-07-28
//! requests to it over a legacy session of its own ([`crate::virtual_server::pooled`]).
//! The answer is kept for [`crate::state::ERA_KEEP`]; a probe that fails (no answer) is not kept, and the
//! request is forwarded as it is. `era = "legacy" | "modern"` on a server skips the probe.

use std::time::Duration;

use axum::http::{header, HeaderValue};
use serde_json::{json, Value};

use crate::config::{EraSetting, ServerConfig, Transport};
use crate::relay::{own_headers, read_capped, upstream_request};
use crate::respond::METHOD_HEADER;
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
        return Some(false);
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
        return Some(false);
    }
    let versions = message.pointer("/result/supportedVersions")?.as_array()?;
    Some(versions.iter().any(|v| v.as_str() == Some(MODERN)))
}
