//! The admin API under `/api/v1` (JSON), behind admin tokens with roles: `viewer` reads,
//! `policy_manager` also decides approvals and changes policies, `admin` does everything
//! (grants, servers, admin tokens, upstream credentials). docs/API.md and docs/openapi.json
//! describe every route; [`ROUTES`] lists them for the test that keeps the two in step.
//!
//! Here: authentication, the approval queue, status and tokens. Beside: [`policies`],
//! [`servers`], [`grants`], [`audit`].

// Helpers here return the refusal `Response` itself as their error: one per request, so
// its size does not matter.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod connections;
pub mod grants;
pub mod policies;
pub mod servers;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use toolgate_store::{AdminToken, Approval, DecideError, Role};

use crate::state::AppState;

/// Every route: method and path (as in docs/openapi.json).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/admin-tokens"),
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/approvals/{id}"),
    ("post", "/api/v1/approvals/{id}/approve"),
    ("post", "/api/v1/approvals/{id}/deny"),
    ("get", "/api/v1/servers"),
    ("post", "/api/v1/servers"),
    ("get", "/api/v1/servers/{name}/tools"),
    ("get", "/api/v1/policies"),
    ("post", "/api/v1/policies/validate"),
    ("get", "/api/v1/policies/{name}"),
    ("put", "/api/v1/policies/{name}"),
    ("get", "/api/v1/policies/{name}/versions"),
    ("get", "/api/v1/policies/{name}/versions/{version}"),
    ("post", "/api/v1/policies/{name}/rollback"),
    ("put", "/api/v1/policies/{name}/tools/{tool}"),
    ("get", "/api/v1/grants"),
    ("post", "/api/v1/grants"),
    ("post", "/api/v1/grants/{id}/rotate"),
    ("delete", "/api/v1/grants/{id}"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/audit/stream"),
    ("get", "/api/v1/connections"),
    ("post", "/api/v1/servers/{name}/connections/{identity}"),
    ("delete", "/api/v1/servers/{name}/connections/{identity}"),
];

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// The routes, to merge into the gateway's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/status", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/admin-tokens", get(admin_tokens))
        .route("/api/v1/approvals", get(list_approvals))
        .route("/api/v1/approvals/{id}", get(get_approval))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
        .route("/api/v1/servers", get(servers::list).post(servers::add))
        .route("/api/v1/servers/{name}/tools", get(servers::tools))
        .route("/api/v1/connections", get(connections::list))
        .route(
            "/api/v1/servers/{name}/connections/{identity}",
            post(connections::begin).delete(connections::disconnect),
        )
        .route("/oauth/callback", get(connections::callback))
        .route(
            "/oauth/client-metadata.json",
            get(connections::client_metadata),
        )
        .route("/api/v1/policies", get(policies::list))
        .route("/api/v1/policies/validate", post(policies::validate))
        .route(
            "/api/v1/policies/{name}",
            get(policies::get_one).put(policies::put),
        )
        .route("/api/v1/policies/{name}/versions", get(policies::versions))
        .route(
            "/api/v1/policies/{name}/versions/{version}",
            get(policies::version),
        )
        .route("/api/v1/policies/{name}/rollback", post(policies::rollback))
        .route(
            "/api/v1/policies/{name}/tools/{tool}",
            axum::routing::put(policies::set_tool),
        )
        .route("/api/v1/grants", get(grants::list).post(grants::create))
        .route("/api/v1/grants/{id}/rotate", post(grants::rotate))
        .route("/api/v1/grants/{id}", axum::routing::delete(grants::revoke))
        .route("/api/v1/audit", get(audit::query))
        .route("/api/v1/audit/stream", get(audit::stream))
}

async fn whoami(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match admin(&st, &headers, Role::Viewer).await {
        Ok(a) => Json(json!({"id": a.id, "name": a.name, "role": a.role.as_str()})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn admin_tokens(State(st): State<Arc<AppState>>, _: AdminOnly) -> Response {
    match st.state(|s| s.admin_tokens()).await {
        Ok(list) => Json(json!({"admin_tokens": list.iter().map(|t| json!({
            "id": t.id, "name": t.name, "role": t.role.as_str(), "token_prefix": t.token_prefix,
            "created_at_ms": t.created_at_ms, "revoked_at_ms": t.revoked_at_ms,
        })).collect::<Vec<_>>()}))
        .into_response(),
        Err(e) => store_error(&e),
    }
}

/// 503 for a store failure (the message names it).
pub(crate) fn store_error(e: &toolgate_store::StoreError) -> Response {
    tracing::error!("admin API: store: {e}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the store is unavailable: {e}"),
    )
}

/// The response for a refused change.
pub(crate) fn manage_error(e: crate::manage::ManageError) -> Response {
    use crate::manage::ManageError as E;
    match e {
        E::BadRequest(m) => error(StatusCode::BAD_REQUEST, &m),
        E::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        E::Invalid { message, errors } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": message, "errors": errors})),
        )
            .into_response(),
        E::Store(e) => store_error(&e),
        E::Io(m) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
    }
}

/// A change request: its admin token (a role of at least `need`) and its JSON body.
pub(crate) async fn admin_with_body(
    st: &AppState,
    headers: &HeaderMap,
    need: Role,
    body: &[u8],
) -> Result<(AdminToken, Value), Response> {
    let who = admin(st, headers, need)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((who, json_body(body)?))
}

/// A JSON request body, or a 400 naming what is wrong with it.
pub(crate) fn json_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid JSON: {e}"),
        )
    })
}

/// An approval as the API and the CLI show it.
pub fn approval_json(a: &Approval, now: u64) -> Value {
    json!({
        "id": a.id, "status": a.status_at(now).as_str(), "server": a.server, "grant": a.grant_label,
        "identity": a.identity, "tool": a.tool,
        "arguments": serde_json::from_str::<Value>(&a.arguments).unwrap_or_default(),
        "arg_hash": a.arg_hash, "rule": a.rule, "approvers_needed": a.required, "approvers": a.approvers,
        "reason": a.reason, "decided_by": a.decided_by, "created_at_ms": a.created_at_ms,
        "expires_at_ms": a.expires_at_ms, "decided_at_ms": a.decided_at_ms, "used_at_ms": a.used_at_ms,
    })
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Why an admin request was refused.
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = error(self.status, &self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"toolgate-admin\""),
            );
        }
        r
    }
}

/// The admin token of a request whose role is at least `R` (0 viewer, 1 policy manager,
/// 2 admin), as a handler argument; otherwise the request is refused with 401, 403 or 503
/// before its body is read.
pub(crate) struct Authorized<const R: u8>(pub AdminToken);

/// Any admin token.
pub(crate) type Viewer = Authorized<0>;
/// A policy manager's or an admin's token.
pub(crate) type Manager = Authorized<1>;
/// An admin's token.
pub(crate) type AdminOnly = Authorized<2>;

impl<const R: u8> axum::extract::FromRequestParts<Arc<AppState>> for Authorized<R> {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &Arc<AppState>,
    ) -> Result<Self, Refusal> {
        let need = match R {
            0 => Role::Viewer,
            1 => Role::PolicyManager,
            _ => Role::Admin,
        };
        admin(st, &parts.headers, need).await.map(Authorized)
    }
}

/// The admin token of the request, if its role is at least `need`.
pub(crate) async fn admin(
    st: &AppState,
    headers: &HeaderMap,
    need: Role,
) -> Result<AdminToken, Refusal> {
    let refuse = |status, message: String| Refusal { status, message };
    let Some(token) = crate::front::admission::bearer(headers) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "an admin token is required: `Authorization: Bearer tga_…` (toolgate admin-tokens create)".into(),
        ));
    };
    let owned = token.to_string();
    let found = st
        .state(move |s| s.admin_by_token(&owned))
        .await
        .map_err(|e| {
            tracing::error!("admin token lookup failed: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable".into(),
            )
        })?;
    let Some(admin) = found else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked admin token".into(),
        ));
    };
    if admin.role < need {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "role `{}` may not do this; it needs `{}`",
                admin.role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok(admin)
}

async fn list_approvals(State(st): State<Arc<AppState>>, _: Viewer) -> Response {
    let now = st.now_ms();
    match st.state(move |s| s.approvals(true, now)).await {
        Ok(list) => Json(
            json!({"approvals": list.iter().map(|a| approval_json(a, now)).collect::<Vec<_>>()}),
        )
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn get_approval(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    _: Viewer,
) -> Response {
    let owned = id.clone();
    match st.state(move |s| s.approval(&owned)).await {
        Ok(a) => Json(approval_json(&a, st.now_ms())).into_response(),
        Err(toolgate_store::StoreError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, &format!("no approval `{id}`"))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn decided(
    st: &AppState,
    result: Result<Result<Approval, DecideError>, toolgate_store::StoreError>,
    who: &AdminToken,
    event: &str,
    reason: Option<String>,
) -> Response {
    let a = match result {
        Ok(Ok(a)) => a,
        Ok(Err(e @ DecideError::NotFound(_))) => {
            return error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Ok(Err(e)) => return error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let message = match reason {
        Some(r) => format!("{r} (admin API, token {})", who.id),
        None => format!("admin API, token {}", who.id),
    };
    crate::decisions::record_and_wake(st, &a, event, &who.name, message).await;
    tracing::info!(approval = %a.id, by = %who.name, "approval {event} through the admin API");
    Json(approval_json(&a, st.now_ms())).into_response()
}

async fn approve(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Authorized(who): Manager,
) -> Response {
    let (owned, name, now) = (id.clone(), who.name.clone(), st.now_ms());
    let result = st.state(move |s| s.approve(&owned, &name, now)).await;
    decided(&st, result, &who, "approved", None).await
}

async fn deny(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Authorized(who): Manager,
    body: axum::body::Bytes,
) -> Response {
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
        .filter(|r| !r.trim().is_empty());
    let Some(reason) = reason else {
        return error(
            StatusCode::BAD_REQUEST,
            "send JSON {\"reason\": \"…\"}: the agent reads why its call was denied",
        );
    };
    let (owned, name, why, now) = (id.clone(), who.name.clone(), reason.clone(), st.now_ms());
    let result = st
        .state(move |s| s.deny_approval(&owned, &name, &why, now))
        .await;
    decided(&st, result, &who, "denied", Some(reason)).await
}

async fn status(State(st): State<Arc<AppState>>, _: Viewer) -> Response {
    let now = st.now_ms();
    let since = now.saturating_sub(3_600_000);
    let stats = match st.audit.clone() {
        Some(log) => match tokio::task::spawn_blocking(move || log.stats(since)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the audit read failed"),
        },
        None => None,
    };
    let pending = match st.state(move |s| s.approvals(true, now)).await {
        Ok(p) => p.len(),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    Json(json!({
        "since_ms": since,
        "calls": stats.as_ref().map(|s| s.calls),
        "calls_per_minute": stats.as_ref().map(|s| s.calls as f64 / 60.0),
        "denied": stats.as_ref().map(|s| s.denied),
        "top_deny_rules": stats.as_ref().map(|s| s.top_deny_rules.iter().map(|(r, n)| json!({"rule": r, "count": n})).collect::<Vec<_>>()),
        "pending_approvals": pending,
        "sessions": st.sessions.by_server().into_iter().map(|(server, open, channels)| json!({"server": server, "open": open, "channels": channels})).collect::<Vec<_>>(),
        "audit": st.audit.is_some(),
    }))
    .into_response()
}
