//! Approval through the agent's own client (`"approval": {"ask": "client"}`): the person
//! at the keyboard is asked, with an `elicitation/create` request toolgate sends on the held
//! call's stream (legacy era; `toolgate run` carries it over stdio). The client is one more
//! approver: its answer approves or denies the stored approval like the CLI or the admin
//! API would (recorded with `approver = client:IDENTITY`), and the held call, waiting as
//! usual, goes on.
//!
//! In the 2026-07-28 era (no stream to ask on, no session) the held call is answered at
//! once with an `input_required` result carrying the same question under the key
//! [`INPUT_KEY`] and `requestState` naming the approval; the client asks its user and
//! retries the call with the answer in `inputResponses`, which is applied the same way
//! before the retry is judged (see [`Retry`]). toolgate's two fields are taken out of the
//! retried request before it goes upstream.
//!
//! The question names the tool, its server, the arguments as approvers see them (after
//! `redact`) and the rule that asked; the answer is one of `allow_once`, `allow_session`
//! (offered when the policy says `session_scope`: the same tool in the same session, until
//! it ends or the policy changes) and `deny` (with an optional reason).

use serde_json::{json, Value};
use toolgate_policy::Ask;
use toolgate_store::{Approval, ApprovalStatus, DecideError};

use crate::call::CallCtx;

/// The prefix of toolgate's questions' ids in this process: `toolgate-approval-` and a
/// random part, so no upstream's own server-to-client request can collide with it (the
/// front takes answers with this prefix for itself).
fn question_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut nonce = [0u8; 6];
        // Without the OS's random source the prefix is still distinct from any approval
        // id an upstream could know; it is only less unpredictable.
        let _ = getrandom::fill(&mut nonce);
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        format!("toolgate-approval-{hex}-")
    })
}

/// The JSON-RPC id of the question about approval `id`, as a string.
fn question_id_string(approval_id: &str) -> String {
    format!("{}{approval_id}", question_prefix())
}

/// The JSON-RPC id of the question about approval `id` (raw JSON text).
pub fn question_id(approval_id: &str) -> String {
    Value::String(question_id_string(approval_id)).to_string()
}

/// True for the id (raw JSON text) of a question this process asked.
pub fn is_question_id(raw_id: &str) -> bool {
    raw_id
        .strip_prefix('"')
        .is_some_and(|r| r.starts_with(question_prefix()))
}

/// Who answered, as the audit log and the approval record it.
pub fn approver(ctx: &CallCtx) -> String {
    format!("client:{}", ctx.grant.identity)
}

/// The key of toolgate's question in `inputRequests` / `inputResponses` (2026-07-28 era).
pub const INPUT_KEY: &str = "toolgate-approval";

/// The prefix of toolgate's `requestState` (then the approval id).
const STATE_PREFIX: &str = "toolgate-approval:";

/// The `elicitation/create` request that asks about held call `a` (legacy era).
pub fn question(ctx: &CallCtx, a: &Approval, session_scope: bool) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": question_id_string(&a.id),
        "method": "elicitation/create",
        "params": question_params(ctx, a, session_scope),
    })
    .to_string()
}

/// The `input_required` result that asks about held call `a` (2026-07-28 era): the same
/// question, no session to allow a tool for.
pub fn input_required(ctx: &CallCtx, a: &Approval) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": serde_json::from_str::<Value>(&ctx.id_text).unwrap_or(Value::Null),
        "result": {
            "resultType": "input_required",
            "inputRequests": {
                INPUT_KEY: {"method": "elicitation/create", "params": question_params(ctx, a, false)}
            },
            "requestState": format!("{STATE_PREFIX}{}", a.id),
        }
    })
    .to_string()
}

/// A retried 2026-07-28 call that carries toolgate's `requestState` (and, when the client
/// asked its user, the answer).
#[derive(Debug, Clone)]
pub struct Retry {
    /// The approval the state names.
    pub approval_id: String,
    /// The client's answer (the `inputResponses` entry), if given.
    pub answer: Option<Value>,
    /// The request without toolgate's two fields, as the upstream must see it.
    pub stripped: Vec<u8>,
}

impl Retry {
    /// Reads a `tools/call` request: `None` unless its `requestState` is toolgate's.
    pub fn read(request: &[u8]) -> Option<Retry> {
        // Most calls carry no state: they are not parsed again.
        memchr::memmem::find(request, b"\"requestState\"")?;
        let mut v: Value = serde_json::from_slice(request).ok()?;
        let params = v.get_mut("params")?.as_object_mut()?;
        let approval_id = params
            .get("requestState")?
            .as_str()?
            .strip_prefix(STATE_PREFIX)?
            .to_string();
        params.remove("requestState");
        let answer = match params
            .get_mut("inputResponses")
            .and_then(Value::as_object_mut)
        {
            Some(responses) => {
                let mine = responses.remove(INPUT_KEY);
                if responses.is_empty() {
                    params.remove("inputResponses");
                }
                mine
            }
            None => None,
        };
        Some(Retry {
            approval_id,
            answer,
            stripped: serde_json::to_vec(&v).ok()?,
        })
    }
}

/// True when a 2026-07-28 request's `_meta` declares the client can elicit.
pub fn modern_client_can_elicit(request: &[u8]) -> bool {
    serde_json::from_slice::<Value>(request).is_ok_and(|v| {
        v["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]["elicitation"]
            .is_object()
    })
}

fn question_params(ctx: &CallCtx, a: &Approval, session_scope: bool) -> Value {
    let mut choices = vec!["allow_once"];
    let mut titles = vec!["Allow once".to_string()];
    if session_scope {
        choices.push("allow_session");
        titles.push(format!("Allow `{}` for this session", a.tool));
    }
    choices.push("deny");
    titles.push("Deny".into());
    let message = format!(
        "toolgate holds a call for your approval.\n\nTool: {}\nServer: {}\nArguments: {}\nAsked by rule: {}",
        a.tool, a.server, a.arguments, a.rule
    );
    json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "decision": {
                        "type": "string",
                        "title": "Decision",
                        "enum": choices,
                        "enumNames": titles,
                    },
                    "reason": {
                        "type": "string",
                        "title": "Reason (for a denial)",
                    }
                },
                "required": ["decision"]
            },
            "_meta": {"toolgate": {"approval": a.id, "tool": a.tool, "server": a.server, "grant": ctx.grant.label}}
    })
}

/// What the client answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Allowed, for this call or (`true`) for the session.
    Allow {
        /// For the rest of the session.
        session: bool,
    },
    /// Denied, declined or cancelled, with why.
    Deny(String),
    /// The client answered with an error: it could not ask its user.
    CouldNotAsk(String),
}

impl Answer {
    /// Reads the client's response to [`question`]. Anything but a clear allow is a denial
    /// (fail closed): a decline, a cancel, an error, an unknown choice, `allow_session`
    /// when it was not offered.
    pub fn read(response: &Value, session_scope: bool) -> Answer {
        if let Some(e) = response.get("error") {
            let why = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("an error");
            return Answer::CouldNotAsk(format!("the client could not ask: {why}"));
        }
        let result = &response["result"];
        match result["action"].as_str() {
            Some("accept") => {}
            Some("decline") => return Answer::Deny("declined in the client".into()),
            Some("cancel") => return Answer::Deny("dismissed in the client".into()),
            _ => return Answer::Deny("the client's answer was not understood".into()),
        }
        let content = &result["content"];
        match content["decision"].as_str() {
            Some("allow_once") => Answer::Allow { session: false },
            Some("allow_session") if session_scope => Answer::Allow { session: true },
            Some("deny") => Answer::Deny(
                content["reason"]
                    .as_str()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .unwrap_or("denied in the client")
                    .to_string(),
            ),
            Some("allow_session") => {
                Answer::Deny("`allow_session` was not offered for this tool".into())
            }
            _ => Answer::Deny("the client's answer was not understood".into()),
        }
    }

    /// How the audit log says it.
    fn said(&self) -> &'static str {
        match self {
            Answer::Allow { session: false } => "allow once",
            Answer::Allow { session: true } => "allow for this session",
            Answer::Deny(_) | Answer::CouldNotAsk(_) => "deny",
        }
    }
}

/// Applies the client's answer to approval `a`: approves or denies it in the store as
/// `client:IDENTITY`, records it, and wakes the held call. An approval already decided
/// (by an operator first, or expired) keeps that decision. A client that could not ask
/// denies under `ask = "client"`; under `"client_or_operators"` the operators decide.
pub async fn apply(ctx: &CallCtx, a: &Approval, answer: Answer, ask: Ask) {
    let answer = match answer {
        Answer::CouldNotAsk(why) if ask == Ask::ClientOrOperators => {
            tracing::info!(approval = %a.id, "{why}; the operators decide");
            return;
        }
        Answer::CouldNotAsk(why) => Answer::Deny(why),
        other => other,
    };
    let who = approver(ctx);
    let (id, by, now) = (a.id.clone(), who.clone(), ctx.st.now_ms());
    let result = match &answer {
        Answer::Allow { .. } => ctx.st.state(move |s| s.approve(&id, &by, now)).await,
        Answer::Deny(why) | Answer::CouldNotAsk(why) => {
            let why = why.clone();
            ctx.st
                .state(move |s| s.deny_approval(&id, &by, &why, now))
                .await
        }
    };
    let decided = match result {
        Ok(Ok(d)) => d,
        Ok(Err(e @ (DecideError::NotPending { .. } | DecideError::NotFound(_)))) => {
            tracing::info!(approval = %a.id, "the client answered after the approval ended: {e}");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(approval = %a.id, "the client's answer was refused: {e}");
            return;
        }
        Err(e) => {
            // The held call sees the store down itself, or the approval expire.
            tracing::error!(approval = %a.id, "the client's answer could not be stored: {e}");
            return;
        }
    };
    // Only an approval the answer actually decided allows the tool for the session (one
    // that still needs operators' votes does not).
    if answer == (Answer::Allow { session: true }) && decided.status == ApprovalStatus::Approved {
        ctx.session
            .allow_tool(&a.tool, ctx.policy_version(), decided.clone());
    }
    let (event, message) = match &answer {
        Answer::Allow { .. } => (
            "approved",
            format!("asked the client; answered: {}", answer.said()),
        ),
        Answer::Deny(why) | Answer::CouldNotAsk(why) => (
            "denied",
            format!("asked the client; answered: {} ({why})", answer.said()),
        ),
    };
    tracing::info!(approval = %a.id, by = %who, "approval {event} through the client");
    crate::decisions::record_and_wake(&ctx.st, &decided, event, &who, message).await;
}

#[cfg(test)]
mod tests {
    use super::{Answer, Retry};
    use serde_json::json;

    #[test]
    fn a_retry_is_read_only_with_toolgates_state_and_leaves_the_rest_as_it_was() {
        assert!(Retry::read(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#
        )
        .is_none());
        assert!(Retry::read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requestState":"theirs"}}"#).is_none());
        let r = Retry::read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requestState":"toolgate-approval:ap_1","inputResponses":{"toolgate-approval":{"action":"decline"},"other":{"x":1}}}}"#);
        let r = r.map(|r| {
            (
                r.approval_id,
                r.answer,
                serde_json::from_slice::<serde_json::Value>(&r.stripped).ok(),
            )
        });
        let Some((id, answer, Some(stripped))) = r else {
            panic!("toolgate's state was not read");
        };
        assert_eq!(id, "ap_1");
        assert_eq!(answer, Some(json!({"action": "decline"})));
        assert_eq!(
            stripped["params"],
            json!({"name": "t", "inputResponses": {"other": {"x": 1}}})
        );
    }

    #[test]
    fn only_a_clear_allow_allows() {
        let accept = |c: serde_json::Value| json!({"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":c}});
        assert_eq!(
            Answer::read(&accept(json!({"decision":"allow_once"})), false),
            Answer::Allow { session: false }
        );
        assert_eq!(
            Answer::read(&accept(json!({"decision":"allow_session"})), true),
            Answer::Allow { session: true }
        );
        // Not offered: refused, not taken as once.
        assert!(matches!(
            Answer::read(&accept(json!({"decision":"allow_session"})), false),
            Answer::Deny(_)
        ));
        assert_eq!(
            Answer::read(
                &accept(json!({"decision":"deny","reason":" too much "})),
                true
            ),
            Answer::Deny("too much".into())
        );
        assert!(matches!(
            Answer::read(
                &json!({"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"no UI"}}),
                true
            ),
            Answer::CouldNotAsk(_)
        ));
        for other in [
            json!({"jsonrpc":"2.0","id":"x","result":{"action":"decline"}}),
            json!({"jsonrpc":"2.0","id":"x","result":{"action":"cancel"}}),
            accept(json!({"decision":"yes"})),
            accept(json!({})),
            json!({"jsonrpc":"2.0","id":"x","result":{}}),
        ] {
            assert!(
                matches!(Answer::read(&other, true), Answer::Deny(_)),
                "{other}"
            );
        }
    }
}
