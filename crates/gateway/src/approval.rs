//! Holding a call for a person's approval: the approval is stored (so the CLI in another
//! process and the admin API see it), approvers are notified (webhook), and the agent's
//! request stays open (SSE keep-alives and progress) until it is approved, denied or
//! expires. If the agent goes away, the approval stands: a retry with byte-identical
//! arguments uses it once.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::StreamExt;
use serde_json::json;
use toolgate_policy::{Ask, Decision};
use toolgate_store::{Approval, ApprovalStatus, NewApproval};

use crate::call::{approved, CallCtx};
use crate::decisions::{wait_decision, Decided};
use crate::enforce::denial_message;
use crate::enforce::Unavailable;
use crate::respond::sse_response;
use crate::trail::append_decision;
use toolgate_protocol::sse::encode;
use toolgate_protocol::Escaped;

/// How often the agent hears that the call is still waiting.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The rule of a call denied because its grant's share of the approval queue is full.
pub const QUEUE_FULL: &str = "(approval queue full)";

/// Serialises entering the approval queue in this process (see [`hold`]).
static QUEUE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Calls of this grant waiting for approval, other than this very call (a retry of a
/// waiting call joins it rather than asking again).
async fn waiting_for_grant(
    ctx: &CallCtx,
    new: &NewApproval,
) -> Result<usize, toolgate_store::StoreError> {
    let now = ctx.st.now_ms();
    let waiting = ctx.st.state(move |s| s.approvals(true, now)).await?;
    Ok(waiting
        .iter()
        .filter(|a| a.grant_id == new.grant_id)
        .filter(|a| !(a.tool == new.tool && a.arg_hash == new.arg_hash))
        .count())
}

/// The rule of a call whose policy asks the client, when the client cannot be asked.
pub const APPROVAL_UNAVAILABLE: &str = "(approval unavailable)";

/// Holds a call that needs approval; answers when it is decided.
pub async fn hold(ctx: CallCtx, d: Decision) -> Response {
    let spec = d.approval.clone().unwrap_or_default();
    let cfg = ctx.cfg.clone();
    // The client can be asked when it declared elicitation: on this call's stream (legacy
    // era), or with an `input_required` result (2026-07-28 era).
    let can_ask = if ctx.modern {
        crate::ask::modern_client_can_elicit(&ctx.bytes)
    } else {
        ctx.accepts_sse && ctx.session.client_can("elicitation")
    };
    if spec.ask == Ask::Client && !can_ask {
        let why = if !ctx.modern && !ctx.accepts_sse {
            "the client did not accept a stream (Accept: text/event-stream), on which it would be asked"
        } else {
            "the client did not declare the `elicitation` capability"
        };
        let d = Decision::denied(
            APPROVAL_UNAVAILABLE,
            &format!("`{}` needs the approval of the person at this client, which cannot be asked: {why}", ctx.tool),
        );
        return ctx.deny(denial_message(&ctx.id_text, &d), &d, None);
    }
    let ask_client = spec.ask.asks_client() && can_ask;
    let new = NewApproval {
        server: ctx.srv.name.clone(),
        grant_id: ctx.grant.id.clone(),
        grant_label: ctx.grant.label.clone(),
        identity: ctx.grant.identity.clone(),
        tool: ctx.tool.clone(),
        arguments: toolgate_protocol::canonical(&ctx.srv.redactor.redact(&ctx.args)),
        arg_hash: ctx.arg_hash(),
        policy: ctx.grant.policy.clone(),
        policy_version: ctx.policy_version(),
        rule: d.rule.clone(),
        // The client's answer decides alone (`approvers` counts operators).
        required: if ask_client { 1 } else { spec.approvers.max(1) },
        timeout_ms: spec.timeout_secs.saturating_mul(1000),
    };
    // One held call at a time in this process checks the grant's share of the queue and
    // enters it, so concurrent calls cannot overshoot the cap (across replicas, by at most
    // one call per replica).
    let queue = QUEUE.lock().await;
    match waiting_for_grant(&ctx, &new).await {
        Ok(n) if n >= cfg.approvals.max_pending_per_grant => {
            drop(queue);
            let d = Decision::denied(
                QUEUE_FULL,
                &format!(
                    "this grant already has {n} calls waiting for approval (approvals.max_pending_per_grant = {}): wait for a decision before asking for another",
                    cfg.approvals.max_pending_per_grant
                ),
            );
            return ctx.deny(denial_message(&ctx.id_text, &d), &d, None);
        }
        Ok(_) => {}
        Err(e) => {
            drop(queue);
            return ctx.refuse(Unavailable::Store(e.to_string()), None);
        }
    }
    let (asked, now) = (new.clone(), ctx.st.now_ms());
    let (a, created) = match ctx.st.state(move |s| s.request_approval(&asked, now)).await {
        Ok(x) => x,
        Err(e) => return ctx.refuse(Unavailable::Store(e.to_string()), None),
    };
    ctx.record_decision(&d, Some(&a), Some("require_approval"));
    if created {
        // The `requested` record is durable before anyone can decide, so the audit log
        // never shows a decision before its request.
        if let Some(log) = &ctx.st.audit {
            if let Err(e) = append_decision(log, ctx.approval_record(&a, "requested", None)).await {
                return ctx.refuse(Unavailable::Audit(e.to_string()), Some(&a));
            }
        }
        let id = a.id.clone();
        if let Err(e) = ctx.st.state(move |s| s.open_approval(&id)).await {
            return ctx.refuse(Unavailable::Store(e.to_string()), Some(&a));
        }
        tracing::warn!(approval = %a.id, server = %a.server, grant = %Escaped(&a.grant_label), tool = %Escaped(&a.tool), "call held for approval: `toolgate approvals approve {}` or `deny {} --reason R`", a.id, a.id);
        if let Some(hook) = &cfg.approvals.webhook {
            crate::webhook::notify(&ctx.st.http, hook, "approval.requested", &a);
        }
    }
    drop(queue);
    if ask_client && ctx.modern {
        // No stream to ask on: the question is the answer; the client retries with its
        // user's answer (see `pipeline::call_tool`).
        return crate::respond::json_response(
            axum::http::StatusCode::OK,
            crate::ask::input_required(&ctx, &a),
        );
    }
    let waiting = wait(ctx.clone(), a.clone());
    if !ctx.accepts_sse {
        return waiting.await;
    }
    // The question, and where its answer arrives (none: too many questions wait on this
    // session; operators can still decide).
    let asked = if ask_client {
        let qid = crate::ask::question_id(&a.id);
        ctx.session
            .ask(&qid)
            .map(|rx| (crate::ask::question(&ctx, &a, spec.session_scope), rx))
    } else {
        None
    };
    let (session_scope, spec_ask) = (spec.session_scope, spec.ask);
    let asker = ctx.clone();
    let progress = ctx.progress.clone();
    let stream = async_stream::stream! {
        let started = std::time::Instant::now();
        let note = |secs: u64| -> Bytes {
            match &progress {
                Some(token) => {
                    let msg = json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {
                            "progressToken": serde_json::from_str::<serde_json::Value>(token).unwrap_or_default(),
                            "progress": secs,
                            "message": format!("waiting for approval {} (toolgate approvals approve {})", a.id, a.id),
                        }
                    });
                    encode(&msg.to_string(), None)
                }
                None => Bytes::from_static(b": waiting for approval\n\n"),
            }
        };
        let mut answered = match asked {
            Some((question, rx)) => {
                yield Ok::<Bytes, std::io::Error>(encode(&question, None));
                Some(rx)
            }
            None => {
                yield Ok::<Bytes, std::io::Error>(note(0));
                None
            }
        };
        tokio::pin!(waiting);
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.tick().await;
        let answer = loop {
            tokio::select! {
                r = &mut waiting => break r,
                _ = tick.tick() => yield Ok(note(started.elapsed().as_secs().max(1))),
                got = futures::future::OptionFuture::from(answered.as_mut()), if answered.is_some() => {
                    answered = None;
                    let said = match got {
                        Some(Ok(response)) => crate::ask::Answer::read(&response, session_scope),
                        // The session ended: the wait ends by itself.
                        _ => continue,
                    };
                    crate::ask::apply(&asker, &a, said, spec_ask).await;
                }
            }
        };
        let is_sse = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let mut body = answer.into_body().into_data_stream();
        if is_sse {
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => yield Ok(c),
                    Err(e) => {
                        tracing::warn!("held call: answer stream broke: {e}");
                        break;
                    }
                }
            }
        } else {
            let mut all = Vec::new();
            while let Some(Ok(c)) = body.next().await {
                all.extend_from_slice(&c);
            }
            yield Ok(encode(&String::from_utf8_lossy(&all), None));
        }
    };
    sse_response(Body::from_stream(stream))
}

/// Waits for the decision and answers: forwards an approved call (judged again), denies
/// a denied or expired one.
async fn wait(ctx: CallCtx, a: Approval) -> Response {
    let decided = wait_decision(&ctx.st, &a.id, |current| {
        ctx.record_approval(current, "expired", None)
    })
    .await;
    match decided {
        Decided::Approved(taken) => {
            ctx.record_approval(&taken, "used", None);
            approved(ctx, taken).await
        }
        Decided::Refused(d, current) => {
            ctx.deny(denial_message(&ctx.id_text, &d), &d, Some(&current))
        }
        Decided::StoreDown(e) => ctx.refuse(Unavailable::Store(e), Some(&a)),
    }
}

/// How often [`sweep_expired`] looks for approvals that ran out of time.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Marks pending approvals whose time ran out as expired and records each in the audit
/// log, whether or not a call still waits for it (the agent may have left): every state
/// change of an approval is an audit record. A waiting call that notices first records
/// it instead (the store lets one of them make the change). Returns how many it expired.
pub fn sweep_expired(
    store: &dyn toolgate_store::StateStore,
    audit: Option<&toolgate_store::AuditLog>,
    now: u64,
) -> Result<usize, toolgate_store::StoreError> {
    let mut n = 0;
    for a in store.approvals(false, now)? {
        if a.status != ApprovalStatus::Pending || a.expires_at_ms > now {
            continue;
        }
        if store.expire_approval(&a.id, now)? {
            n += 1;
            tracing::info!(approval = %a.id, tool = %crate::escape(&a.tool), "approval expired with no decision");
            if let Some(log) = audit {
                log.append(a.audit_record(
                    "expired",
                    None,
                    Some("nobody decided in time".into()),
                    now,
                ));
            }
        }
    }
    Ok(n)
}
