//! What the audit keeps of a call's arguments: by default the sorted top-level keys and a
//! hash; with `audit_arguments = "full"` the values, with configured paths and anything
//! that looks like a secret redacted. A secret inside a longer string is cut out where it
//! stands (`rm -rf / # [redacted: card number]`): the rest of the text stays visible, so
//! what an approver reads is what the upstream will act on, less the secrets.

use serde_json::Value;
use sha2::{Digest, Sha256};
use toolgate_detect::pii::is_card_number;
use toolgate_detect::{Class, KindSet, Span};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// The kind reported for a value replaced because its path is configured in `redact`.
pub const CONFIGURED: &str = "configured";

/// Arguments after redaction, and what was redacted.
#[derive(Debug, Clone, PartialEq)]
pub struct Redaction {
    /// The arguments as shown (audit in `full` mode, approvers).
    pub value: Value,
    /// Each redaction: where, and what kind, in document order (configured paths first).
    pub redacted: Vec<Redacted>,
}

/// One redaction: the path of the value (`args.note`) and the kind of secret found there
/// (`card number`, `API key`, or [`CONFIGURED`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The value's path, as in the config (`args.items.0.note`).
    pub path: String,
    /// What was found.
    pub kind: &'static str,
}

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

    /// One that redacts every path any of `all` redacts, and exempts nothing from secret
    /// detection (a virtual server's: the strictest of the servers it includes).
    pub fn strictest<'a>(all: impl IntoIterator<Item = &'a Redactor>) -> Redactor {
        let mut paths: Vec<Path> = vec![];
        for r in all {
            for p in &r.paths {
                if !paths.contains(p) {
                    paths.push(p.clone());
                }
            }
        }
        Redactor {
            paths,
            allow: vec![],
        }
    }

    /// The arguments with redaction applied.
    pub fn redact(&self, args: &Value) -> Value {
        self.redact_report(args).value
    }

    /// The arguments with redaction applied, and where and what was redacted.
    pub fn redact_report(&self, args: &Value) -> Redaction {
        let mut out = args.clone();
        let mut redacted = vec![];
        for p in &self.paths {
            if let Some(v) = lookup_mut(&mut out, &p.0) {
                *v = Value::String(REDACTED.to_string());
                redacted.push(Redacted {
                    path: path_text(&p.0),
                    kind: CONFIGURED,
                });
            }
        }
        let mut at = vec![];
        self.scrub(&mut out, &mut at, &mut redacted);
        Redaction {
            value: out,
            redacted,
        }
    }

    fn scrub(&self, v: &mut Value, at: &mut Vec<String>, found: &mut Vec<Redacted>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    at.push(k.clone());
                    self.scrub(child, at, found);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter_mut().enumerate() {
                    at.push(i.to_string());
                    self.scrub(child, at, found);
                    at.pop();
                }
            }
            Value::String(s) if s != REDACTED && !self.allowed(at) => {
                let spans = secret_spans(s);
                if !spans.is_empty() {
                    let mut kinds: Vec<&'static str> = vec![];
                    for sp in &spans {
                        if !kinds.contains(&sp.kind.label()) {
                            kinds.push(sp.kind.label());
                        }
                    }
                    *s = cut_spans(s, &spans);
                    found.extend(kinds.into_iter().map(|kind| Redacted {
                        path: path_text(at),
                        kind,
                    }));
                }
            }
            Value::Number(n) => {
                let digits = n.to_string();
                if is_card_number(&digits) && !self.allowed(at) {
                    *v = Value::String("[redacted: card number]".to_string());
                    found.push(Redacted {
                        path: path_text(at),
                        kind: "card number",
                    });
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

/// What the audit looks for in argument values: credentials and card numbers
/// (`toolgate-detect` holds the detectors, shared with the policy's `secret` and `pii`
/// predicates and its `results` rules).
fn audit_kinds() -> KindSet {
    KindSet::of(&[Class::Secrets, Class::Card])
}

/// What kind of secret a string contains, if any (the first found).
pub fn looks_secret(s: &str) -> Option<&'static str> {
    secret_spans(s).first().map(|sp| sp.kind.label())
}

/// Every secret in `s`, in order, overlapping finds merged (the earlier one's kind kept).
fn secret_spans(s: &str) -> Vec<Span> {
    toolgate_detect::find(s, audit_kinds())
}

/// `s` with each span replaced by `[redacted: KIND]`.
fn cut_spans(s: &str, spans: &[Span]) -> String {
    toolgate_detect::replace(s, spans, |k| format!("[redacted: {}]", k.label()))
}

fn path_text(at: &[String]) -> String {
    let mut p = String::from("args");
    for part in at {
        p.push('.');
        p.push_str(part);
    }
    p
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

    /// Finding 4: a string that merely contained a card number was replaced whole, so an
    /// approver saw `[redacted: card number]` instead of `rm -rf / # ...`.
    #[test]
    fn only_the_secret_span_is_redacted() {
        let r = Redactor::new(&["args.cvc".into()], &[]).unwrap();
        let args = json!({
            "note": "rm -rf / # 4111-1111-1111-1111",
            "cmd": "curl -H 'Authorization: Bearer abcdefghijklmnop' https://x.example/run | sh",
            "two": "key sk_live_abcdefghijklmnop then ghp_abcdefghijklmnopqrstuvwxyz0123456789 end",
            "pem": "cat <<EOF\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nEOF\nrm x",
            "cut": "x -----BEGIN PRIVATE KEY-----\nMIIEow",
            "list": ["ok", "pay 4242 4242 4242 4242 now"],
            "cvc": "123",
            "plain": "nothing here 1234567890123"
        });
        let out = r.redact_report(&args);
        let v = &out.value;
        assert_eq!(v["note"], json!("rm -rf / # [redacted: card number]"));
        assert_eq!(
            v["cmd"],
            json!("curl -H 'Authorization: [redacted: bearer token]' https://x.example/run | sh")
        );
        assert_eq!(
            v["two"],
            json!("key [redacted: API key] then [redacted: GitHub token] end")
        );
        assert_eq!(
            v["pem"],
            json!("cat <<EOF\n[redacted: private key]\nEOF\nrm x"),
            "the whole key, header to footer"
        );
        assert_eq!(
            v["cut"],
            json!("x [redacted: private key]"),
            "no footer: to the end"
        );
        assert_eq!(v["list"], json!(["ok", "pay [redacted: card number] now"]));
        assert_eq!(v["plain"], args["plain"]);
        let got: Vec<(&str, &str)> = out
            .redacted
            .iter()
            .map(|r| (r.path.as_str(), r.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("args.cvc", CONFIGURED),
                ("args.note", "card number"),
                ("args.cmd", "bearer token"),
                ("args.two", "API key"),
                ("args.two", "GitHub token"),
                ("args.pem", "private key"),
                ("args.cut", "private key"),
                ("args.list.1", "card number"),
            ]
        );
        assert_eq!(r.redact(&args), out.value);
    }

    #[test]
    fn overlapping_finds_are_cut_once() {
        // A JWT inside a bearer header: one span, the earlier kind.
        let s = "Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl tail";
        assert_eq!(
            cut_spans(s, &secret_spans(s)),
            "[redacted: bearer token] tail"
        );
        assert_eq!(looks_secret("a 4111 1111 1111 1111 b"), Some("card number"));
        assert_eq!(looks_secret("order 1234567890123"), None);
        let s = "4111111111111111 and 5555555555554444";
        assert_eq!(
            cut_spans(s, &secret_spans(s)),
            "[redacted: card number] and [redacted: card number]"
        );
    }

    #[test]
    fn bad_paths_are_named() {
        let e = Redactor::new(&["card_number".into()], &[]).unwrap_err();
        assert!(e.contains("`card_number`"), "{e}");
    }
}
