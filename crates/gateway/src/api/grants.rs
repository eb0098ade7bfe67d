//! `/api/v1/grants`: list (viewer), create, rotate and revoke (admin). Tokens appear once,
//! in the answer that made them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use toolgate_store::{Role, StoreError};

use super::{admin_with_body, error, manage_error, store_error, AdminOnly, Authorized, Viewer};
use crate::manage::{audit_admin, create_grant, grant_json, GrantRequest};
use crate::state::AppState;

/// `GET /api/v1/grants`.
pub(crate) async fn list(State(st): State<Arc<AppState>>, _: Viewer) -> Response {
    let now = st.now_ms();
    match st.state(|s| s.list_grants()).await {
        Ok(g) => {
            Json(json!({"grants": g.iter().map(|g| grant_json(g, None, now)).collect::<Vec<_>>()}))
                .into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// `POST /api/v1/grants` with `{"server", "label", "policy"?, "identity"?, "expires"?}`.
pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, body) = match admin_with_body(&st, &headers, Role::Admin, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(server), Some(label)) = (s("server"), s("label")) else {
        return error(StatusCode::BAD_REQUEST, "`server` and `label` are required");
    };
    let req = GrantRequest {
        server,
        label,
        policy: s("policy"),
        identity: s("identity"),
        expires: s("expires"),
    };
    let now = st.now_ms();
    let (cfg, store) = (st.config(), st.store.clone());
    let made = tokio::task::spawn_blocking(move || create_grant(&cfg, store.as_ref(), req, now))
        .await
        .unwrap_or_else(|e| {
            Err(crate::manage::ManageError::Store(
                toolgate_store::StoreError::Interrupted(e.to_string()),
            ))
        });
    match made {
        Ok((g, token)) => {
            audit_admin(
                &st,
                &who.name,
                format!("grant {} (`{}`) created", g.id, g.label),
                Some(g.server.clone()),
            )
            .await;
            (StatusCode::CREATED, Json(grant_json(&g, Some(&token), now))).into_response()
        }
        Err(e) => manage_error(e),
    }
}

fn not_found_or(e: &StoreError, id: &str) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, &format!("no grant `{id}`")),
        e => store_error(e),
    }
}

/// `POST /api/v1/grants/{id}/rotate`: a new token; the old one stops working.
pub(crate) async fn rotate(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Authorized(who): AdminOnly,
) -> Response {
    let owned = id.clone();
    match st.state(move |s| s.rotate_grant(&owned)).await {
        Ok((g, token)) => {
            audit_admin(
                &st,
                &who.name,
                format!("grant {id} rotated"),
                Some(g.server.clone()),
            )
            .await;
            Json(grant_json(&g, Some(&token), st.now_ms())).into_response()
        }
        Err(e) => not_found_or(&e, &id),
    }
}

/// `DELETE /api/v1/grants/{id}`: revokes the grant.
pub(crate) async fn revoke(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Authorized(who): AdminOnly,
) -> Response {
    let (owned, now) = (id.clone(), st.now_ms());
    match st.state(move |s| s.revoke_grant(&owned, now)).await {
        Ok(g) => {
            audit_admin(
                &st,
                &who.name,
                format!("grant {id} revoked"),
                Some(g.server.clone()),
            )
            .await;
            Json(grant_json(&g, None, st.now_ms())).into_response()
        }
        Err(e) => not_found_or(&e, &id),
    }
}
