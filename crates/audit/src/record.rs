//! One audit record, its canonical encoding, and its place in the hash chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A judged request (its decision), written before the request is forwarded.
    #[default]
    Call,
    /// How a forwarded call ended, linked to its `call` record by `call_seq`.
    Outcome,
    /// A tool definition changed, appeared, or was approved (pinning).
    Pin,
    /// An approval was requested, approved, denied, expired or used.
    Approval,
    /// Old records were pruned by retention; the chain continues from the anchor.
    Prune,
    /// A change made through the admin API (a policy put, a grant created, ...): who
    /// (`approver`) did what (`message`).
    Admin,
}

impl Kind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Outcome => "outcome",
            Kind::Pin => "pin",
            Kind::Approval => "approval",
            Kind::Prune => "prune",
            Kind::Admin => "admin",
        }
    }
}

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A result without `isError`.
    Ok,
    /// A result with `isError: true` (the tool ran and reported a failure).
    ToolError,
    /// A JSON-RPC error from the upstream.
    JsonrpcError,
    /// The upstream could not be reached, or failed before answering.
    TransportError,
    /// No answer within the upstream timeout.
    Timeout,
    /// The agent went away before the answer (the call may still have run).
    Abandoned,
    /// The call was refused after its decision record was queued: the audit log committed
    /// the record too late, and the call never reached the tool.
    Refused,
}

impl Outcome {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::JsonrpcError => "jsonrpc_error",
            Outcome::TransportError => "transport_error",
            Outcome::Timeout => "timeout",
            Outcome::Abandoned => "abandoned",
            Outcome::Refused => "refused",
        }
    }
}

/// One audit record. Fields that do not apply are `None` and left out of the encoding.
///
/// The fields are declared in byte order of their names, so serde writes them in canonical
/// order and the encoding needs no sorting pass (a test keeps it so).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The approval this record belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Who approved or denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// SHA-256 of the canonical arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg_hash: Option<String>,
    /// The top-level argument names, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg_keys: Option<Vec<String>>,
    /// The argument values, redacted (only with `audit_arguments = "full"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Request body size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Response size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// For an outcome: the `seq` of its call record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_seq: Option<u64>,
    /// The protocol era the agent spoke: `2026-07-28`, or `legacy` (`initialize` and a
    /// session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_era: Option<String>,
    /// `allow` or `deny` (`require_approval` while a call is held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Time spent deciding, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_us: Option<u64>,
    /// The grant's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The grant's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_label: Option<String>,
    /// Who holds the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// What it is about.
    pub kind: Kind,
    /// The message the agent saw (denials), or what happened (events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The JSON-RPC method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// How a forwarded call ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The policy's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The policy's version: the first 16 hex digits of the SHA-256 of its file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The hash of the record before (or of the prune anchor; [`GENESIS`] for the first).
    #[serde(default)]
    pub prev_hash: String,
    /// The JSON-RPC request id, as the agent sent it (JSON text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The rule: a JSON Pointer into the policy or a label such as `(default deny)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Position in the chain, from 1 (set by the log when written).
    #[serde(default)]
    pub seq: u64,
    /// The server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The toolgate session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The tool (`tools/call`, pin and approval records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// toolgate's OAuth client id at the upstream's authorization server, when the call
    /// went with an identity's own token (`auth = "oauth"`; never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_client_id: Option<String>,
    /// The protocol era toolgate spoke to the upstream (`2026-07-28` or `legacy`; they differ
    /// when toolgate translated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_era: Option<String>,
    /// The real server a virtual server forwarded the call to (`server` is the virtual one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_server: Option<String>,
    /// The upstream's HTTP status, when it answered over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Who the upstream knows the caller as (the subject of the identity's token), when
    /// the call went with an identity's own token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_sub: Option<String>,
    /// The tool's name on `upstream_server` (`tool` is the name the agent called).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tool: Option<String>,
    /// Time the upstream took, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
}

impl Record {
    /// The canonical encoding: the JSON of every field that is set (including `seq` and
    /// `prev_hash`), keys sorted, no whitespace. This is what is stored and hashed.
    pub fn canonical(&self) -> String {
        match &self.args {
            // Argument values come from agents: sort their keys at every level.
            Some(args) if !is_canonical(args) => {
                let mut sorted = self.clone();
                sorted.args = Some(canonical_value(args));
                serde_json::to_string(&sorted).unwrap_or_default()
            }
            _ => serde_json::to_string(self).unwrap_or_default(),
        }
    }

    /// The record's hash: SHA-256 (hex) of its canonical encoding, which includes the
    /// previous record's hash, so each record seals the whole chain before it.
    pub fn hash(&self) -> String {
        hash_body(&self.canonical())
    }

    /// Parses a stored canonical encoding.
    pub fn from_body(body: &str) -> Result<Record, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// True when every object in `v` has its keys in byte order already.
fn is_canonical(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.keys()
                .zip(m.keys().skip(1))
                .all(|(a, b)| a.as_bytes() < b.as_bytes())
                && m.values().all(is_canonical)
        }
        Value::Array(a) => a.iter().all(is_canonical),
        _ => true,
    }
}

/// `v` with the keys of every object in byte order (serde_json keeps insertion order).
pub fn canonical_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_value(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_value).collect()),
        other => other.clone(),
    }
}

/// SHA-256 (hex) of a canonical encoding.
pub fn hash_body(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_hash_covers_every_field() {
        let r = Record {
            seq: 7,
            at_ms: 1_700_000_000_000,
            kind: Kind::Call,
            tool: Some("refund".into()),
            decision: Some("deny".into()),
            prev_hash: GENESIS.into(),
            ..Record::default()
        };
        let body = r.canonical();
        assert!(body.starts_with("{\"at_ms\":1700000000000,\"decision\":\"deny\""));
        assert_eq!(Record::from_body(&body).unwrap(), r);
        let mut other = r.clone();
        other.decision = Some("allow".into());
        assert_ne!(other.hash(), r.hash());
        let mut moved = r.clone();
        moved.seq = 8;
        assert_ne!(moved.hash(), r.hash());
    }

    #[test]
    fn direct_encoding_is_the_canonical_one() {
        let r = Record {
            seq: 1,
            at_ms: 2,
            kind: Kind::Outcome,
            request_id: Some("1".into()),
            call_seq: Some(1),
            grant_id: Some("g".into()),
            grant_label: Some("l".into()),
            identity: Some("i".into()),
            server: Some("s".into()),
            session: Some("x".into()),
            method: Some("m".into()),
            tool: Some("t".into()),
            policy: Some("p".into()),
            policy_version: Some("v".into()),
            decision: Some("allow".into()),
            rule: Some("r".into()),
            message: Some("msg".into()),
            arg_keys: Some(vec!["b".into(), "a".into()]),
            arg_hash: Some("h".into()),
            args: Some(serde_json::json!({"z": {"y": 1, "x": [{"b": 1, "a": 2}]}, "a": 0})),
            outcome: Some(Outcome::Ok),
            upstream_status: Some(200),
            upstream_server: Some("real".into()),
            upstream_era: Some("legacy".into()),
            client_era: Some("2026-07-28".into()),
            upstream_tool: Some("orig".into()),
            upstream_sub: Some("alice".into()),
            upstream_client_id: Some("c1".into()),
            decision_us: Some(3),
            upstream_us: Some(4),
            bytes_in: Some(5),
            bytes_out: Some(6),
            approval_id: Some("ap".into()),
            approver: Some("me".into()),
            prev_hash: GENESIS.into(),
        };
        let slow = toolgate_protocol::canonical(&serde_json::to_value(&r).unwrap());
        assert_eq!(r.canonical(), slow);
        // A parsed body encodes back to itself (verification relies on it).
        assert_eq!(Record::from_body(&slow).unwrap().canonical(), slow);
    }
}
