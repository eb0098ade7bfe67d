//! The HTTP front: the router (`/mcp/{server}`, `/healthz`, `/readyz`, `/metrics`, the
//! admin API and the dashboard) behind the `Host` check. Three parts: [`admission`] (who
//! may send this request), [`mcp`] (the MCP handlers: envelope, session, then the call
//! pipeline or the relay), and the probes here. Forwarding to upstreams is
//! [`crate::relay`]; the judgement of a call is [`crate::pipeline`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub mod admission;
pub mod mcp;

use admission::resource_metadata;
pub use admission::Reject;
use mcp::{delete_mcp, get_mcp, post_mcp};

/// The router: a value, tested with `oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mcp/{server}",
            post(post_mcp).get(get_mcp).delete(delete_mcp),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(resource_metadata),
        )
        .merge(crate::api::routes())
        .merge(crate::dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_guard,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}

/// Runs [`crate::host::check`] with the current config before anything else.
async fn host_guard(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refused = {
        let cfg = st.config();
        crate::host::check(&req, cfg.listen, &cfg.allowed_hosts)
    };
    match refused {
        Some(r) => r,
        None => next.run(req).await,
    }
}

/// `GET /metrics`.
async fn metrics_page(State(st): State<Arc<AppState>>) -> Response {
    let now = st.now_ms();
    let pending = match st.state(move |s| s.approvals(true, now)).await {
        Ok(p) => i64::try_from(p.len()).unwrap_or(i64::MAX),
        Err(e) => {
            tracing::error!("metrics: store unavailable: {e}");
            st.metrics.store_error("store");
            -1
        }
    };
    let mut sessions = st.sessions.by_server();
    for srv in &st.config().servers {
        if !sessions.iter().any(|(s, _, _)| *s == srv.name) {
            sessions.push((srv.name.clone(), 0, 0));
        }
    }
    match st.metrics.render(pending, &sessions) {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
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
    let virtual_down = st.virtual_down.report();
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
    let mut body = body;
    if virtual_down.as_object().is_some_and(|o| !o.is_empty()) {
        // Included servers a virtual server could not reach when it last tried: their
        // tools are left out, the rest of the virtual server works (not a readiness failure).
        body["virtual_servers_down"] = virtual_down;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
