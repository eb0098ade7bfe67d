//! `toolgate run`: stdio mode for desktop clients. The client starts toolgate as its stdio
//! MCP server; toolgate starts the real server (`CMD ARGS…`) as its child and relays
//! newline-delimited JSON-RPC both ways, judging every `tools/call` and filtering every
//! `tools/list` answer exactly as the gateway does, with the same audit log and approvals.
//!
//! One client, one child: ids need no remapping. Server-to-client requests (sampling,
//! elicitation, roots, ping) and their answers pass through unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use toolgate_audit::Record;
use toolgate_policy::{Counters, Decision, Effect, Facts};
use toolgate_protocol::{error_codes, error_response, Envelope, EnvelopeError, Kind};
use toolgate_store::{AuditLog, Grant, NewApproval, StateStore};

use crate::approval::{wait_decision, Decided};
use crate::call::{append_decision, append_durable, store_down};
use crate::config::{Config, Pinning, ServerConfig, Transport};
use crate::enforce::{
    denial_message, judge, reserve, CallHook, Caller, Hook, PinCtx, Sanitize, Verdict,
};
use crate::state::now_ms;
use crate::trail::{self, Trail};
use crate::upstream::id_key;

/// What stdio mode runs on.
pub struct StdioGate {
    /// The config: its one server is the child, its one policy the one enforced.
    pub cfg: Arc<Config>,
    /// Store (pins, approvals, counters' file).
    pub store: Arc<dyn StateStore>,
    /// Rate-limit counters.
    pub counters: Arc<dyn Counters>,
    /// The audit log, when on.
    pub audit: Option<Arc<AuditLog>>,
    /// Who is calling: a local grant (`stdio`, identity the OS user).
    pub grant: Grant,
    /// Wake-ups for held calls (see [`crate::approval::Decisions`]).
    pub decisions: crate::approval::Decisions,
}

struct Shared {
    gate: StdioGate,
    srv: ServerConfig,
    session: String,
    out: mpsc::UnboundedSender<Bytes>,
    /// Lines for the child; taken (closing the child's stdin) when the client leaves.
    child_in: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    pending: Mutex<HashMap<String, Hook>>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hook>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn to_child(&self, line: Bytes) {
        let tx = self.child_in.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(line);
        }
    }

    fn close_child_input(&self) {
        self.child_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn say(&self, msg: String) {
        let _ = self.out.send(Bytes::from(msg));
    }

    fn record(&self, method: &str, id_text: &str, bytes_in: usize) -> Option<Record> {
        self.gate.audit.as_ref().map(|_| {
            trail::request_record(
                &self.gate.cfg,
                &self.srv,
                &self.gate.grant,
                &self.session,
                method,
                id_text,
                bytes_in,
            )
        })
    }
}

/// Runs stdio mode on this process's stdin and stdout until the client closes stdin or
/// the child exits; returns the child's exit code.
pub async fn run(gate: StdioGate) -> Result<i32, String> {
    run_on(gate, tokio::io::stdin(), tokio::io::stdout()).await
}

/// [`run`] on any reader and writer (tests use pipes).
pub async fn run_on(
    gate: StdioGate,
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<i32, String> {
    let Some(srv) = gate.cfg.servers.first().cloned() else {
        return Err("stdio mode needs exactly one server".into());
    };
    let Transport::Stdio {
        command,
        args,
        env,
        cwd,
    } = &srv.transport
    else {
        return Err("stdio mode runs a command, not a URL".into());
    };
    let mut child = Command::new(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", command.display()))?;
    let (Some(mut child_stdin), Some(child_stdout)) = (child.stdin.take(), child.stdout.take())
    else {
        return Err("the child has no stdio pipes".into());
    };

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = out_rx.recv().await {
            if output.write_all(&line).await.is_err()
                || output.write_all(b"\n").await.is_err()
                || output.flush().await.is_err()
            {
                break;
            }
        }
    });
    let child_writer = tokio::spawn(async move {
        while let Some(line) = in_rx.recv().await {
            if child_stdin.write_all(&line).await.is_err()
                || child_stdin.write_all(b"\n").await.is_err()
                || child_stdin.flush().await.is_err()
            {
                break;
            }
        }
        // Dropping stdin tells the child the client is gone.
    });
    let shared = Arc::new(Shared {
        session: format!("stdio-{}", std::process::id()),
        srv,
        gate,
        out: out_tx,
        child_in: Mutex::new(Some(in_tx)),
        pending: Mutex::new(HashMap::new()),
    });

    // Child → client.
    let from_child = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let max = shared.gate.cfg.max_answer;
            read_lines(child_stdout, max, "upstream", |line| {
                // Lone surrogates repaired; what cannot be read is never relayed.
                let line = match toolgate_protocol::upstream::repair(&line) {
                    std::borrow::Cow::Owned(fixed) => Bytes::from(fixed),
                    std::borrow::Cow::Borrowed(_) => line,
                };
                let key = match toolgate_protocol::upstream::peek(&line) {
                    Ok(p) => p.is_response().then(|| p.id_key()),
                    Err(e) => {
                        tracing::warn!(server = %shared.srv.name, "upstream line dropped: {e}");
                        return;
                    }
                };
                let hook = key.as_ref().and_then(|k| shared.pending().remove(k));
                let out = match (hook, key) {
                    (Some(h), Some(k)) => h
                        .answer(&line, &k, &shared.srv.name)
                        .map(Bytes::from)
                        .unwrap_or(line),
                    _ => line,
                };
                let _ = shared.out.send(out);
            })
            .await;
        })
    };

    // Client → child.
    let from_client = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let max = shared.gate.cfg.max_body;
            read_lines(input, max, "client", |line| client_line(&shared, line)).await;
        })
    };

    let status = tokio::select! {
        s = child.wait() => s,
        _ = from_client => {
            // The client closed stdin: close the child's, and give it a moment to exit.
            shared.close_child_input();
            match tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    };
    let _ = from_child.await;
    // Answers to calls still pending: the server is gone.
    let left: Vec<String> = shared
        .pending()
        .drain()
        .map(|(k, h)| {
            h.never_reached();
            k
        })
        .collect();
    for id in left {
        shared.say(error_response(
            &id,
            error_codes::UPSTREAM_ERROR,
            "the server exited before answering",
            None,
        ));
    }
    child_writer.abort();
    drop(shared);
    let _ = writer.await;
    let status = status.map_err(|e| format!("waiting for the server: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

async fn read_lines(
    reader: impl AsyncRead + Unpin,
    max: usize,
    what: &str,
    mut each: impl FnMut(Bytes),
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        match crate::upstream::read_line(&mut reader, &mut buf, max).await {
            Ok(crate::upstream::Line::End) => break,
            Ok(crate::upstream::Line::TooLong) => {
                tracing::error!("{what}: a line over {max} bytes; dropped");
            }
            Ok(crate::upstream::Line::Read) => {
                let line = buf.trim_ascii();
                if !line.is_empty() {
                    each(Bytes::copy_from_slice(line));
                }
            }
            Err(e) => {
                tracing::error!("{what}: reading: {e}");
                break;
            }
        }
    }
}

/// One line from the client.
fn client_line(shared: &Arc<Shared>, line: Bytes) {
    let env = match Envelope::parse(&line) {
        Ok(e) => e,
        Err(e) => {
            let code = match e {
                EnvelopeError::Parse(_) => error_codes::PARSE_ERROR,
                _ => error_codes::INVALID_REQUEST,
            };
            shared.say(error_response("null", code, &e.to_string(), None));
            return;
        }
    };
    if env.kind != Kind::Request {
        shared.to_child(line);
        return;
    }
    let id_text = env.id_text().to_string();
    let method = env.method().to_string();
    match method.as_str() {
        "tools/call" => {
            let shared = shared.clone();
            tokio::spawn(async move { call(shared, line).await });
        }
        "tools/list" => {
            if let (Some(log), Some(mut r)) = (
                &shared.gate.audit,
                shared.record(&method, &id_text, line.len()),
            ) {
                r.decision = Some("allow".into());
                log.append(r);
            }
            let policy = shared
                .gate
                .grant
                .policy
                .as_ref()
                .and_then(|p| shared.gate.cfg.policies.get(p))
                .cloned();
            let pins = (shared.srv.pinning != Pinning::Off).then(|| PinCtx {
                store: shared.gate.store.clone(),
                server: shared.srv.name.clone(),
                enforce: shared.srv.pinning == Pinning::Enforce,
                audit: shared.gate.audit.clone(),
            });
            let hook = Hook::FilterTools(
                policy,
                pins,
                Sanitize {
                    on: shared.srv.sanitize_descriptions,
                    server: shared.srv.name.clone(),
                },
            );
            shared.pending().insert(id_key(&id_text), hook);
            shared.to_child(line);
        }
        _ => {
            if let (Some(log), Some(mut r)) = (
                &shared.gate.audit,
                shared.record(&method, &id_text, line.len()),
            ) {
                r.decision = Some("allow".into());
                log.append(r);
            }
            shared.to_child(line);
        }
    }
}

/// Judges one `tools/call`; holds it for approval if the policy says so; forwards it.
async fn call(shared: Arc<Shared>, line: Bytes) {
    let started = Instant::now();
    let Ok(env) = Envelope::parse(&line) else {
        return;
    };
    let id_text = env.id_text().to_string();
    let progress = env.progress_token.map(|t| t.get().to_string());
    let Some(tool) = env.name.clone() else {
        shared.say(error_response(
            &id_text,
            error_codes::INVALID_PARAMS,
            "tools/call needs `params.name`: the name of the tool to call, as a string",
            None,
        ));
        return;
    };
    let args = match env.arguments_value() {
        Ok(a) => a,
        Err(e) => {
            shared.say(error_response(
                &id_text,
                error_codes::INVALID_PARAMS,
                &e.to_string(),
                None,
            ));
            return;
        }
    };
    let record = shared.record("tools/call", &id_text, line.len());
    let deny = |d: &Decision, approval: Option<&toolgate_store::Approval>| {
        if let (Some(log), Some(r)) = (&shared.gate.audit, record.clone()) {
            let mut r = trail::with_decision(r, &shared.srv, &tool, &args, d, started);
            if let Some(a) = approval {
                r.approval_id = Some(a.id.clone());
            }
            log.append(r);
        }
        shared.say(denial_message(&id_text, d));
    };
    let judge_now = |approval_granted: bool| {
        let gate = &shared.gate;
        let policy = gate
            .grant
            .policy
            .as_ref()
            .and_then(|p| gate.cfg.policies.get(p));
        let held = shared.srv.pinning == Pinning::Enforce
            && gate.store.is_held(&shared.srv.name, &tool).unwrap_or(true);
        let caller = Caller {
            grant: &gate.grant.id,
            identity: &gate.grant.identity,
            session: &shared.session,
            server: &shared.srv.name,
        };
        judge(
            &id_text,
            &tool,
            &args,
            policy.map(|p| p.as_ref()),
            caller,
            Facts {
                definition_changed: held,
                approval_granted,
            },
            now_ms(),
        )
    };
    let mut approval = None;
    let decision = match judge_now(false) {
        Err(denied) => return deny(&denied.1, None),
        Ok(d) if d.effect == Effect::RequireApproval => {
            let hash = toolgate_audit::arg_hash(&args);
            let gate = &shared.gate;
            let taken = match gate
                .store
                .take_approved(&gate.grant.id, &tool, &hash, None, now_ms())
            {
                Ok(t) => t,
                Err(e) => return deny(&store_down(&id_text, &e.to_string()).1, None),
            };
            let a = match taken {
                Some(a) => a,
                None => {
                    match hold(&shared, &tool, &args, &d, &id_text, progress.as_deref()).await {
                        Ok(a) => a,
                        Err((d, a)) => return deny(&d, a.as_ref()),
                    }
                }
            };
            approval_event(&shared, &a, "used");
            approval = Some(a);
            match judge_now(true) {
                Ok(d) if d.effect == Effect::Allow => d,
                Ok(d) => {
                    return deny(
                        &Decision::denied(&d.rule, "the call still needs approval"),
                        approval.as_ref(),
                    )
                }
                Err(denied) => return deny(&denied.1, approval.as_ref()),
            }
        }
        Ok(d) => d,
    };
    let (verdict, decision) = reserve(
        &id_text,
        decision,
        shared.gate.counters.as_ref(),
        now_ms(),
        false,
    )
    .await;
    let ticket = match verdict {
        Verdict::Answer(_) => return deny(&decision, approval.as_ref()),
        Verdict::Forward(t) => t,
        // Not produced here: stdio mode always fails closed.
        Verdict::ForwardUncounted => Default::default(),
    };
    let trail = match (&shared.gate.audit, record) {
        (Some(log), Some(r)) => {
            let mut r = trail::with_decision(r, &shared.srv, &tool, &args, &decision, started);
            if let Some(a) = &approval {
                r.approval_id = Some(a.id.clone());
                r.approver = Some(a.approvers.join(", "));
            }
            match append_decision(log, r.clone()).await {
                Ok(seq) => Some(Arc::new(Trail::new(log.clone(), &r, seq))),
                Err(e) => {
                    tracing::error!("audit log unavailable: {e}; the call is refused");
                    let _ = shared.gate.counters.give_back(&ticket);
                    let d = Decision::denied(
                        "(audit unavailable)",
                        "the audit log cannot be written; the call is refused to be safe",
                    );
                    shared.say(denial_message(&id_text, &d));
                    return;
                }
            }
        }
        _ => None,
    };
    let hook = Hook::Call(CallHook {
        counters: shared.gate.counters.clone(),
        ticket,
        trail,
        watch: None,
        span: None,
    });
    shared.pending().insert(id_key(&id_text), hook);
    shared.to_child(line);
}

fn approval_event(shared: &Shared, a: &toolgate_store::Approval, event: &str) {
    if let Some(log) = &shared.gate.audit {
        log.append(approval_record(shared, a, event));
    }
}

fn approval_record(shared: &Shared, a: &toolgate_store::Approval, event: &str) -> Record {
    let mut r = a.audit_record(event, None, None, now_ms());
    r.session = Some(shared.session.clone());
    r
}

/// Stores the approval, tells the client (progress) and the operator (stderr), and waits.
async fn hold(
    shared: &Arc<Shared>,
    tool: &str,
    args: &Value,
    d: &Decision,
    id_text: &str,
    progress: Option<&str>,
) -> Result<toolgate_store::Approval, (Decision, Option<toolgate_store::Approval>)> {
    let gate = &shared.gate;
    let spec = d.approval.clone().unwrap_or_default();
    let new = NewApproval {
        server: shared.srv.name.clone(),
        grant_id: gate.grant.id.clone(),
        grant_label: gate.grant.label.clone(),
        identity: gate.grant.identity.clone(),
        tool: tool.to_string(),
        arguments: toolgate_protocol::canonical(&shared.srv.redactor.redact(args)),
        arg_hash: toolgate_audit::arg_hash(args),
        policy: gate.grant.policy.clone(),
        policy_version: gate
            .grant
            .policy
            .as_ref()
            .and_then(|p| gate.cfg.policy_versions.get(p).cloned()),
        rule: d.rule.clone(),
        required: spec.approvers.max(1),
        timeout_ms: spec.timeout_secs.saturating_mul(1000),
    };
    let (a, created) = gate
        .store
        .request_approval(&new, now_ms())
        .map_err(|e| (store_down(id_text, &e.to_string()).1, None))?;
    if created {
        if let Some(log) = &gate.audit {
            append_durable(log, approval_record(shared, &a, "requested"))
                .await
                .map_err(|e| {
                    (
                        store_down(id_text, &format!("audit log: {e}")).1,
                        Some(a.clone()),
                    )
                })?;
        }
        gate.store
            .open_approval(&a.id)
            .map_err(|e| (store_down(id_text, &e.to_string()).1, Some(a.clone())))?;
        if let Some(hook) = &gate.cfg.approvals.webhook {
            crate::webhook::notify(&reqwest::Client::new(), hook, "approval.requested", &a);
        }
    }
    eprintln!(
        "toolgate: `{tool}` is held for approval {}: run `toolgate approvals approve {}` (or `deny {} --reason R`) in another terminal",
        a.id, a.id, a.id
    );
    if let Some(token) = progress {
        let msg = json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {
                "progressToken": serde_json::from_str::<Value>(token).unwrap_or_default(),
                "progress": 0,
                "message": format!("waiting for approval {} (toolgate approvals approve {})", a.id, a.id),
            }
        });
        shared.say(msg.to_string());
    }
    let decided = wait_decision(gate.store.as_ref(), &gate.decisions, &a.id, |current| {
        approval_event(shared, current, "expired")
    })
    .await;
    match decided {
        Decided::Approved(taken) => Ok(taken),
        Decided::Refused(d, current) => Err((d, Some(current))),
        Decided::StoreDown(e) => Err((store_down(id_text, &e).1, Some(a))),
    }
}
