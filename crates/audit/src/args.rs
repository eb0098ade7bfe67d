//! What the audit keeps of a call's arguments: by default the sorted top-level keys and a
//! hash; with `audit_arguments = "full"` the values, with configured paths and anything
//! that looks like a secret redacted.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// How much of the arguments a server's audit records keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgumentsMode {
    /// Sorted top-level keys and a hash (the default).
    #[default]
    Keys,
    /// The values too, redacted.
    Full,
}

/// The top-level argument names, sorted (empty when the arguments are not an object).
pub fn arg_keys(args: &Value) -> Vec<String> {
    let mut keys: Vec<String> = args
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// SHA-256 (hex) of the canonical arguments: equal for equal arguments in any key order.
pub fn arg_hash(args: &Value) -> String {
    hex::encode(Sha256::digest(
        toolgate_protocol::canonical(args).as_bytes(),
    ))
}

/// A path into the arguments, as written in the config (`args.card.number`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path(Vec<String>);

impl Path {
    fn parse(text: &str) -> Result<Path, String> {
        let rest = text.strip_prefix("args.").ok_or_else(|| {
            format!("`{text}`: a path starts with `args.`, as in `args.card_number`")
        })?;
        let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("`{text}`: a path has no empty parts"));
        }
        Ok(Path(parts))
    }
}

/// Applies redaction: configured paths always; values that look like secrets (API keys,
/// bearer tokens, JWTs, private keys, card numbers) unless their path is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    paths: Vec<Path>,
    allow: Vec<Path>,
}

impl Redactor {
    /// Builds one from `redact` and `audit_allow_secrets` paths; errors name the bad path.
    pub fn new(redact: &[String], allow: &[String]) -> Result<Redactor, String> {
        Ok(Redactor {
            paths: redact
                .iter()
                .map(|p| Path::parse(p))
                .collect::<Result<_, _>>()?,
            allow: allow
                .iter()
                .map(|p| Path::parse(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The arguments with redaction applied.
    pub fn redact(&self, args: &Value) -> Value {
        let mut out = args.clone();
        for p in &self.paths {
            if let Some(v) = lookup_mut(&mut out, &p.0) {
                *v = Value::String(REDACTED.to_string());
            }
        }
        let mut at = vec![];
        self.scrub(&mut out, &mut at);
        out
    }

    fn scrub(&self, v: &mut Value, at: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    at.push(k.clone());
                    self.scrub(child, at);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter_mut().enumerate() {
                    at.push(i.to_string());
                    self.scrub(child, at);
                    at.pop();
                }
            }
            Value::String(s) if s != REDACTED => {
                if let Some(kind) = looks_secret(s) {
                    if !self.allowed(at) {
                        *v = Value::String(format!("[redacted: {kind}]"));
                    }
                }
            }
            Value::Number(n) => {
                let digits = n.to_string();
                if is_card_number(&digits) && !self.allowed(at) {
                    *v = Value::String("[redacted: card number]".to_string());
                }
            }
            _ => {}
        }
    }

    fn allowed(&self, at: &[String]) -> bool {
        self.allow.iter().any(|p| p.0 == at)
    }
}

fn lookup_mut<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    let mut cur = v;
    for part in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(part)?,
            Value::Array(a) => a.get_mut(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn secret_patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", "bearer token"),
            (
                r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
                "JWT",
            ),
            (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "private key"),
            (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}", "API key"),
            (r"\bsk-[A-Za-z0-9_-]{20,}", "API key"),
            (
                r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",
                "GitHub token",
            ),
            (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "Slack token"),
            (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "AWS access key"),
            (r"\bAIza[0-9A-Za-z_-]{35}\b", "Google API key"),
            (r"\btg_[0-9a-f]{48}\b", "toolgate token"),
        ]
        .into_iter()
        .filter_map(|(re, kind)| Regex::new(re).ok().map(|r| (r, kind)))
        .collect()
    })
}

/// What kind of secret a string looks like, if any.
pub fn looks_secret(s: &str) -> Option<&'static str> {
    if let Some((_, kind)) = secret_patterns().iter().find(|(re, _)| re.is_match(s)) {
        return Some(kind);
    }
    contains_card_number(s).then_some("card number")
}

/// True when a run of 13 to 19 digits (spaces or dashes between them allowed) passes the
/// Luhn check.
fn contains_card_number(s: &str) -> bool {
    let mut run = String::new();
    let check = |run: &mut String| {
        let hit = is_card_number(run);
        run.clear();
        hit
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else if (c == ' ' || c == '-') && !run.is_empty() {
            continue;
        } else if check(&mut run) {
            return true;
        }
    }
    check(&mut run)
}

fn is_card_number(digits: &str) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_hash_ignore_order() {
        let a = json!({"b": 1, "a": {"y": 1, "x": 2}});
        let b = json!({"a": {"x": 2, "y": 1}, "b": 1});
        assert_eq!(arg_keys(&a), vec!["a", "b"]);
        assert_eq!(arg_hash(&a), arg_hash(&b));
        assert_ne!(arg_hash(&a), arg_hash(&json!({"a": 1, "b": 1})));
    }

    /// Finding 5: an integer above `u64` was hashed as a rounded float, so an approval
    /// for one account matched a call for another.
    #[test]
    fn hash_tells_apart_every_pair_of_different_numbers() {
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        for (a, b) in [
            ("1234567890123456789", "1234567890123456800"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
            ),
            ("18446744073709551616", "18446744073709551617"),
            ("100", "100.00000000000001"),
            ("100.0", "100.0000000000000000001"),
            ("0", "1e-400"),
        ] {
            let (x, y) = (
                parse(&format!(r#"{{"account": {a}}}"#)),
                parse(&format!(r#"{{"account": {b}}}"#)),
            );
            assert_ne!(arg_hash(&x), arg_hash(&y), "{a} vs {b}");
            assert_eq!(arg_hash(&x), arg_hash(&x.clone()));
        }
        // Ordinary numbers hash as before (pins and stored approvals stay valid).
        assert_eq!(
            toolgate_protocol::canonical(&parse(r#"{"a": 1e3, "b": 1.50, "c": 42}"#)),
            r#"{"a":1000.0,"b":1.5,"c":42}"#
        );
    }

    #[test]
    fn configured_paths_and_secrets_are_redacted() {
        let r = Redactor::new(&["args.card.cvc".into()], &["args.note".into()]).unwrap();
        let args = json!({
            "card": {"number": "4242 4242 4242 4242", "cvc": "123"},
            "auth": "Bearer abcdefghijklmnop",
            "key": "sk_live_abcdefghijklmnop",
            "github": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "pan": 4_111_111_111_111_111_u64,
            "note": "sk_live_abcdefghijklmnop",
            "amount": 5000,
            "order": "1234567890123"
        });
        let out = r.redact(&args);
        assert_eq!(out["card"]["cvc"], json!(REDACTED));
        assert_eq!(out["card"]["number"], json!("[redacted: card number]"));
        assert_eq!(out["auth"], json!("[redacted: bearer token]"));
        assert_eq!(out["key"], json!("[redacted: API key]"));
        assert_eq!(out["github"], json!("[redacted: GitHub token]"));
        assert_eq!(out["pan"], json!("[redacted: card number]"));
        assert_eq!(out["note"], args["note"], "allowed explicitly");
        assert_eq!(out["amount"], json!(5000));
        assert_eq!(out["order"], json!("1234567890123"), "fails the Luhn check");
    }

    #[test]
    fn bad_paths_are_named() {
        let e = Redactor::new(&["card_number".into()], &[]).unwrap_err();
        assert!(e.contains("`card_number`"), "{e}");
    }
}
