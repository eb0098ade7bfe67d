//! Messages toolgate writes itself: JSON-RPC errors and MCP tool results.

use serde_json::{json, Value};

/// JSON-RPC error codes toolgate uses.
pub mod error_codes {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid params (also: unknown tool, as MCP servers answer for a hidden tool).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The upstream server failed or could not be reached.
    pub const UPSTREAM_ERROR: i64 = -32000;
    /// Session not found (expired, unknown or closed).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// `Mcp-Method` / `Mcp-Name` headers disagree with the body (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC error response. `id_text` is the raw id (`"null"` when unknown).
pub fn error_response(id_text: &str, code: i64, message: &str, data: Option<Value>) -> String {
    let id: Value = serde_json::from_str(id_text).unwrap_or(Value::Null);
    let mut error = json!({"code": code, "message": message});
    if let (Some(data), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".into(), data);
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
}

/// A JSON-RPC response whose result is an MCP tool result with `isError: true`,
/// one text block, and `_meta` carrying `meta` under `toolgate`.
pub fn tool_error_result(id_text: &str, text: &str, meta: Value) -> String {
    let id: Value = serde_json::from_str(id_text).unwrap_or(Value::Null);
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": text}],
            "isError": true,
            "_meta": {"toolgate": meta}
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_keeps_id_shape() {
        let s = error_response("\"abc\"", -32602, "unknown tool: x", None);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["code"], -32602);
        let s = error_response("null", -32700, "bad", Some(json!({"k": 1})));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["data"]["k"], 1);
    }

    #[test]
    fn tool_error_shape() {
        let s = tool_error_result(
            "3",
            "[toolgate] denied: no",
            json!({"rule": "(default deny)"}),
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["result"]["isError"], true);
        assert_eq!(v["result"]["content"][0]["text"], "[toolgate] denied: no");
        assert_eq!(v["result"]["_meta"]["toolgate"]["rule"], "(default deny)");
    }
}
