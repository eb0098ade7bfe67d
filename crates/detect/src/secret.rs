//! Credentials in text.
//!
//! Three families: tokens with a recognisable shape (cloud and SaaS API keys, bearer
//! tokens, JWTs, PEM private keys), the password of a connection string
//! (`postgres://app:PASSWORD@db`), and a high-entropy value written next to a secret-ish
//! name (`"client_secret": "…"`, `API_TOKEN=…`). A value alone, however random it looks
//! (a UUID, a git SHA, base64 image data), is not a secret: without a known shape or a
//! name that says so, it is a request id, a commit or a picture.

use std::sync::OnceLock;

use regex::Regex;

use crate::{Kind, Span};

/// The shaped tokens: (pattern, label). Compiled once.
pub fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", "bearer token"),
            (
                r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
                "JWT",
            ),
            (
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
                "private key",
            ),
            (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}", "API key"),
            (r"\bwhsec_[A-Za-z0-9]{20,}", "API key"),
            (r"\bsk-[A-Za-z0-9_-]{20,}", "API key"),
            (
                r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",
                "GitHub token",
            ),
            (r"\bglpat-[A-Za-z0-9_-]{20,}", "GitLab token"),
            (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "Slack token"),
            (
                r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
                "Slack webhook",
            ),
            (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "AWS access key"),
            (r"\bAIza[0-9A-Za-z_-]{35}\b", "Google API key"),
            (r"\bya29\.[0-9A-Za-z_-]{20,}", "Google OAuth token"),
            (r"\bnpm_[A-Za-z0-9]{36}\b", "npm token"),
            (r"\bhf_[A-Za-z0-9]{30,}\b", "Hugging Face token"),
            (
                r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
                "SendGrid key",
            ),
            (r"\bAccountKey=[A-Za-z0-9+/]{40,}={0,2}", "Azure storage key"),
            (r"\btg_[0-9a-f]{48}\b", "toolgate token"),
        ]
        .into_iter()
        .filter_map(|(re, kind)| Regex::new(re).ok().map(|r| (r, kind)))
        .collect()
    })
}

/// `scheme://user:PASSWORD@host`: the password is group 1.
fn connection_string() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@'\x22]*:([^\s@/'\x22]+)@[^\s/'\x22]")
            .ok()
    })
    .as_ref()
}

/// A secret-ish name, then `=` or `:`, then the value (group 1).
fn named_value() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r#"(?i)\b[a-z0-9_.-]*(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_-]?key|private[_-]?key|auth[_-]?key|credentials?|signing[_-]?key)[a-z0-9_-]*["']?\s*[:=]\s*["']?([A-Za-z0-9/+_.=~-]{12,})"#,
        )
        .ok()
    })
    .as_ref()
}

/// Shannon entropy of the text's bytes, in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A value that reads as a generated token: long, varied, not only digits, and mixing
/// letters with digits or cases (or long hex).
pub fn high_entropy(v: &str) -> bool {
    let v = v.trim_end_matches('=');
    if v.len() < 12 || v.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let lower = v.bytes().any(|b| b.is_ascii_lowercase());
    let upper = v.bytes().any(|b| b.is_ascii_uppercase());
    let digit = v.bytes().any(|b| b.is_ascii_digit());
    let hex = v.len() >= 32 && v.bytes().all(|b| b.is_ascii_hexdigit());
    let classes = usize::from(lower) + usize::from(upper) + usize::from(digit);
    (classes >= 2 || hex) && entropy(v) >= 3.0
}

/// Every credential in `text` (not merged: [`crate::find`] merges).
pub fn spans(text: &str) -> Vec<Span> {
    let mut out: Vec<Span> = patterns()
        .iter()
        .flat_map(|(re, kind)| {
            re.find_iter(text).map(move |m| Span {
                range: m.range(),
                kind: Kind::Secret(kind),
            })
        })
        .collect();
    if let Some(re) = connection_string() {
        for c in re.captures_iter(text) {
            if let Some(pw) = c.get(1) {
                if !matches!(
                    pw.as_str(),
                    "" | "*" | "***" | "****" | "xxx" | "<password>"
                ) {
                    out.push(Span {
                        range: pw.range(),
                        kind: Kind::Secret("connection string password"),
                    });
                }
            }
        }
    }
    if let Some(re) = named_value() {
        for c in re.captures_iter(text) {
            if let Some(v) = c.get(1) {
                if high_entropy(v.as_str()) {
                    out.push(Span {
                        range: v.range(),
                        kind: Kind::Secret("secret value"),
                    });
                }
            }
        }
    }
    out
}

/// The first credential's label, if `text` holds one.
pub fn looks_secret(text: &str) -> Option<&'static str> {
    crate::find(text, crate::KindSet::of(&[crate::Class::Secrets]))
        .first()
        .map(|s| s.kind.label())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(patterns().len(), 18);
        assert!(connection_string().is_some());
        assert!(named_value().is_some());
    }

    #[test]
    fn shaped_tokens_are_found() {
        for (text, label) in [
            ("Authorization: Bearer abcdefghijklmnop", "bearer token"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "JWT",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n-----END OPENSSH PRIVATE KEY-----",
                "private key",
            ),
            ("sk_live_abcdefghijklmnop", "API key"),
            ("sk-ant-api03-abcdefghijklmnopqrstuv", "API key"),
            ("whsec_abcdefghijklmnopqrstuvwx", "API key"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "GitHub token"),
            ("glpat-abcdefghij0123456789", "GitLab token"),
            ("xoxb-1234567890-abcdefghij", "Slack token"),
            (
                "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXX",
                "Slack webhook",
            ),
            ("AKIAIOSFODNN7EXAMPLE", "AWS access key"),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "Google API key"),
            ("ya29.a0AfH6SMBabcdefghijklmnopqrstu", "Google OAuth token"),
            ("npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm token"),
            ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "Hugging Face token"),
            (
                "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                "SendGrid key",
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
                "Azure storage key",
            ),
            (
                "tg_0123456789abcdef0123456789abcdef0123456789abcdef",
                "toolgate token",
            ),
        ] {
            assert_eq!(looks_secret(text), Some(label), "{text}");
        }
    }

    #[test]
    fn connection_string_password_only() {
        let s = "DATABASE_URL=postgres://app:s3cr3t-Pa55@db.internal:5432/main";
        let sp = crate::find(s, crate::KindSet::of(&[crate::Class::Secrets]));
        assert_eq!(sp.len(), 1);
        assert_eq!(&s[sp[0].range.clone()], "s3cr3t-Pa55");
        assert_eq!(
            crate::redact(s, &sp),
            "DATABASE_URL=postgres://app:[redacted:secret]@db.internal:5432/main"
        );
        assert_eq!(
            looks_secret("redis://:hunter2@cache:6379"),
            Some("connection string password")
        );
        // No password: a user name alone, or an ordinary URL with a port.
        assert_eq!(looks_secret("postgres://app@db:5432/main"), None);
        assert_eq!(looks_secret("https://example.com:8443/path"), None);
        assert_eq!(looks_secret("mysql://root:***@db/x"), None);
    }

    #[test]
    fn named_high_entropy_values() {
        assert_eq!(
            looks_secret(r#"{"client_secret": "Zk3pQ9vX2mLr8TnB4wYc"}"#),
            Some("secret value")
        );
        assert_eq!(
            looks_secret("export API_TOKEN=a8f5f167f44f4964e6c998dee827110c"),
            Some("secret value")
        );
        assert_eq!(
            looks_secret("password: Tr0ub4dor3xK9mQ2"),
            Some("secret value")
        );
        // Secret-ish names with plain values: words, numbers, placeholders.
        assert_eq!(looks_secret("token_count: 123456789012"), None);
        assert_eq!(looks_secret("secret_name = my-secret-config-name"), None);
        assert_eq!(looks_secret("password=changeme"), None);
        assert_eq!(looks_secret("max_tokens=4096"), None);
    }

    #[test]
    fn random_looking_values_alone_are_not_secrets() {
        for text in [
            "request 123e4567-e89b-12d3-a456-426614174000 done",
            "commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
            "order 1234567890123, shipped 2024-05-01T10:30:00Z, v1.24.3",
            "the skeleton key and the bearer of news",
            "sk-short",
        ] {
            assert_eq!(looks_secret(text), None, "{text}");
        }
    }

    #[test]
    fn entropy_measures() {
        assert_eq!(entropy(""), 0.0);
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
        assert!(high_entropy("Zk3pQ9vX2mLr8TnB4wYc"));
        assert!(!high_entropy("aaaaaaaaaaaaaaaa1"));
    }
}
