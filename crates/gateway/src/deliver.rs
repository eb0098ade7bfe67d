//! Messages toolgate sends an included server's session (a member of a virtual or
//! pooled session) without waiting for an answer: notifications, and the client's
//! responses to the member's own requests.

use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;

use crate::config::{Config, Transport};
use crate::relay::{own_headers, short_err, upstream_request};
use crate::session::{untag, Member, Members, UpstreamSession};
use crate::state::AppState;

/// Sends a notification or a response to a member.
pub async fn send_one_way(
    st: &AppState,
    cfg: &Config,
    m: &Member,
    bytes: Bytes,
) -> Result<(), String> {
    let srv = crate::oauth::member_srv(st, m).await?;
    match (&m.session.upstream, &srv.transport) {
        (UpstreamSession::Http { session_id }, Transport::Http { url, headers }) => {
            let req = upstream_request(
                st,
                reqwest::Method::POST,
                url,
                &own_headers(Some(&m.version)),
                headers,
                session_id.as_deref(),
            )
            .timeout(Duration::from_secs(cfg.upstream_timeout_secs.min(30)))
            .body(bytes);
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!(
                    "upstream `{}` answered HTTP {}",
                    m.srv.name,
                    r.status().as_u16()
                )),
                Err(e) => Err(format!("upstream `{}`: {}", m.srv.name, short_err(&e))),
            }
        }
        (UpstreamSession::Channel(ch), _) => ch
            .send(&bytes)
            .await
            .map_err(|e| format!("upstream `{}`: {e}", m.srv.name)),
        _ => Err("the server's transport changed".into()),
    }
}

/// Delivers a response to a request a member sent the client (its id tagged with the
/// member's server) to that member, under the member's own id.
pub async fn to_member_request(st: &AppState, cfg: &Config, members: &Members, mut msg: Value) {
    let tagged = msg.get("id").and_then(Value::as_str).and_then(untag);
    let Some((server, id)) = tagged else {
        tracing::warn!("a response to no request of any included server; dropped");
        return;
    };
    msg["id"] = id;
    match members.get(&server) {
        Some(m) => {
            if let Err(e) = send_one_way(st, cfg, &m, msg.to_string().into()).await {
                tracing::warn!(server = %server, "the client's answer could not be delivered: {e}");
            }
        }
        None => {
            tracing::warn!(server = %server, "the client answered a server that is no longer open; dropped")
        }
    }
}
