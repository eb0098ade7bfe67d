//! `Mcp-Param-*` headers (2026-07-28 era, SEP-2243): a tool's `inputSchema` may mark a
//! property `"x-mcp-header": "Name"`, and a client then sends that argument in the header
//! `Mcp-Param-Name` too, plain or as `=?base64?…?=`. A server of that era rejects a request
//! whose header is missing, malformed or different from the argument (HTTP 400, -32020);
//! for a server toolgate translates, toolgate does, against the tool's pinned definition.

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::Value;

/// The properties `input_schema` sends in headers, with each header's name (after
/// `Mcp-Param-`).
pub fn declared(input_schema: &Value) -> Vec<(String, String)> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(prop, s)| {
            let name = s.get("x-mcp-header")?.as_str()?;
            Some((prop.clone(), name.to_string()))
        })
        .collect()
}

/// A header's value as the argument it stands for: `=?base64?…?=` decoded (strict
/// alphabet and padding, UTF-8), anything else taken literally; surrounding whitespace
/// ignored. `Err` for a malformed encoded value.
fn decode(raw: &str) -> Result<String, String> {
    let v = raw.trim();
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("is not valid Base64 ({e})"))?;
            String::from_utf8(bytes).map_err(|_| "is not UTF-8 once decoded".to_string())
        }
        None => Ok(v.to_string()),
    }
}

/// The argument as its header carries it.
fn as_header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Why the request's `Mcp-Param-*` headers do not match its arguments (`declared`: what
/// the tool sends in headers), if they do not.
pub fn violation(
    declared: &[(String, String)],
    args: &Value,
    headers: &HeaderMap,
) -> Option<String> {
    for (prop, name) in declared {
        let header = format!("mcp-param-{}", name.to_ascii_lowercase());
        let sent = headers.get(header.as_str()).map(|h| h.to_str());
        let arg = args.get(prop).and_then(as_header_text);
        match (arg, sent) {
            (None, None) => {}
            (Some(_), None) => {
                return Some(format!(
                    "the argument `{prop}` must also be sent in the `Mcp-Param-{name}` header"
                ))
            }
            (_, Some(Err(_))) => {
                return Some(format!(
                    "the `Mcp-Param-{name}` header is not visible ASCII"
                ))
            }
            (None, Some(Ok(_))) => {
                return Some(format!(
                    "the `Mcp-Param-{name}` header is sent without the argument `{prop}`"
                ))
            }
            (Some(arg), Some(Ok(raw))) => match decode(raw) {
                Err(why) => return Some(format!("the `Mcp-Param-{name}` header {why}")),
                Ok(value) if value != arg => {
                    return Some(format!(
                        "the `Mcp-Param-{name}` header does not match the argument `{prop}`"
                    ))
                }
                Ok(_) => {}
            },
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_are_checked_against_the_arguments_they_stand_for() {
        let schema = json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "n": {"type": "integer"}}});
        let d = declared(&schema);
        assert_eq!(d, vec![("region".to_string(), "Region".to_string())]);
        let args = json!({"region": "Hello", "n": 3});
        assert!(violation(&d, &args, &headers(&[("mcp-param-region", " Hello ")])).is_none());
        assert!(violation(
            &d,
            &args,
            &headers(&[("mcp-param-region", "=?base64?SGVsbG8=?=")])
        )
        .is_none());
        // Invalid padding, characters outside the alphabet, a different value, none at all.
        for bad in ["=?base64?SGVsbG8?=", "=?base64?SGVs!!!bG8=?=", "Bye"] {
            assert!(
                violation(&d, &args, &headers(&[("mcp-param-region", bad)])).is_some(),
                "{bad}"
            );
        }
        assert!(violation(&d, &args, &headers(&[])).is_some());
        // Without the prefix or the suffix, a value is literal.
        let literal = json!({"region": "=?base64?SGVsbG8="});
        assert!(violation(
            &d,
            &literal,
            &headers(&[("mcp-param-region", "=?base64?SGVsbG8=")])
        )
        .is_none());
        // Neither argument nor header: nothing to check.
        assert!(violation(&d, &json!({}), &headers(&[])).is_none());
    }
}
