//! The path of one `tools/call` once it is admitted: judge; then deny, hold for approval
//! (or use a standing one), or reserve, record and forward. Every front (`serve`'s
//! Streamable HTTP, `toolgate run`'s stdio, carried into the same router) calls it.

use toolgate_policy::Effect;

use crate::ask::{Answer, Retry};
use crate::call::{approved, CallCtx};
use crate::error::{GatewayError, Unavailable};
use axum::response::{IntoResponse, Response};

/// Judges and answers one `tools/call`.
pub async fn call_tool(mut ctx: CallCtx) -> Response {
    // A 2026-07-28 retry carrying toolgate's `requestState`: toolgate's fields never reach
    // the upstream, whatever the judgement is now.
    let retry = ctx.modern.then(|| Retry::read(&ctx.bytes)).flatten();
    if let Some(r) = &retry {
        ctx.bytes = r.stripped.clone().into();
    }
    match ctx.judge(false).await {
        Err(refusal) => match *refusal {
            GatewayError::Denied(answer, d) => ctx.deny(answer, &d, None),
            GatewayError::Unavailable(u) => ctx.refuse(u, None),
            GatewayError::Rejected(r) => r.into_response(),
        },
        Ok(d) if d.effect == Effect::RequireApproval => {
            // A 2026-07-28 retry carrying the answer to toolgate's question.
            if let Some(retry) = retry {
                return answered_retry(ctx, d, retry).await;
            }
            // The client allowed this tool for the rest of the session, under this policy.
            let version = ctx.policy_version();
            if let Some(a) = ctx.session.allowed(&ctx.tool, version.as_deref()) {
                ctx.record_approval(
                    &a,
                    "used",
                    Some("allowed for this session by the client".into()),
                );
                return approved(ctx, a).await;
            }
            // An approval already given for exactly these arguments is used once.
            let (grant, tool, hash) = (ctx.grant.id.clone(), ctx.tool.clone(), ctx.arg_hash());
            let now = ctx.st.now_ms();
            match ctx
                .st
                .state(move |s| s.take_approved(&grant, &tool, &hash, None, now))
                .await
            {
                Ok(Some(a)) => {
                    ctx.record_approval(&a, "used", Some("a retry with the same arguments".into()));
                    approved(ctx, a).await
                }
                Ok(None) => crate::approval::hold(ctx, d).await,
                Err(e) => ctx.refuse(Unavailable::Store(e.to_string()), None),
            }
        }
        Ok(d) => ctx.forward(d, None).await,
    }
}

/// A 2026-07-28 retry of a held call with toolgate's `requestState`: the client's answer
/// (if any) is applied to the approval it names, then the call goes on if the approval is
/// now approved, is denied if it was denied, and is asked again while it still waits. A
/// state naming another call's approval is ignored (the call is held afresh). Toolgate's
/// fields never reach the upstream.
async fn answered_retry(ctx: CallCtx, d: toolgate_policy::Decision, retry: Retry) -> Response {
    let id = retry.approval_id.clone();
    let a = match ctx.st.state(move |s| s.approval(&id)).await {
        Ok(a)
            if a.grant_id == ctx.grant.id && a.tool == ctx.tool && a.arg_hash == ctx.arg_hash() =>
        {
            a
        }
        Ok(_) | Err(toolgate_store::StoreError::NotFound(_)) => {
            return crate::approval::hold(ctx, d).await;
        }
        Err(e) => return ctx.refuse(Unavailable::Store(e.to_string()), None),
    };
    // The client's answer counts only for a question toolgate asked it: the rule in force
    // asks the client, and it is the rule and policy version that held this approval (an
    // operators-only approval is never decided by the agent's own retry).
    let ask = d.approval.as_ref().map(|s| s.ask).unwrap_or_default();
    let asked_client =
        ask.asks_client() && a.rule == d.rule && a.policy_version == ctx.policy_version();
    match retry.answer {
        Some(answer) if asked_client => {
            let response = serde_json::json!({ "result": answer });
            crate::ask::apply(&ctx, &a, Answer::read(&response, false), ask).await;
        }
        Some(_) => {
            tracing::warn!(approval = %a.id, "a retry answered an approval its client was not asked about; the answer is ignored");
        }
        None => {}
    }
    let (grant, tool, hash, id, now) = (
        ctx.grant.id.clone(),
        ctx.tool.clone(),
        ctx.arg_hash(),
        a.id.clone(),
        ctx.st.now_ms(),
    );
    match ctx
        .st
        .state(move |s| s.take_approved(&grant, &tool, &hash, Some(&id), now))
        .await
    {
        Ok(Some(taken)) => {
            ctx.record_approval(&taken, "used", None);
            approved(ctx, taken).await
        }
        Ok(None) => {
            let id = a.id.clone();
            let current = match ctx.st.state(move |s| s.approval(&id)).await {
                Ok(c) => c,
                Err(e) => return ctx.refuse(Unavailable::Store(e.to_string()), Some(&a)),
            };
            if let Some(refused) = crate::decisions::refusal(&current) {
                let answer = crate::enforce::denial_message(&ctx.id_text, &refused);
                return ctx.deny(answer, &refused, Some(&current));
            }
            if current.status_at(now) == toolgate_store::ApprovalStatus::Expired {
                let (answer, refused) = crate::decisions::timed_out(&ctx.id_text, &current);
                return ctx.deny(answer, &refused, Some(&current));
            }
            // Still waiting (no answer given): ask again.
            crate::approval::hold(ctx, d).await
        }
        Err(e) => ctx.refuse(Unavailable::Store(e.to_string()), Some(&a)),
    }
}
