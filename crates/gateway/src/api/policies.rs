//! `/api/v1/policies`: read, validate, put (with history and rollback), and the
//! dashboard's per-tool states.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use toolgate_policy::edit::{set_tool_state, Change, ToolState};
use toolgate_store::{Role, StoreError};

use super::{admin_with_body, error, json_body, manage_error, store_error, Viewer};
use crate::manage::{audit_admin, check_policy, put_policy, ManageError, PutOutcome};
use crate::state::AppState;

/// A policy's current document, read from its file.
pub(crate) fn current_document(st: &AppState, name: &str) -> Result<(String, Value), Response> {
    let cfg = st.config();
    let Some(file) = cfg.policy_files.get(name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("no policy named `{name}`"),
        ));
    };
    let version = cfg.policy_versions.get(name).cloned().unwrap_or_default();
    let text = std::fs::read_to_string(file).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read `{}`: {e}", file.display()),
        )
    })?;
    let doc = serde_json::from_str(&text).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("`{}` is not valid JSON: {e}", file.display()),
        )
    })?;
    Ok((version, doc))
}

/// Puts `doc` off the async threads, audits a change, and answers. Waits its turn for a
/// validation permit (a put runs the inline tests too).
async fn put_and_audit(st: &Arc<AppState>, name: String, doc: Value, author: String) -> Response {
    let (s2, n2, a2) = (st.clone(), name.clone(), author.clone());
    let Ok(permit) = st.validations.clone().acquire_owned().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is shutting down",
        );
    };
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        put_policy(&s2, &n2, &doc, &a2)
    })
    .await;
    let r: Result<PutOutcome, ManageError> =
        done.unwrap_or_else(|e| Err(ManageError::Io(format!("the put failed: {e}"))));
    match r {
        Ok(p) => {
            if p.version != p.previous {
                audit_admin(
                    st,
                    &author,
                    format!(
                        "policy `{name}` put: version {} -> {}",
                        p.previous, p.version
                    ),
                    None,
                )
                .await;
            }
            Json(json!({"name": p.name, "version": p.version, "previous": p.previous, "changed": p.version != p.previous})).into_response()
        }
        Err(e) => manage_error(e),
    }
}

/// `GET /api/v1/policies`: every policy with its version and the servers using it.
pub(crate) async fn list(State(st): State<Arc<AppState>>, _: Viewer) -> Response {
    let cfg = st.config();
    let list: Vec<Value> = cfg
        .policy_files
        .iter()
        .map(|(name, file)| {
            let servers: Vec<&str> = cfg
                .servers
                .iter()
                .filter(|s| s.policy.as_deref() == Some(name.as_str()))
                .map(|s| s.name.as_str())
                .collect();
            json!({"name": name, "version": cfg.policy_versions.get(name), "file": file.display().to_string(), "servers": servers})
        })
        .collect();
    Json(json!({ "policies": list })).into_response()
}

/// `GET /api/v1/policies/{name}`: the document and its version.
pub(crate) async fn get_one(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    _: Viewer,
) -> Response {
    match current_document(&st, &name) {
        Ok((version, doc)) => {
            Json(json!({"name": name, "version": version, "document": doc})).into_response()
        }
        Err(r) => r,
    }
}

/// `POST /api/v1/policies/validate`: what `policy check` and `policy test` say of a
/// document (200; `valid` is the verdict). The check runs on a blocking thread, one at
/// a time: while another runs the answer is 429 with `Retry-After`.
pub(crate) async fn validate(State(st): State<Arc<AppState>>, _: Viewer, body: Bytes) -> Response {
    let doc = match json_body(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Ok(permit) = st.validations.clone().try_acquire_owned() else {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "another policy validation is running (at most one at a time): retry in a moment",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        check_policy(&doc)
    })
    .await
    .unwrap_or_else(|e| Err(ManageError::Io(format!("the validation failed: {e}"))));
    match done {
        Ok(l) => Json(json!({
            "valid": true, "errors": [],
            "warnings": l.warnings.iter().map(|w| json!({"pointer": w.pointer, "message": w.message})).collect::<Vec<_>>(),
            "tools": l.policy.tools.len(), "tests": l.policy.tests.len(),
        }))
        .into_response(),
        Err(ManageError::Invalid { message, errors }) => {
            Json(json!({"valid": false, "message": message, "errors": errors})).into_response()
        }
        Err(e) => manage_error(e),
    }
}

/// `PUT /api/v1/policies/{name}`: replaces the document (checked and tested first).
pub(crate) async fn put(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, doc) = match admin_with_body(&st, &headers, Role::PolicyManager, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    put_and_audit(&st, name, doc, who.name).await
}

/// `GET /api/v1/policies/{name}/versions`: the history, newest first.
pub(crate) async fn versions(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    _: Viewer,
) -> Response {
    let cfg = st.config();
    let Some(current) = cfg.policy_versions.get(&name) else {
        return error(StatusCode::NOT_FOUND, &format!("no policy named `{name}`"));
    };
    let owned = name.clone();
    let stored = match st.state(move |s| s.policy_versions(&owned)).await {
        Ok(v) => v,
        Err(e) => return store_error(&e),
    };
    let mut list: Vec<Value> = vec![];
    if !stored.iter().any(|v| &v.version == current) {
        // Edited on disk since the last put: the file is the current version.
        list.push(
            json!({"version": current, "author": "(file)", "created_at_ms": null, "current": true}),
        );
    }
    list.extend(stored.iter().map(|v| {
        json!({"version": v.version, "author": v.author, "created_at_ms": v.created_at_ms, "current": &v.version == current})
    }));
    Json(json!({"name": name, "current": current, "versions": list})).into_response()
}

/// `GET /api/v1/policies/{name}/versions/{version}`: one stored version's document.
pub(crate) async fn version(
    State(st): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    _: Viewer,
) -> Response {
    let (owned, v) = (name.clone(), version.clone());
    match st.state(move |s| s.policy_version(&owned, &v)).await {
        Ok(v) => Json(json!({
            "name": v.name, "version": v.version, "author": v.author, "created_at_ms": v.created_at_ms,
            "document": serde_json::from_str::<Value>(&v.document).unwrap_or(Value::Null),
        }))
        .into_response(),
        Err(StoreError::NotFound(m)) => error(StatusCode::NOT_FOUND, &format!("no {m}")),
        Err(e) => store_error(&e),
    }
}

/// `POST /api/v1/policies/{name}/rollback` with `{"version": "…"}`: puts a stored version
/// back (checked and tested again, recorded as a new put).
pub(crate) async fn rollback(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, body) = match admin_with_body(&st, &headers, Role::PolicyManager, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(version) = body.get("version").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"version\": \"…\"}: a version from GET /api/v1/policies/{name}/versions",
        );
    };
    let (owned, v) = (name.clone(), version.to_string());
    let stored = match st.state(move |s| s.policy_version(&owned, &v)).await {
        Ok(v) => v,
        Err(StoreError::NotFound(m)) => return error(StatusCode::NOT_FOUND, &format!("no {m}")),
        Err(e) => return store_error(&e),
    };
    let doc: Value = match serde_json::from_str(&stored.document) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("version {version} is not valid JSON: {e}"),
            )
        }
    };
    put_and_audit(&st, name, doc, who.name).await
}

/// `PUT /api/v1/policies/{name}/tools/{tool}` with `{"state": "deny", "reason": "…"}`
/// (`allow`, `rate_limit` with `max` and `window`, `require_approval`, `deny`, `hide`):
/// the dashboard's switch, written into the document and put like any change.
pub(crate) async fn set_tool(
    State(st): State<Arc<AppState>>,
    Path((name, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, body) = match admin_with_body(&st, &headers, Role::PolicyManager, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(state) = body
        .get("state")
        .and_then(Value::as_str)
        .and_then(ToolState::parse)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "`state` must be one of allow, rate_limit, require_approval, deny, hide",
        );
    };
    let max = match body.get("max") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n > 0) {
            Some(n) => Some(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "`max` must be a whole number above 0",
                )
            }
        },
    };
    let change = Change {
        state,
        max,
        window: body.get("window").filter(|w| !w.is_null()).cloned(),
        reason: body
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let (_, doc) = match current_document(&st, &name) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let edited = match set_tool_state(&doc, &tool, &change) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    put_and_audit(&st, name, edited, who.name).await
}
