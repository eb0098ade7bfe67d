//! `/api/v1/audit`: query the log, and follow it live (SSE).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use toolgate_audit::Record;
use toolgate_policy::duration::parse_duration;
use toolgate_store::{AuditFilter, AuditLog, Role};

use super::{admin, error, store_error};
use crate::respond::sse_response;
use crate::state::AppState;

/// At most this many records per query answer.
const MAX_LIMIT: u64 = 1000;

/// A time bound: milliseconds since the epoch, or a duration back from now (`15m`, `7d`).
fn time_bound(v: &str, now: u64) -> Option<u64> {
    v.parse::<u64>()
        .ok()
        .or_else(|| parse_duration(v).map(|s| now.saturating_sub(s.saturating_mul(1000))))
}

/// The filter of a query string, or a 400.
fn filter(q: &HashMap<String, String>) -> Result<AuditFilter, Response> {
    let now = crate::clock::now_ms();
    let bad = |k: &str, v: &str| {
        error(
            StatusCode::BAD_REQUEST,
            &format!(
                "`{k}={v}`: expected milliseconds since the epoch or a duration such as 15m or 7d"
            ),
        )
    };
    let time = |k: &str| match q.get(k) {
        None => Ok(None),
        Some(v) => time_bound(v, now).map(Some).ok_or_else(|| bad(k, v)),
    };
    let after_seq = match q.get("after") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("`after={v}`: expected a record seq"),
            )
        })?),
    };
    let s = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(AuditFilter {
        grant: s("grant"),
        identity: s("identity"),
        server: s("server"),
        tool: s("tool"),
        decision: s("decision"),
        rule: s("rule"),
        kind: s("kind"),
        method: s("method"),
        since_ms: time("since")?,
        until_ms: time("until")?,
        after_seq,
    })
}

fn log_of(st: &AppState) -> Result<Arc<AuditLog>, Response> {
    st.audit.clone().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "the audit log is off (`[audit] enabled = false`)",
        )
    })
}

/// A viewer's read: the token checked, the filter of the query string, and the log.
async fn viewer_reads(
    st: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(AuditFilter, Arc<AuditLog>), Response> {
    admin(st, headers, Role::Viewer)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((filter(q)?, log_of(st)?))
}

/// Reads matching records off the async threads.
async fn read(
    log: Arc<AuditLog>,
    f: AuditFilter,
    newest_first: bool,
    limit: u64,
) -> Result<Vec<Record>, toolgate_store::StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut out = vec![];
        log.query(&f, newest_first, Some(limit), |r| {
            out.push(r);
            true
        })
        .map(|()| out)
    })
    .await
    .unwrap_or_else(|_| {
        Err(toolgate_store::StoreError::Audit(
            "the audit read failed".into(),
        ))
    })
}

/// `GET /api/v1/audit?grant&identity&server&tool&decision&rule&kind&method&since&until&after&limit`:
/// the newest `limit` (default 100, at most 1000) matching records, oldest first.
pub(crate) async fn query(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (f, log) = match viewer_reads(&st, &headers, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limit = match q.get("limit").map(|v| v.parse::<u64>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`limit` must be a number from 1 to {MAX_LIMIT}"),
            )
        }
    };
    match read(log, f, true, limit).await {
        Ok(mut records) => {
            records.reverse();
            Json(json!({ "records": records })).into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/audit/stream?…filters…&after=SEQ`: every matching record written after
/// `after` (default: from now on), as SSE events `record` with the seq as event id;
/// keep-alive comments every 15 s. Works across replicas: it reads the shared log.
pub(crate) async fn stream(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (f, log) = match viewer_reads(&st, &headers, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let start = match f.after_seq {
        Some(a) => a,
        None => {
            let l = log.clone();
            match tokio::task::spawn_blocking(move || l.last_seq()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return store_error(&e),
                Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the audit read failed"),
            }
        }
    };
    let events = async_stream::stream! {
        let mut last = start;
        let mut quiet_since = Instant::now();
        loop {
            // The head first: every record up to it is written, so when fewer than a full
            // batch match, nothing up to the head is left to send and `last` moves past the
            // records the filter skipped (the next poll does not scan them again).
            let l = log.clone();
            let head = tokio::task::spawn_blocking(move || l.last_seq()).await.ok().and_then(Result::ok);
            let mut each = f.clone();
            each.after_seq = Some(last);
            match read(log.clone(), each, false, 500).await {
                Ok(records) => {
                    if let Some(h) = head.filter(|_| records.len() < 500) {
                        last = last.max(h);
                    }
                    for r in &records {
                        last = last.max(r.seq);
                        let data = serde_json::to_string(r).unwrap_or_default();
                        yield Ok::<Bytes, std::convert::Infallible>(Bytes::from(format!("id: {}\nevent: record\ndata: {data}\n\n", r.seq)));
                    }
                    if !records.is_empty() {
                        quiet_since = Instant::now();
                        continue;
                    }
                }
                Err(e) => {
                    let data = json!({"error": e.to_string()});
                    yield Ok(Bytes::from(format!("event: error\ndata: {data}\n\n")));
                }
            }
            if quiet_since.elapsed() >= Duration::from_secs(15) {
                quiet_since = Instant::now();
                yield Ok(Bytes::from_static(b": keep-alive\n\n"));
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    sse_response(Body::from_stream(events))
}
