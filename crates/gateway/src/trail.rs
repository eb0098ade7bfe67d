//! The gateway's side of the audit log: the record of each judged request, written
//! before it is forwarded, and the outcome appended when the call ends.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use toolgate_audit::{arg_hash, arg_keys, ArgumentsMode, Kind, Outcome, Record};
use toolgate_policy::{labels, Decision, Effect};
use toolgate_store::{AuditLog, Grant};

use crate::clock::now_ms;
use crate::config::{Config, ServerConfig};

/// Who asked what: the fields every record of one request shares.
pub fn request_record(
    cfg: &Config,
    srv: &ServerConfig,
    grant: &Grant,
    session: &str,
    method: &str,
    id_text: &str,
    bytes_in: usize,
) -> Record {
    let policy = grant.policy.clone();
    let policy_version = policy
        .as_ref()
        .and_then(|p| cfg.policy_versions.get(p).cloned());
    Record {
        at_ms: crate::clock::now_ms(),
        kind: Kind::Call,
        request_id: Some(id_text.to_string()),
        grant_id: Some(grant.id.clone()),
        grant_label: Some(grant.label.clone()),
        identity: Some(grant.identity.clone()),
        server: Some(srv.name.clone()),
        session: Some(session.to_string()),
        method: Some(method.to_string()),
        policy,
        policy_version,
        bytes_in: Some(bytes_in as u64),
        ..Record::default()
    }
}

/// Adds a `tools/call`'s tool, arguments (keys and hash, or redacted values) and decision.
pub fn with_decision(
    mut r: Record,
    srv: &ServerConfig,
    tool: &str,
    args: &Value,
    d: &Decision,
    started: Instant,
) -> Record {
    r.tool = Some(tool.to_string());
    r.arg_keys = Some(arg_keys(args));
    r.arg_hash = Some(arg_hash(args));
    if srv.audit_arguments == ArgumentsMode::Full {
        r.args = Some(toolgate_audit::record::canonical_value(
            &srv.redactor.redact(args),
        ));
    }
    r.decision = Some(
        match d.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::RequireApproval => "require_approval",
        }
        .to_string(),
    );
    r.rule = Some(d.rule.clone());
    if d.effect == Effect::Deny {
        r.message = Some(match &d.detail {
            Some(detail) => format!("{} ({detail})", d.message),
            None => d.message.clone(),
        });
    } else if !d.message.is_empty() {
        // A note on an allowed or held call (let through uncounted under
        // state_fail_mode = "open", or what a held call waits for).
        r.message = Some(d.message.clone());
    }
    if d.hidden {
        r.rule = Some(labels::HIDDEN.to_string());
    }
    r.decision_us = Some(started.elapsed().as_micros() as u64);
    r
}

/// A forwarded call whose outcome is still to come. The outcome is appended once: by
/// [`Trail::finish`], or as `abandoned` when the last handle goes without one.
pub struct Trail {
    log: Arc<AuditLog>,
    link: Record,
    started: Instant,
    status: AtomicU16,
    done: AtomicBool,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trail(call #{:?})", self.link.call_seq)
    }
}

impl Trail {
    /// Starts the trail of the call recorded as `call_seq`.
    pub fn new(log: Arc<AuditLog>, call: &Record, call_seq: u64) -> Self {
        let link = Record {
            kind: Kind::Outcome,
            call_seq: Some(call_seq),
            request_id: call.request_id.clone(),
            grant_id: call.grant_id.clone(),
            grant_label: call.grant_label.clone(),
            identity: call.identity.clone(),
            server: call.server.clone(),
            session: call.session.clone(),
            method: call.method.clone(),
            tool: call.tool.clone(),
            ..Record::default()
        };
        Trail {
            log,
            link,
            started: Instant::now(),
            status: AtomicU16::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// Notes the upstream's HTTP status.
    pub fn upstream_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Appends the outcome (once; later calls are ignored).
    pub fn finish(&self, outcome: Outcome, bytes_out: Option<usize>) {
        self.finish_noted(outcome, bytes_out, None, None);
    }

    /// [`Trail::finish`] with what content inspection did to the answer (`note`: kinds,
    /// result paths, counts, never the matched text) and, when it withheld the result, the
    /// rule that did.
    pub fn finish_noted(
        &self,
        outcome: Outcome,
        bytes_out: Option<usize>,
        note: Option<String>,
        rule: Option<String>,
    ) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut r = self.link.clone();
        r.at_ms = crate::clock::now_ms();
        r.outcome = Some(outcome);
        r.upstream_us = Some(self.started.elapsed().as_micros() as u64);
        r.bytes_out = bytes_out.map(|b| b as u64);
        let status = self.status.load(Ordering::Relaxed);
        r.upstream_status = (status != 0).then_some(status);
        if note.is_some() {
            r.message = note;
        }
        if rule.is_some() {
            r.rule = rule;
        }
        self.log.append(r);
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        self.finish(Outcome::Abandoned, None);
    }
}

/// The outcome a response message shows.
pub fn outcome_of(msg: &Value) -> Outcome {
    if msg.get("error").is_some() {
        Outcome::JsonrpcError
    } else if msg.pointer("/result/isError") == Some(&Value::Bool(true)) {
        Outcome::ToolError
    } else {
        Outcome::Ok
    }
}

/// Appends a record and waits until it is durable; returns its seq. Gives up after
/// [`AUDIT_WAIT`] (the caller then refuses the call, or lets it through under
/// `state_fail_mode = "open"`).
pub async fn append_durable(log: &toolgate_store::AuditLog, record: Record) -> Result<u64, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append_then(
        record,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    wait_for(rx).await
}

/// [`append_durable`] for a decision record: if it is committed after the call gave up
/// waiting (and the call was refused), an outcome `refused` linked to it follows, so the
/// log never shows a refused call as simply allowed.
pub async fn append_decision(
    log: &Arc<toolgate_store::AuditLog>,
    record: Record,
) -> Result<u64, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let late = log.clone();
    log.append_then(
        record,
        Box::new(move |r| {
            if let Err(Ok(seq)) = tx.send(r) {
                late.append(Record {
                    kind: toolgate_audit::Kind::Outcome,
                    at_ms: now_ms(),
                    call_seq: Some(seq),
                    outcome: Some(toolgate_audit::Outcome::Refused),
                    message: Some(format!(
                        "the decision record was committed after the call gave up waiting ({} s); the call was refused and never reached the tool",
                        AUDIT_WAIT.as_secs()
                    )),
                    ..Record::default()
                });
            }
        }),
    );
    wait_for(rx).await
}

async fn wait_for(rx: tokio::sync::oneshot::Receiver<Result<u64, String>>) -> Result<u64, String> {
    match tokio::time::timeout(AUDIT_WAIT, rx).await {
        Ok(r) => r.unwrap_or_else(|_| Err("the audit writer stopped".into())),
        Err(_) => Err(format!(
            "the audit log did not commit within {} s",
            AUDIT_WAIT.as_secs()
        )),
    }
}

/// How long a call waits for its decision record to be committed.
pub const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
