//! A borrowed view of one JSON-RPC message: only the envelope is parsed.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The `_meta` key that carries the protocol version in the 2026-07-28 era.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// Why a message could not be read as one JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes are not JSON (or not UTF-8).
    #[error("parse error: {0}")]
    Parse(String),
    /// A JSON array: batches were removed from MCP in 2025-06-18.
    #[error("batches are not supported: send one JSON-RPC message per request")]
    Batch,
    /// Valid JSON that is not a JSON-RPC 2.0 message.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// What kind of JSON-RPC message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
}

/// The MCP protocol era of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and earlier: `initialize`, sessions, GET stream.
    Legacy,
    /// 2026-07-28 and later: stateless, the version rides in `params._meta`.
    Modern,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawParams<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    version: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traceparent: Option<&'a RawValue>,
}

/// The largest integer id accepted: the largest integer every client (a JavaScript
/// number included) represents exactly, so every upstream can echo it.
pub const MAX_INTEGER_ID: u64 = (1 << 53) - 1;

/// An id must be a string or an integer within ±[`MAX_INTEGER_ID`]: a fractional or huge
/// number is refused at once rather than given to an upstream that may never echo it.
fn check_id(raw: &str) -> Result<(), EnvelopeError> {
    let bad = |what: &str| {
        Err(EnvelopeError::Invalid(format!(
            "`id` must be a string or an integer, got {raw} ({what})"
        )))
    };
    match raw.as_bytes().first() {
        Some(b'"') => Ok(()),
        Some(b'-' | b'0'..=b'9') => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return bad("a fraction or an exponent");
            }
            match digits.parse::<u64>() {
                Ok(n) if n <= MAX_INTEGER_ID => Ok(()),
                _ => bad("beyond ±9007199254740991"),
            }
        }
        _ => bad("neither"),
    }
}

/// A borrowed view of one JSON-RPC 2.0 message.
///
/// Only the envelope is parsed; `params` beyond `name`, `arguments` and `_meta` stays raw.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// Request, notification or response.
    pub kind: Kind,
    /// The id exactly as sent (a string or a number), if any.
    pub id: Option<&'a RawValue>,
    /// The method name, for requests and notifications.
    pub method: Option<String>,
    /// `params.name` when it is a string (the tool name of `tools/call`).
    pub name: Option<String>,
    /// `params.arguments`, raw, if present.
    pub arguments: Option<&'a RawValue>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, if present.
    pub meta_version: Option<String>,
    /// `params._meta.progressToken`, raw, if present.
    pub progress_token: Option<&'a RawValue>,
    /// `params._meta.traceparent` (W3C trace context), when it is a string.
    pub traceparent: Option<String>,
    /// True when the response carries `error` (responses only).
    pub is_error: bool,
    /// The raw `result` (responses only).
    pub result: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Parses one message. Arrays are refused as batches; ids must be strings or
    /// numbers; `jsonrpc` must be `"2.0"`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| EnvelopeError::Parse(format!("body is not UTF-8: {e}")))?;
        let first = text.trim_start().as_bytes().first().copied();
        match first {
            Some(b'[') => return Err(EnvelopeError::Batch),
            Some(b'{') => {}
            None => return Err(EnvelopeError::Parse("empty body".into())),
            Some(_) => {
                // Let serde say what is wrong with it.
                return match serde_json::from_str::<&RawValue>(text) {
                    Err(e) => Err(EnvelopeError::Parse(e.to_string())),
                    Ok(_) => Err(EnvelopeError::Invalid(
                        "a JSON-RPC message must be a JSON object".into(),
                    )),
                };
            }
        }
        let raw: RawEnvelope<'a> =
            serde_json::from_str(text).map_err(|e| EnvelopeError::Parse(e.to_string()))?;
        match raw.jsonrpc.map(RawValue::get) {
            Some("\"2.0\"") => {}
            Some(other) => {
                return Err(EnvelopeError::Invalid(format!(
                    "`jsonrpc` must be \"2.0\", got {other}"
                )))
            }
            None => return Err(EnvelopeError::Invalid("missing `jsonrpc`: \"2.0\"".into())),
        }
        if let Some(id) = raw.id {
            check_id(id.get())?;
        }
        let method = match raw.method {
            None => None,
            Some(m) => Some(serde_json::from_str::<String>(m.get()).map_err(|_| {
                EnvelopeError::Invalid(format!("`method` must be a string, got {}", m.get()))
            })?),
        };
        let kind = match (&method, raw.id, raw.result.is_some() || raw.error.is_some()) {
            (Some(_), Some(_), _) => Kind::Request,
            (Some(m), None, _) if m.starts_with("notifications/") => Kind::Notification,
            (Some(m), None, _) => {
                // Relayed as a notification, a request the upstream runs would pass unjudged.
                return Err(EnvelopeError::Invalid(format!(
                    "`{m}` without an `id` (or with `\"id\": null`): only `notifications/…` methods may be sent without one; send `{m}` as a request with a string or integer id"
                )));
            }
            (None, Some(_), true) => Kind::Response,
            (None, _, _) => {
                return Err(EnvelopeError::Invalid(
                    "missing `method` (or `result`/`error` with an `id` for a response)".into(),
                ))
            }
        };
        let mut env = Envelope {
            kind,
            id: raw.id,
            method,
            name: None,
            arguments: None,
            meta_version: None,
            progress_token: None,
            traceparent: None,
            is_error: raw.error.is_some(),
            result: raw.result,
        };
        if let Some(params) = raw.params {
            let p = params.get().trim_start();
            if p.starts_with('{') {
                let params: RawParams<'a> = serde_json::from_str(params.get())
                    .map_err(|e| EnvelopeError::Invalid(format!("`params`: {e}")))?;
                env.name = params
                    .name
                    .and_then(|n| serde_json::from_str::<String>(n.get()).ok());
                env.arguments = params.arguments;
                if let Some(meta) = params.meta {
                    if meta.get().trim_start().starts_with('{') {
                        if let Ok(m) = serde_json::from_str::<RawMeta<'a>>(meta.get()) {
                            env.meta_version = m
                                .version
                                .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
                            env.progress_token = m.progress_token;
                            env.traceparent = m
                                .traceparent
                                .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
                        }
                    }
                }
            } else if !p.starts_with('[') {
                return Err(EnvelopeError::Invalid(
                    "`params` must be an object or an array".into(),
                ));
            }
        }
        Ok(env)
    }

    /// The method, or `""` for responses.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// The era this message speaks: modern when `_meta` carries a protocol version.
    pub fn era(&self) -> Era {
        if self.meta_version.is_some() || self.method() == "server/discover" {
            Era::Modern
        } else {
            Era::Legacy
        }
    }

    /// The id as raw JSON text (`"abc"` or `7`), or `null` when absent.
    pub fn id_text(&self) -> &str {
        self.id.map(RawValue::get).unwrap_or("null")
    }

    /// Parses the arguments into a value: absent means `{}`.
    pub fn arguments_value(&self) -> Result<serde_json::Value, EnvelopeError> {
        match self.arguments {
            None => Ok(serde_json::Value::Object(Default::default())),
            Some(raw) => {
                let v: serde_json::Value = serde_json::from_str(raw.get())
                    .map_err(|e| EnvelopeError::Invalid(format!("`params.arguments`: {e}")))?;
                if v.is_object() {
                    Ok(v)
                } else {
                    Err(EnvelopeError::Invalid(
                        "`params.arguments` must be an object".into(),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_or_integers_every_client_can_echo() {
        for ok in [r#""a""#, "0", "-7", "9007199254740991", "-9007199254740991"] {
            let b = format!(r#"{{"jsonrpc":"2.0","id":{ok},"method":"ping"}}"#);
            assert!(Envelope::parse(b.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            "1.5",
            "1e3",
            "1.0",
            "9007199254740992",
            "18446744073709551616",
            "-1E2",
        ] {
            let b = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#);
            assert!(
                matches!(
                    Envelope::parse(b.as_bytes()),
                    Err(EnvelopeError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_request_method_without_an_id_is_refused() {
        for b in [
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/list"}"#,
        ] {
            assert!(
                matches!(
                    Envelope::parse(b.as_bytes()),
                    Err(EnvelopeError::Invalid(_))
                ),
                "{b}"
            );
        }
        let n = Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .expect("a notification");
        assert_eq!(n.kind, Kind::Notification);
    }

    #[test]
    fn request_with_tool_call() {
        let b = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"a":1},"extra":{"x":[1,2]}}}"#;
        let e = Envelope::parse(b).unwrap();
        assert_eq!(e.kind, Kind::Request);
        assert_eq!(e.id_text(), "7");
        assert_eq!(e.method(), "tools/call");
        assert_eq!(e.name.as_deref(), Some("echo"));
        assert_eq!(e.arguments.unwrap().get(), r#"{"a":1}"#);
        assert_eq!(e.era(), Era::Legacy);
    }

    #[test]
    fn modern_meta_version() {
        let b = br#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":5}}}"#;
        let e = Envelope::parse(b).unwrap();
        assert_eq!(e.meta_version.as_deref(), Some("2026-07-28"));
        assert_eq!(e.era(), Era::Modern);
        assert_eq!(e.progress_token.unwrap().get(), "5");
        let t = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#;
        assert_eq!(
            Envelope::parse(t).unwrap().traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(Envelope::parse(b"[{}]").unwrap_err(), EnvelopeError::Batch);
        assert!(matches!(
            Envelope::parse(b"{").unwrap_err(),
            EnvelopeError::Parse(_)
        ));
        assert!(matches!(
            Envelope::parse(b"").unwrap_err(),
            EnvelopeError::Parse(_)
        ));
        assert!(matches!(
            Envelope::parse(b"42").unwrap_err(),
            EnvelopeError::Invalid(_)
        ));
        assert!(matches!(
            Envelope::parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err(),
            EnvelopeError::Invalid(_)
        ));
        assert!(matches!(
            Envelope::parse(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#).unwrap_err(),
            EnvelopeError::Invalid(_)
        ));
        assert!(matches!(
            Envelope::parse(br#"{"jsonrpc":"2.0","id":1}"#).unwrap_err(),
            EnvelopeError::Invalid(_)
        ));
        assert!(matches!(
            Envelope::parse(&[0xff, 0xfe]).unwrap_err(),
            EnvelopeError::Parse(_)
        ));
    }

    #[test]
    fn notification_and_response() {
        let n =
            Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind, Kind::Notification);
        let r = Envelope::parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert_eq!(r.kind, Kind::Response);
        assert!(!r.is_error);
        let r = Envelope::parse(br#"{"jsonrpc":"2.0","id":"s1","error":{"code":1,"message":"x"}}"#)
            .unwrap();
        assert!(r.is_error);
    }

    #[test]
    fn arguments_must_be_object() {
        let e = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#)
            .unwrap();
        assert!(e.arguments_value().is_err());
        let e = Envelope::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        )
        .unwrap();
        assert!(e.arguments_value().unwrap().as_object().unwrap().is_empty());
    }
}
