//! Upstream clients. Streamable HTTP upstreams are reached with a shared `reqwest`
//! client from [`crate::front`]; stdio and legacy HTTP+SSE upstreams are message
//! [`channel`]s, one per agent session.

pub mod channel;

/// A normalised JSON-RPC id, for matching responses to requests (`1` and `1.0` stay
/// distinct; whitespace and string escapes do not matter).
pub fn id_key(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.to_string())
}
