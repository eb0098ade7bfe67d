//! The answers toolgate writes itself, shared by every front and the relay: an HTTP error
//! with a JSON-RPC error body, a JSON body, an SSE stream; and the MCP header names.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use toolgate_protocol::error_response;

/// `Mcp-Session-Id`.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub(crate) const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Mcp-Method` (2026-07-28 era).
pub(crate) const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name` (2026-07-28 era).
pub(crate) const NAME_HEADER: &str = "mcp-name";

/// An HTTP error carrying a JSON-RPC error body.
pub(crate) fn http_error(status: StatusCode, id_text: &str, code: i64, message: &str) -> Response {
    let mut r = (status, error_response(id_text, code, message, None)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON body.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An SSE stream (`text/event-stream`, not cached).
/// True for an answer that is an SSE stream.
pub(crate) fn is_sse(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"))
}

pub(crate) fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
