//! Upstream connections of `auth = "oauth"` servers: each identity's state per server
//! (viewer), begin a consent flow and disconnect (admin), and the browser's way back from
//! the authorization server (`GET /oauth/callback`, where the flow's `state` is the
//! credential). Tokens never appear in any answer.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{error, store_error, AdminOnly, Authorized, Viewer};
use crate::manage::audit_admin;
use crate::oauth::BrokerError;
use crate::state::AppState;

fn broker_error(e: &BrokerError) -> Response {
    let status = match e {
        BrokerError::Config(_) => StatusCode::BAD_REQUEST,
        BrokerError::NotConnected(_) | BrokerError::UnknownState => StatusCode::BAD_REQUEST,
        BrokerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        BrokerError::Upstream(_) | BrokerError::OAuth(_) => StatusCode::BAD_GATEWAY,
    };
    error(status, &e.to_string())
}

fn no_broker() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no server has `auth = \"oauth\"`: there are no upstream connections to manage",
    )
}

/// `GET /api/v1/connections`: for every `auth = "oauth"` server, each identity's
/// connection (subject, client id, expiry), and the identities of its grants that have none.
pub(crate) async fn list(State(st): State<Arc<AppState>>, _: Viewer) -> Response {
    let cfg = st.config();
    let now = st.now_ms();
    let found = st
        .state(move |s| Ok((s.connections()?, s.list_grants()?)))
        .await;
    let (conns, grants) = match found {
        Ok(x) => x,
        Err(e) => return store_error(&e),
    };
    let mut out = Vec::new();
    for srv in cfg.servers.iter().filter(|s| s.oauth.is_some()) {
        let mut identities: Vec<String> = grants
            .iter()
            .filter(|g| {
                g.server == srv.name && g.status(now) == toolgate_store::GrantStatus::Active
            })
            .map(|g| g.identity.clone())
            .collect();
        for c in conns.iter().filter(|c| c.server == srv.name) {
            identities.push(c.identity.clone());
        }
        identities.sort();
        identities.dedup();
        for identity in identities {
            let c = conns
                .iter()
                .find(|c| c.server == srv.name && c.identity == identity);
            out.push(match c {
                Some(c) => connection_json(c),
                None => json!({
                    "server": srv.name, "identity": identity, "connected": false,
                    "connect": crate::oauth::connect_hint(&srv.name, &identity),
                }),
            });
        }
    }
    Json(json!({"connections": out})).into_response()
}

/// `POST /api/v1/servers/{name}/connections/{identity}`: begins a consent flow; answers
/// `{"authorization_url"}` for the person to open (valid 10 minutes).
pub(crate) async fn begin(
    State(st): State<Arc<AppState>>,
    Path((server, identity)): Path<(String, String)>,
    Authorized(who): AdminOnly,
) -> Response {
    let Some(broker) = st.oauth.clone() else {
        return no_broker();
    };
    let cfg = st.config();
    match broker
        .begin(&st.store, &cfg, &server, &identity, st.now_ms())
        .await
    {
        Ok(url) => {
            audit_admin(
                &st,
                &who.name,
                format!("connection of `{identity}` to `{server}` begun"),
                Some(server.clone()),
            )
            .await;
            Json(json!({
                "server": server, "identity": identity, "authorization_url": url,
                "expires_in_s": toolgate_store::connections::PENDING_TTL_MS / 1000,
            }))
            .into_response()
        }
        Err(e) => broker_error(&e),
    }
}

/// `DELETE /api/v1/servers/{name}/connections/{identity}`: revokes at the authorization
/// server where it can, and forgets the tokens.
pub(crate) async fn disconnect(
    State(st): State<Arc<AppState>>,
    Path((server, identity)): Path<(String, String)>,
    Authorized(who): AdminOnly,
) -> Response {
    let Some(broker) = st.oauth.clone() else {
        return no_broker();
    };
    match broker.disconnect(&st.store, &server, &identity).await {
        Ok((false, _)) => error(
            StatusCode::NOT_FOUND,
            &format!("identity `{identity}` has no connection to server `{server}`"),
        ),
        Ok((true, note)) => {
            audit_admin(
                &st,
                &who.name,
                format!("connection of `{identity}` to `{server}` removed"),
                Some(server.clone()),
            )
            .await;
            Json(json!({"server": server, "identity": identity, "disconnected": true, "revocation": note.unwrap_or_else(|| "revoked".into())}))
                .into_response()
        }
        Err(e) => broker_error(&e),
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>toolgate: {}</title><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{}</h1><p>{}</p></body>",
        esc(title),
        esc(title),
        esc(text)
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `GET /oauth/callback?code&state[&iss]` (or `?error&state`): where the authorization
/// server sends the person back. The `state` is the credential: it names a flow begun
/// within 10 minutes, taken once.
pub(crate) async fn callback(
    State(st): State<Arc<AppState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(broker) = st.oauth.clone() else {
        return page(
            StatusCode::NOT_FOUND,
            "Not connected",
            "No server of this gateway has `auth = \"oauth\"`.",
        );
    };
    let Some(state) = q.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "The answer has no `state`: nothing was stored.",
        );
    };
    if let Some(err) = q.get("error") {
        // The person said no (or the server refused): the flow is used up all the same.
        let owned = state.clone();
        let now = st.now_ms();
        let _ = st.state(move |s| s.take_pending(&owned, now)).await;
        let desc = q.get("error_description").map(String::as_str).unwrap_or("");
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("The authorization server answered `{err}` {desc}: nothing was stored."),
        );
    }
    let Some(code) = q.get("code") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "The answer has no `code`: nothing was stored.",
        );
    };
    let now = st.now_ms();
    match broker
        .finish(
            &st.store,
            state,
            code,
            q.get("iss").map(String::as_str),
            now,
        )
        .await
    {
        Ok((server, identity, who)) => {
            audit_admin(
                &st,
                &format!("oauth:{identity}"),
                format!(
                    "identity `{identity}` connected to `{server}` (upstream subject {}, client {})",
                    who.subject.as_deref().unwrap_or("unknown"),
                    who.client_id
                ),
                Some(server.clone()),
            )
            .await;
            page(
                StatusCode::OK,
                "Connected",
                &format!("Identity `{identity}` is connected to server `{server}`. You can close this window."),
            )
        }
        Err(e) => {
            tracing::warn!("oauth callback refused: {e}");
            page(StatusCode::BAD_REQUEST, "Not connected", &e.to_string())
        }
    }
}

/// `GET /oauth/client-metadata.json`: toolgate's Client ID Metadata Document (its client id
/// at authorization servers that take such documents), when `[oauth] public_url` is https.
pub(crate) async fn client_metadata(State(st): State<Arc<AppState>>) -> Response {
    match crate::oauth::client_metadata(&st.config()) {
        Some(doc) if st.oauth.is_some() => {
            let mut r = Json(doc).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("public, max-age=3600"),
            );
            r
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "toolgate has no Client ID Metadata Document here: it needs `[oauth] public_url` at an https URL",
        ),
    }
}

/// One connection as the API and the CLI show it (never its tokens).
pub fn connection_json(c: &toolgate_store::Connection) -> Value {
    json!({
        "server": c.server, "identity": c.identity, "connected": true,
        "subject": c.subject, "client_id": c.client_id,
        "expires_at_ms": c.expires_at_ms, "updated_at_ms": c.updated_at_ms,
    })
}
