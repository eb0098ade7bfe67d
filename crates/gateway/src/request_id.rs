//! Request ids: every HTTP request gets one (the client's `X-Request-Id` when it sends a
//! sane one, else `req_` + a per-process prefix + a counter), carried by the `request`
//! span of every log line written while it is handled, and echoed in the answer's
//! `X-Request-Id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header read and written.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

static NEXT: AtomicU64 = AtomicU64::new(1);

fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        toolgate_store::grants::random_hex(3)
            .unwrap_or_else(|_| format!("{:06x}", std::process::id()))
    })
}

/// A fresh id.
pub fn new_id() -> String {
    format!("req_{}{:x}", prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The client's id, if it is one we can log and echo safely.
fn given(req: &Request) -> Option<String> {
    let v = req.headers().get(&HEADER)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_string())
}

/// The middleware.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = given(&req).unwrap_or_else(new_id);
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}
