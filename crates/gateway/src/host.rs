//! The `Host` check (DNS rebinding) and the refusal of percent-encoded `/mcp/` paths.
//!
//! A page on another site can make a browser send requests to the gateway under a DNS
//! name of the attacker's that resolves to 127.0.0.1; the browser then believes it talks
//! to the attacker's origin. The `Host` header still names the attacker's domain, so
//! toolgate answers only `Host` values it knows: with a loopback `listen` address,
//! `localhost`, `127.0.0.1` and `[::1]` (any port), plus `allowed_hosts`; with another
//! `listen` address, `allowed_hosts` when it is set (`"*"`: any). `/healthz` answers any
//! `Host` (balancers probe it by address; it says only `ok`).

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use toolgate_protocol::{error_codes, error_response};

/// The host name of a `Host` value (`name[:port]`, `[v6][:port]`), lower-cased.
fn host_name(value: &str) -> &str {
    let v = value.trim();
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match v.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => v,
    }
}

/// True when a request with this `Host` may be answered.
pub fn host_allowed(host: Option<&str>, listen: SocketAddr, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let name = host_name(host).to_ascii_lowercase();
    if allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == name || a == host.to_ascii_lowercase()
    }) {
        return true;
    }
    if listen.ip().is_loopback() {
        return matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1");
    }
    // Another listen address and no list: every name (set `allowed_hosts` to restrict).
    allowed.is_empty()
}

fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    let mut r = (status, error_response("null", code, message, None)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The check the front runs on every request before routing it: refuses an unknown `Host`
/// (421) and a percent-encoded `/mcp/` path (400: server names are letters, digits, `-`
/// and `_`, which need no encoding, so an encoded one can only be an attempt to slip past
/// a filter in front). `None`: go on.
pub fn check(req: &Request, listen: SocketAddr, allowed: &[String]) -> Option<Response> {
    // Liveness says nothing about anything: balancers probe it by address.
    if req.uri().path() == "/healthz" {
        return None;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host_allowed(host, listen, allowed) {
        let shown = toolgate_protocol::escape(host.unwrap_or("(none)"));
        tracing::warn!(host = %shown, "request refused: Host not allowed");
        return Some(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            error_codes::INVALID_REQUEST,
            &format!(
                "Host `{shown}` is not served here: add it to `allowed_hosts` in toolgate.toml"
            ),
        ));
    }
    let path = req.uri().path();
    if path.starts_with("/mcp/") && path.contains('%') {
        return Some(refuse(
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_REQUEST,
            "percent-encoded server names are refused: write the name as it is (letters, digits, '-' and '_')",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:8555".parse().expect("addr")
    }

    #[test]
    fn loopback_listeners_answer_loopback_names_only() {
        for h in [
            "localhost",
            "localhost:8555",
            "127.0.0.1:9",
            "[::1]:8555",
            "LOCALHOST",
        ] {
            assert!(host_allowed(Some(h), local(), &[]), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8555",
            "127.0.0.1.evil.example",
            "localhost.evil",
        ] {
            assert!(!host_allowed(Some(h), local(), &[]), "{h}");
        }
        assert!(!host_allowed(None, local(), &[]));
    }

    #[test]
    fn allowed_hosts_add_names_and_star_allows_any() {
        let allowed = vec!["gw.internal".to_string()];
        assert!(host_allowed(Some("gw.internal:443"), local(), &allowed));
        assert!(!host_allowed(Some("other"), local(), &allowed));
        assert!(host_allowed(Some("other"), local(), &["*".to_string()]));
    }

    #[test]
    fn other_listeners_check_only_with_a_list() {
        let any: SocketAddr = "0.0.0.0:8555".parse().expect("addr");
        assert!(host_allowed(Some("gw.example"), any, &[]));
        let allowed = vec!["gw.example".to_string()];
        assert!(host_allowed(Some("gw.example:8555"), any, &allowed));
        assert!(!host_allowed(Some("rebound.example"), any, &allowed));
    }
}
