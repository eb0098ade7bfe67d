//! Canonical JSON: the one encoding toolgate hashes (tool pins, argument hashes, the audit
//! chain), so the same value always gives the same bytes whatever its key order.

use std::fmt::Write as _;

use serde_json::Value;

/// Canonical JSON: object keys sorted (by their UTF-8 bytes) at every level, no whitespace,
/// strings as serde_json writes them, numbers as [`crate::number::write_canonical_number`]
/// writes them (exact: numbers of different values never share a form).
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
        Value::Number(n) => crate::number::write_canonical_number(n, out),
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

    #[test]
    fn numbers_of_different_values_have_different_forms() {
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or_default();
        for (a, b) in [
            ("1234567890123456789", "1234567890123456800"),
            ("12345678901234567890123", "12345678901234567890124"),
            ("100", "100.00000000000001"),
            ("100.0", "100.00000000000001"),
            ("0", "1e-400"),
        ] {
            assert_ne!(canonical(&parse(a)), canonical(&parse(b)), "{a} vs {b}");
        }
        assert_eq!(
            canonical(&parse(r#"{"n": 1.50}"#)),
            canonical(&parse(r#"{"n": 1.5}"#))
        );
    }
}
