//! The path of one `tools/call` once it is admitted: judge; then deny, hold for approval
//! (or use a standing one), or reserve, record and forward. Every front (`serve`'s
//! Streamable HTTP, `toolgate run`'s stdio, carried into the same router) calls it.

use toolgate_policy::Effect;

use crate::call::{approved, CallCtx};
use crate::error::{GatewayError, Unavailable};
use axum::response::{IntoResponse, Response};

/// Judges and answers one `tools/call`.
pub async fn call_tool(ctx: CallCtx) -> Response {
    match ctx.judge(false).await {
        Err(refusal) => match *refusal {
            GatewayError::Denied(answer, d) => ctx.deny(answer, &d, None),
            GatewayError::Unavailable(u) => ctx.refuse(u, None),
            GatewayError::Rejected(r) => r.into_response(),
        },
        Ok(d) if d.effect == Effect::RequireApproval => {
            // The client allowed this tool for the rest of the session, under this policy.
            let version = ctx
                .grant
                .policy
                .as_ref()
                .and_then(|p| ctx.cfg.policy_versions.get(p).map(String::as_str));
            if let Some(a) = ctx.session.allowed(&ctx.tool, version) {
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
