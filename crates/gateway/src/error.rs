//! Every way the gateway refuses a message, in one type that renders itself: a request
//! refused before MCP ([`Reject`]: an HTTP status and a JSON-RPC error), a call the policy
//! denied (a tool result with `isError: true`, or -32602 for a hidden tool), and a failure
//! of toolgate's own infrastructure ([`Unavailable`]: refused to be safe, counted by kind,
//! never matched as text).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use toolgate_policy::Decision;

use crate::respond::http_error;

/// Why a message is not forwarded.
#[derive(Debug)]
pub enum GatewayError {
    /// Refused before MCP (unknown server, origin, token, headers, session).
    Rejected(Reject),
    /// Denied by the policy (or hidden): the answer the agent gets, and the decision.
    Denied(String, Decision),
    /// A store the decision needs failed: the call is refused to be safe.
    Unavailable(Unavailable),
}

impl From<Reject> for GatewayError {
    fn from(r: Reject) -> Self {
        GatewayError::Rejected(r)
    }
}

impl From<Unavailable> for GatewayError {
    fn from(u: Unavailable) -> Self {
        GatewayError::Unavailable(u)
    }
}

/// A request refused before MCP: the one place such refusals become HTTP.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    code: i64,
    message: String,
    /// The request's JSON-RPC id as text, echoed in the error (`null` when unknown).
    id: String,
    pub(crate) www_authenticate: Option<String>,
    /// A header to add (e.g. `Allow` on a 405).
    header: Option<Box<(header::HeaderName, HeaderValue)>>,
}

impl Reject {
    /// A refusal with this HTTP status, JSON-RPC error code and message.
    pub(crate) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Reject {
            status,
            code,
            message: message.into(),
            id: "null".into(),
            www_authenticate: None,
            header: None,
        }
    }

    /// Echoes the request's id (as JSON text) in the error.
    pub(crate) fn for_id(mut self, id_text: &str) -> Self {
        self.id = id_text.to_string();
        self
    }

    /// Adds a header to the answer.
    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.header = Some(Box::new((name, value)));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut r = http_error(self.status, &self.id, self.code, &self.message);
        if let Some((name, value)) = self.header.map(|h| *h) {
            r.headers_mut().insert(name, value);
        }
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// A failure of toolgate's own infrastructure on the decision path. The call is refused
/// (fail closed) with the variant's rule, and counted in `/metrics` by its kind, never by
/// matching the text of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The state store (grants, pins, approvals) could not be read or written.
    Store(String),
    /// The rate-limit counters could not be reached.
    Counters(String),
    /// The audit log could not be written.
    Audit(String),
}

impl Unavailable {
    /// The rule of the refusal, as the agent and the audit log see it.
    pub fn rule(&self) -> &'static str {
        match self {
            Unavailable::Store(_) | Unavailable::Counters(_) => "(store unavailable)",
            Unavailable::Audit(_) => "(audit unavailable)",
        }
    }

    /// The `store` label of `toolgate_store_errors_total`.
    pub fn metric(&self) -> &'static str {
        match self {
            Unavailable::Store(_) | Unavailable::Counters(_) => "store",
            Unavailable::Audit(_) => "audit",
        }
    }

    /// The denial the agent gets.
    pub fn decision(&self) -> Decision {
        let message = match self {
            Unavailable::Store(_) => {
                "the state store is unavailable; the call is refused to be safe"
            }
            Unavailable::Counters(_) => {
                "the rate-limit store is unavailable; the call is refused to be safe"
            }
            Unavailable::Audit(_) => {
                "the audit log cannot be written; the call is refused to be safe"
            }
        };
        Decision::denied(self.rule(), message)
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Store(e) => write!(f, "state store unavailable: {e}"),
            Unavailable::Counters(e) => write!(f, "counter store unavailable: {e}"),
            Unavailable::Audit(e) => write!(f, "audit log unavailable: {e}"),
        }
    }
}
