//! Reading what an upstream sends, as clients read it.
//!
//! Clients (JavaScript's `JSON.parse`, Python's `json`) accept some JSON that `serde_json`
//! refuses: a lone UTF-16 surrogate escape (`"\ud800"`) is the common one. A gateway that
//! gives up on such a message and relays it as it is lets the message through unjudged, so
//! toolgate repairs it first (a lone surrogate becomes U+FFFD, as a lossy decoder would)
//! and judges the repaired message, which is also what it relays.
//!
//! [`peek`] reads only the envelope of an upstream message (tolerant of numbers past
//! `f64`, which it never converts); [`parse_value`] reads the whole message for the hooks
//! that must look inside it. Anything still unreadable is an error the caller turns into
//! an answer naming the upstream, never a relay.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope of one message from an upstream.
#[derive(Debug, Clone)]
pub struct Peek<'a> {
    /// The id exactly as sent, if any.
    pub id: Option<&'a RawValue>,
    /// True when the message has a `method` (a request or a notification).
    pub has_method: bool,
    /// True when the message has `result` or `error`.
    pub has_outcome: bool,
    /// `params.progressToken` of a progress notification, raw, if any.
    pub progress_token: Option<&'a RawValue>,
}

impl Peek<'_> {
    /// True for a response (an outcome, no method).
    pub fn is_response(&self) -> bool {
        !self.has_method && self.has_outcome
    }

    /// The id normalised for matching (`null` when absent), as [`id_key`] gives it.
    pub fn id_key(&self) -> String {
        self.id
            .map(|r| id_key(r.get()))
            .unwrap_or_else(|| "null".into())
    }
}

#[derive(Deserialize)]
struct RawPeek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawProgress<'a> {
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

/// Why an upstream's message cannot be judged.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Reads the envelope of one (already [`repair`]ed) upstream message.
pub fn peek(msg: &[u8]) -> Result<Peek<'_>, Unreadable> {
    let text = std::str::from_utf8(msg).map_err(|e| Unreadable(format!("not UTF-8: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return Err(Unreadable("not a JSON object".into()));
    }
    let raw: RawPeek<'_> =
        serde_json::from_str(text).map_err(|e| Unreadable(format!("not JSON: {e}")))?;
    let progress_token = match raw.params {
        Some(p) if p.get().trim_start().starts_with('{') => {
            serde_json::from_str::<RawProgress<'_>>(p.get())
                .ok()
                .and_then(|p| p.progress_token)
        }
        _ => None,
    };
    Ok(Peek {
        id: raw.id,
        has_method: raw.method.is_some(),
        has_outcome: raw.result.is_some() || raw.error.is_some(),
        progress_token,
    })
}

/// A normalised JSON-RPC id, for matching responses to requests (`1` and `1.0` stay
/// distinct; whitespace and string escapes do not matter).
pub fn id_key(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.trim().to_string())
}

/// Parses a whole (already [`repair`]ed) upstream message into a value.
pub fn parse_value(msg: &[u8]) -> Result<serde_json::Value, Unreadable> {
    serde_json::from_slice(msg).map_err(|e| Unreadable(e.to_string()))
}

/// Replaces every lone UTF-16 surrogate escape (`\ud800` without its pair, or a low half
/// alone) inside JSON strings by `\ufffd`. Borrowed when there is none (the usual case: a
/// message without a `\u` escape is not even scanned twice).
pub fn repair(msg: &[u8]) -> Cow<'_, [u8]> {
    if memchr_u_escape(msg).is_none() {
        return Cow::Borrowed(msg);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut in_string = false;
    while i < msg.len() {
        let c = msg[i];
        if !in_string {
            if c == b'"' {
                in_string = true;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if msg.get(i + 1) == Some(&b'u') => {
                let unit = hex4(msg, i + 2);
                match unit {
                    Some(0xD800..=0xDBFF) => {
                        let pair = msg.get(i + 6) == Some(&b'\\')
                            && msg.get(i + 7) == Some(&b'u')
                            && matches!(hex4(msg, i + 8), Some(0xDC00..=0xDFFF));
                        if pair {
                            i += 12;
                        } else {
                            replace(&mut out, msg, i);
                            i += 6;
                        }
                    }
                    Some(0xDC00..=0xDFFF) => {
                        replace(&mut out, msg, i);
                        i += 6;
                    }
                    _ => i += 2,
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(msg),
    }
}

/// The offset of the first `\u` in `msg`, if any.
fn memchr_u_escape(msg: &[u8]) -> Option<usize> {
    msg.windows(2).position(|w| w == b"\\u")
}

fn hex4(msg: &[u8], at: usize) -> Option<u32> {
    let digits = msg.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// Writes `\ufffd` over the 6-byte escape at `at` (copying the message on first use).
fn replace(out: &mut Option<Vec<u8>>, msg: &[u8], at: usize) {
    let buf = out.get_or_insert_with(|| msg.to_vec());
    if let Some(slot) = buf.get_mut(at..at + 6) {
        slot.copy_from_slice(b"\\ufffd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let msg = br#"{"a":"x\ud800y","b":"\udc00","c":"\ud83d\ude00","d":"\\ud800"}"#;
        let fixed = repair(msg);
        let v: serde_json::Value = serde_json::from_slice(&fixed).expect("repaired parses");
        assert_eq!(v["a"], "x\u{fffd}y");
        assert_eq!(v["b"], "\u{fffd}");
        assert_eq!(v["c"], "\u{1f600}");
        assert_eq!(v["d"], "\\ud800", "an escaped backslash is not an escape");
    }

    #[test]
    fn messages_without_lone_surrogates_are_borrowed() {
        let msg = br#"{"a":"\u00e9\ud83d\ude00"}"#;
        assert!(matches!(repair(msg), Cow::Borrowed(_)));
        assert!(matches!(repair(b"{}"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_truncated_escape_is_left_for_the_parser() {
        let msg = br#"{"a":"\ud8"#;
        assert!(parse_value(&repair(msg)).is_err());
    }

    #[test]
    fn peek_reads_responses_with_numbers_past_f64() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"result":{"n":1e400}}"#;
        let p = peek(msg).expect("peek");
        assert!(p.is_response());
        assert_eq!(p.id_key(), "7");
        let v = parse_value(msg).expect("numbers are kept as written");
        assert_eq!(
            v["result"]["n"].to_string(),
            "1e+400",
            "kept, not rounded to infinity"
        );
    }

    #[test]
    fn peek_refuses_what_is_not_an_object() {
        assert!(peek(b"[1]").is_err());
        assert!(peek(b"{\"id\":").is_err());
        assert!(peek(b"\xff").is_err());
    }

    #[test]
    fn peek_finds_progress_tokens() {
        let msg = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t1","progress":1}}"#;
        let p = peek(msg).expect("peek");
        assert!(!p.is_response());
        assert_eq!(p.progress_token.map(RawValue::get), Some("\"t1\""));
    }
}
