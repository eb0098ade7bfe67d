//! Canonical JSON: the one encoding toolgate hashes (tool pins, argument hashes, the audit
//! chain), so the same value always gives the same bytes whatever its key order.

use std::fmt::Write as _;

use serde_json::Value;

/// Canonical JSON: object keys sorted (by their UTF-8 bytes) at every level, no whitespace,
/// strings and numbers as serde_json writes them.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Appends the canonical encoding of `v` to `out`.
pub fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(val, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping cannot fail for a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é\n"}], "a": null}"#)
            .unwrap_or_default();
        assert_eq!(canonical(&a), r#"{"a":null,"b":[1,{"x":"é\n","y":2}]}"#);
        assert_eq!(
            canonical(&json!({"a": 1, "b": 2})),
            canonical(&json!({"b": 2, "a": 1}))
        );
    }
}
