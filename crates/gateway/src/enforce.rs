//! Enforcement: judging `tools/call` with the engine and the counters, and the hooks
//! applied to an upstream's response (give-back on error, `tools/list` filtering).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{json, Value};
use toolgate_audit::{Kind, Outcome, Record};
use toolgate_policy::{
    evaluate, labels, Call, CounterError, Decision, Effect, Facts, Policy, Ticket,
};
use toolgate_protocol::upstream::{parse_value, peek, repair, Unreadable};
use toolgate_protocol::{error_codes, error_response, tool_error_result};
use toolgate_store::{AuditLog, CounterStore, StateStore};

pub use crate::error::Unavailable;
use crate::trail::{outcome_of, Trail};

/// What toolgate answers instead of forwarding.
#[derive(Debug)]
pub enum Verdict {
    /// Forward; give `ticket` back if the call never reached the tool.
    Forward(Ticket),
    /// Forward uncounted: the counter store is unreachable and the server fails open.
    ForwardUncounted,
    /// Answer the agent with this JSON-RPC message (HTTP 200).
    Answer(String),
    /// Refuse: the counter store is unavailable (and the server fails closed).
    Unavailable(Unavailable),
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Grant id.
    pub grant: &'a str,
    /// Identity.
    pub identity: &'a str,
    /// toolgate session id.
    pub session: &'a str,
    /// Server name.
    pub server: &'a str,
}

/// The agent-facing answer for a denial decision.
pub fn denial_message(id_text: &str, d: &Decision) -> String {
    if d.hidden {
        return error_response(id_text, error_codes::INVALID_PARAMS, &d.message, None);
    }
    let meta = json!({
        "decision": "deny",
        "rule": d.rule,
        "message": d.message,
        "detail": d.detail,
        "retryAfterSeconds": d.retry_after_secs,
    });
    tool_error_result(id_text, &d.denial_text(), meta)
}

/// Judges one `tools/call` with the engine. `policy` is `None` when the grant has no
/// (loaded) policy. `Ok` is an allow (which must still make its reservations: see
/// [`reserve`]) or a call to hold for approval; `Err` is a denial and its answer.
pub fn judge(
    id_text: &str,
    tool: &str,
    args: &Value,
    policy: Option<&Policy>,
    caller: Caller<'_>,
    facts: Facts,
    now_ms: u64,
) -> Result<Decision, Box<(String, Decision)>> {
    let Some(policy) = policy else {
        let d = Decision::denied(
            labels::NO_POLICY,
            "this grant has no policy attached, so every call is denied",
        );
        return Err(Box::new((denial_message(id_text, &d), d)));
    };
    let call = Call {
        tool,
        args,
        grant: caller.grant,
        identity: caller.identity,
        session: caller.session,
        server: caller.server,
    };
    let d = evaluate(&call, policy, &facts, now_ms);
    match d.effect {
        Effect::Allow | Effect::RequireApproval => Ok(d),
        Effect::Deny => Err(Box::new((denial_message(id_text, &d), d))),
    }
}

/// The message of a call let through while shared state was unreachable.
pub const STATE_FAIL_OPEN: &str =
    "allowed with the state store unreachable (state_fail_mode = \"open\"): not counted";

/// Makes an allowed decision's reservations (awaiting durability without blocking a
/// thread) and returns what to do: forward with a ticket, or answer with a denial. With
/// `fail_open`, an unreachable counter store lets the call through uncounted (its
/// decision's message says so).
pub async fn reserve(
    id_text: &str,
    d: Decision,
    counters: &dyn CounterStore,
    now_ms: u64,
    fail_open: bool,
) -> (Verdict, Decision) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    counters.reserve_then(
        &d.reservations,
        now_ms,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let settled = rx.await.unwrap_or_else(|_| {
        Err(CounterError::Unavailable(
            "the counter store stopped".into(),
        ))
    });
    let d = match settled {
        Ok(ticket) => return (Verdict::Forward(ticket), d),
        Err(CounterError::Exceeded(e)) => d.limited(e.index, e.retry_after_secs()),
        Err(CounterError::Unavailable(m)) if fail_open => {
            tracing::error!("counter store unavailable: {m}; the call goes through uncounted (state_fail_mode = \"open\")");
            let mut d = d;
            d.message = STATE_FAIL_OPEN.into();
            return (Verdict::ForwardUncounted, d);
        }
        Err(CounterError::Unavailable(m)) => {
            let u = Unavailable::Counters(m);
            let d = u.decision();
            return (Verdict::Unavailable(u), d);
        }
    };
    (Verdict::Answer(denial_message(id_text, &d)), d)
}

/// What to do with the upstream's response to one request.
#[derive(Clone)]
pub enum Hook {
    /// Relay unchanged.
    None,
    /// A forwarded `tools/call`.
    Call(CallHook),
    /// A `tools/list`: remove tools the policy hides or denies (`None`: remove all), and
    /// pin the definitions (removing held ones when pinning is enforced).
    FilterTools(Option<Arc<Policy>>, Option<PinCtx>, Sanitize),
    /// The answer of a server toolgate speaks the legacy era to, for a 2026-07-28 request:
    /// the inner hook, then `"resultType": "complete"` put in a result that lacks it (that
    /// era's schema requires it).
    Complete(Box<Hook>),
    /// As [`Hook::Complete`], for a result that era makes cacheable (`resources/read`):
    /// also `"ttlMs": 0` and `"cacheScope": "private"` where the result has none (toolgate
    /// cannot know whether it may be shared).
    CompleteCacheable(Box<Hook>),
}

/// A forwarded `tools/call`: its reservations (given back if it never reached the tool)
/// and its audit trail (the outcome, appended when it ends).
#[derive(Clone)]
pub struct CallHook {
    /// Where the reservations were made.
    pub counters: Arc<dyn CounterStore>,
    /// The reservations.
    pub ticket: Ticket,
    /// The audit trail, when the audit is on.
    pub trail: Option<Arc<Trail>>,
    /// Where the outcome and the upstream's latency are counted.
    pub watch: Option<Watch>,
    /// The call's trace span, ended with the outcome (`[tracing]`).
    pub span: Option<Arc<crate::otlp::CallSpan>>,
    /// The policy's `results` rules for this tool (`None`: the answer is relayed as it is,
    /// at no cost).
    pub results: Option<Arc<toolgate_policy::ResultRules>>,
    /// The request's id (raw JSON), for a denial that withholds the result.
    pub id_text: String,
}

/// Metrics of one forwarded call.
#[derive(Clone)]
pub struct Watch {
    /// The metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The server.
    pub server: String,
    /// When the call was sent upstream.
    pub sent: std::time::Instant,
}

impl CallHook {
    fn ended(&self, outcome: Outcome, bytes_out: Option<usize>) {
        self.ended_noted(outcome, bytes_out, None, None);
    }

    fn ended_noted(
        &self,
        outcome: Outcome,
        bytes_out: Option<usize>,
        note: Option<String>,
        rule: Option<String>,
    ) {
        if let Some(t) = &self.trail {
            t.finish_noted(outcome, bytes_out, note, rule);
        }
        if let Some(w) = &self.watch {
            w.metrics
                .outcome(&w.server, outcome.as_str(), w.sent.elapsed().as_secs_f64());
        }
        if let Some(s) = &self.span {
            s.set("toolgate.outcome", outcome.as_str());
            s.end((outcome != Outcome::Ok).then(|| outcome.as_str().to_string()));
        }
    }
}

/// Whether to strip hidden characters from the descriptions agents see (after pinning,
/// which always sees the upstream's exact definitions).
#[derive(Debug, Clone)]
pub struct Sanitize {
    /// On or off.
    pub on: bool,
    /// The server, for the log.
    pub server: String,
}

/// Where and how a server's tool definitions are pinned.
#[derive(Clone)]
pub struct PinCtx {
    /// The store holding pins.
    pub store: Arc<dyn StateStore>,
    /// The server.
    pub server: String,
    /// Enforce or only warn.
    pub enforce: bool,
    /// Where pin changes are recorded.
    pub audit: Option<Arc<AuditLog>>,
    /// The listing client's capabilities that gate tools (see
    /// [`crate::session::client_caps`]).
    pub client_caps: String,
    /// Where the time of an observation is read.
    pub clock: crate::clock::Clock,
    /// The gateway's pin checks, forgotten when this observation changes pins.
    pub cache: Arc<crate::cache::StateCache>,
}

/// Pins the listed tools; returns the names to hold back. Fails closed: when the store
/// cannot be read under enforcement, every tool is held. The store is read and written off
/// the runtime threads, in one call.
pub(crate) async fn pin_tools(ctx: &PinCtx, tools: &[Value]) -> Result<Vec<String>, ()> {
    let prints: Vec<(String, String, String)> =
        tools.iter().filter_map(crate::pin::fingerprint).collect();
    let now = ctx.clock.now_ms();
    let (server, caps) = (ctx.server.clone(), ctx.client_caps.clone());
    let seen = crate::bridge::blocking(&ctx.store, move |s| {
        // The first client with this set of capabilities: tools it is the first to see
        // were not there before only because no such client had asked (servers list
        // sampling or elicitation tools only to clients that have them).
        let first_caps = s.observe_capabilities(&server, &caps, now).unwrap_or(false);
        let mut observed = s.observe_tools(&server, &prints, now)?;
        let mut first_seen = vec![];
        if first_caps {
            let new: Vec<String> = observed
                .changed
                .iter()
                .filter(|(_, what)| what == "new since pinning")
                .map(|(tool, _)| tool.clone())
                .collect();
            for tool in new {
                match s.approve_pin(&server, &tool, now) {
                    Ok(pin) => {
                        observed.changed.retain(|(t, _)| *t != tool);
                        if let Some(p) = observed.pins.iter_mut().find(|p| p.tool == tool) {
                            *p = pin;
                        }
                        first_seen.push(tool);
                    }
                    Err(e) => tracing::error!(server = %server, "pin store failed: {e}"),
                }
            }
        }
        Ok((observed, first_seen))
    })
    .await;
    // Pins may have changed (and a failed write may have changed some): what this process
    // cached about them is not trusted until the store's next version.
    ctx.cache.forget_pins();
    match seen {
        Ok((observed, first_seen)) => {
            for tool in &first_seen {
                pinned_first_seen(ctx, tool, now);
            }
            for (tool, what) in &observed.changed {
                if let Some(log) = &ctx.audit {
                    log.append(Record {
                        at_ms: now,
                        kind: Kind::Pin,
                        server: Some(ctx.server.clone()),
                        tool: Some(tool.clone()),
                        decision: Some(if ctx.enforce { "held" } else { "warned" }.into()),
                        message: Some(what.clone()),
                        ..Record::default()
                    });
                }
            }
            let held: Vec<String> = observed
                .pins
                .iter()
                .filter(|p| p.is_held())
                .map(|p| p.tool.clone())
                .collect();
            for t in &held {
                tracing::warn!(server = %ctx.server, tool = %toolgate_protocol::Escaped(t), "tool definition changed or new since pinning; held until `toolgate tools approve {} {}`", ctx.server, toolgate_protocol::Escaped(t));
            }
            Ok(if ctx.enforce { held } else { vec![] })
        }
        Err(e) => {
            tracing::error!(server = %ctx.server, "pin store failed: {e}");
            if ctx.enforce {
                Err(())
            } else {
                Ok(vec![])
            }
        }
    }
}

/// Records a tool pinned as reviewed because it was first listed to a client with a new
/// set of capabilities (`kind = "pin"`, `approved`). Changed definitions stay held.
fn pinned_first_seen(ctx: &PinCtx, tool: &str, now: u64) {
    let caps = if ctx.client_caps.is_empty() {
        "none".to_string()
    } else {
        ctx.client_caps.clone()
    };
    tracing::info!(server = %ctx.server, tool = %toolgate_protocol::Escaped(tool), capabilities = %caps, "tool pinned as first listed to a client with these capabilities");
    if let Some(log) = &ctx.audit {
        log.append(Record {
            at_ms: now,
            kind: Kind::Pin,
            server: Some(ctx.server.clone()),
            tool: Some(tool.to_string()),
            decision: Some("approved".into()),
            approver: Some(format!("(first client with capabilities: {caps})")),
            message: Some(format!(
                "listed for the first time to a client with capabilities {caps}: pinned as reviewed"
            )),
            ..Record::default()
        });
    }
}

/// Gives a ticket's counts back, in place: [`Counters::give_back`] never waits for IO
/// (stores that write elsewhere queue the write), and the next call must already see the
/// counts returned. A failure is logged (the counts then lapse with their window).
pub fn give_back_later(counters: &Arc<dyn CounterStore>, ticket: &Ticket) {
    if ticket.entries.is_empty() {
        return;
    }
    if let Err(e) = counters.give_back(ticket) {
        tracing::error!("give-back failed: {e}");
    }
}

/// Answers up to this size are inspected in place (at most about a millisecond of CPU).
const INSPECT_IN_PLACE: usize = 64 * 1024;

impl CallHook {
    /// Applies the `results` rules to the answer: the message to send the agent (the
    /// result redacted or stripped, or an `isError` denial in its place), with what fired
    /// in the outcome record and in `/metrics`.
    fn inspect(&self, msg: &[u8]) -> Result<Option<String>, Unreadable> {
        let mut v = parse_value(msg)?;
        let outcome = outcome_of(&v);
        if outcome == Outcome::JsonrpcError {
            give_back_later(&self.counters, &self.ticket);
        }
        let (Some(rules), Some(result)) = (&self.results, v.get("result")) else {
            self.ended(outcome, Some(msg.len()));
            return Ok(None);
        };
        let found = toolgate_policy::inspect_result(result, rules);
        let server = self.watch.as_ref().map(|w| w.server.as_str()).unwrap_or("");
        if let Some(w) = &self.watch {
            for f in &found.fired {
                w.metrics
                    .inspection(server, f.kind, f.action.as_str(), f.count);
            }
        }
        let note = (!found.fired.is_empty()).then(|| {
            let parts: Vec<String> = found
                .fired
                .iter()
                .map(|f| {
                    format!(
                        "{} {} x{} at {}",
                        f.action.as_str(),
                        f.kind,
                        f.count,
                        f.path
                    )
                })
                .collect();
            format!("results: {}", parts.join("; "))
        });
        if let Some(denied) = found.denied {
            tracing::warn!(server = %server, rule = %denied.rule, kind = denied.kind, "a tool result withheld by content inspection");
            let d = Decision::denied(&denied.rule, &denied.message);
            self.ended_noted(outcome, Some(msg.len()), note, Some(denied.rule.clone()));
            return Ok(Some(denial_message(&self.id_text, &d)));
        }
        self.ended_noted(outcome, Some(msg.len()), note, None);
        match found.value {
            Some(rewritten) => {
                if let Some(slot) = v.get_mut("result") {
                    *slot = rewritten;
                }
                Ok(Some(v.to_string()))
            }
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::None => write!(f, "None"),
            Hook::Call(..) => write!(f, "Call"),
            Hook::FilterTools(..) => write!(f, "FilterTools"),
            Hook::Complete(h) => write!(f, "Complete({h:?})"),
            Hook::CompleteCacheable(h) => write!(f, "CompleteCacheable({h:?})"),
        }
    }
}

impl Hook {
    /// The hook a [`Hook::Complete`] wraps (itself otherwise).
    fn inner(&self) -> &Hook {
        match self {
            Hook::Complete(h) | Hook::CompleteCacheable(h) => h.inner(),
            h => h,
        }
    }

    /// Called when the transport failed before any response: gives reservations back.
    pub fn never_reached(&self) {
        if let Hook::Call(c) = self.inner() {
            give_back_later(&c.counters, &c.ticket);
            c.ended(Outcome::TransportError, None);
        }
    }

    /// Called when the answer was lost after the request went out: no answer in time
    /// (`timeout`) or a broken stream. The call may have run, so nothing is given back.
    pub fn lost(&self, timeout: bool) {
        if let Hook::Call(c) = self.inner() {
            c.ended(
                if timeout {
                    Outcome::Timeout
                } else {
                    Outcome::TransportError
                },
                None,
            );
        }
    }

    /// Called with the upstream's HTTP status.
    pub fn upstream_status(&self, status: u16) {
        if let Hook::Call(CallHook { trail: Some(t), .. }) = self.inner() {
            t.upstream_status(status);
        }
    }

    /// Applies the hook to the response message (already [`repair`]ed): the rewritten
    /// message, if any. `Err` when the message cannot be judged: the caller answers with
    /// [`unreadable_answer`] instead, never with the message.
    pub async fn apply(&self, msg: &[u8]) -> Result<Option<String>, Unreadable> {
        match self {
            Hook::None => Ok(None),
            Hook::Complete(inner) | Hook::CompleteCacheable(inner) => {
                let cacheable = matches!(self, Hook::CompleteCacheable(_));
                let rewritten = Box::pin(inner.apply(msg)).await?;
                let mut v = match &rewritten {
                    Some(text) => parse_value(text.as_bytes())?,
                    None => parse_value(msg)?,
                };
                let mut changed = false;
                if let Some(Value::Object(result)) = v.get_mut("result") {
                    let mut put = |k: &str, value: Value| {
                        if !result.contains_key(k) {
                            result.insert(k.into(), value);
                            changed = true;
                        }
                    };
                    put("resultType", Value::String("complete".into()));
                    if cacheable {
                        put("ttlMs", Value::from(0));
                        put("cacheScope", Value::String("private".into()));
                    }
                }
                if changed {
                    Ok(Some(v.to_string()))
                } else {
                    Ok(rewritten)
                }
            }
            // Inspection is CPU work proportional to the answer (about 15 µs per KiB): a
            // large answer is inspected on the blocking pool, not on a runtime thread.
            Hook::Call(c) if c.results.is_some() && msg.len() > INSPECT_IN_PLACE => {
                let (hook, owned) = (c.clone(), msg.to_vec());
                tokio::task::spawn_blocking(move || hook.inspect(&owned))
                    .await
                    .unwrap_or_else(|e| {
                        Err(Unreadable(format!("its inspection did not finish: {e}")))
                    })
            }
            Hook::Call(c) if c.results.is_some() => c.inspect(msg),
            Hook::Call(c) => {
                // Most answers are plain results: parse only when `error` or `isError` may be there.
                let outcome = if contains(msg, b"\"error\"") || contains(msg, b"\"isError\"") {
                    outcome_in(msg)?
                } else {
                    Outcome::Ok
                };
                if outcome == Outcome::JsonrpcError {
                    give_back_later(&c.counters, &c.ticket);
                }
                c.ended(outcome, Some(msg.len()));
                Ok(None)
            }
            Hook::FilterTools(policy, pins, sanitize) => {
                let mut v = parse_value(msg)?;
                let Some(tools) = v.pointer_mut("/result/tools") else {
                    return Ok(None);
                };
                let Some(tools) = tools.as_array_mut() else {
                    return Err(Unreadable("`result.tools` is not an array".into()));
                };
                let held = match pins {
                    Some(ctx) => pin_tools(ctx, tools).await,
                    None => Ok(vec![]),
                };
                tools.retain(|t| {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                    let pinned_ok = held.as_ref().is_ok_and(|h| !h.iter().any(|x| x == name));
                    pinned_ok && policy.as_ref().is_some_and(|p| p.is_visible(name))
                });
                if sanitize.on {
                    for t in tools.iter_mut() {
                        let name = t
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if let Some(Value::String(d)) = t.get_mut("description") {
                            if let Some(clean) = crate::pin::sanitize(d) {
                                tracing::warn!(server = %sanitize.server, tool = %toolgate_protocol::Escaped(&name), removed = d.chars().count() - clean.chars().count(), "hidden characters removed from the description sent to the agent");
                                *d = clean;
                            }
                        }
                    }
                }
                // Filtered for this grant: a cache shared across authorization contexts
                // (`cacheScope: "public"`, 2026-07-28 era) would show one grant's list to
                // another. `ttlMs` is the upstream's.
                if let Some(scope) = v.pointer_mut("/result/cacheScope") {
                    *scope = Value::String("private".into());
                }
                Ok(Some(v.to_string()))
            }
        }
    }

    /// [`Hook::apply`] for a relay: the message to send the agent in place of `msg`
    /// (the rewritten one, `msg` itself, or an error naming the upstream when `msg`
    /// cannot be judged, after recording the call's outcome as lost).
    pub async fn answer(&self, msg: &[u8], id_text: &str, server: &str) -> Option<String> {
        match self.apply(msg).await {
            Ok(rewritten) => rewritten,
            Err(e) => {
                tracing::warn!(server = %server, "upstream answer refused: {e}");
                self.lost(false);
                Some(unreadable_answer(id_text, server, &e))
            }
        }
    }
}

/// Why an upstream message was refused, as the agent reads it.
pub fn unreadable_message(server: &str, e: &Unreadable) -> String {
    format!("upstream `{server}` answered something toolgate cannot judge ({e}); refused rather than relayed unchecked")
}

/// The error answered instead of an upstream message toolgate cannot judge.
pub fn unreadable_answer(id_text: &str, server: &str, e: &Unreadable) -> String {
    error_response(
        id_text,
        error_codes::UPSTREAM_ERROR,
        &unreadable_message(server, e),
        None,
    )
}

/// One message from an upstream, read for the request waiting on it (`id_key`).
#[derive(Debug)]
pub enum Seen<'a> {
    /// The response to that request (repaired if it had to be).
    Answer(Cow<'a, [u8]>),
    /// Another message: a notification, a server-to-client request, another response.
    Other(Cow<'a, [u8]>),
    /// Unreadable: never relayed.
    Unreadable(Unreadable),
}

/// Reads one upstream message for the request with this id: lone surrogate escapes are
/// repaired ([`repair`]), then the envelope is read.
pub fn classify<'a>(msg: &'a [u8], id_key: &str) -> Seen<'a> {
    let fixed = repair(msg);
    let answer = match peek(&fixed) {
        Ok(p) => p.is_response() && p.id_key() == id_key,
        Err(e) => return Seen::Unreadable(e),
    };
    if answer {
        Seen::Answer(fixed)
    } else {
        Seen::Other(fixed)
    }
}

/// The outcome of an answer, read without building it: only `error` and
/// `result.isError` are looked at (everything else is skipped, not allocated).
fn outcome_in(msg: &[u8]) -> Result<Outcome, Unreadable> {
    #[derive(serde::Deserialize)]
    struct View {
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        result: Option<ResultView>,
    }
    #[derive(serde::Deserialize)]
    struct ResultView {
        #[serde(default, rename = "isError")]
        is_error: Option<Value>,
    }
    let v: View = serde_json::from_slice(msg).map_err(|e| Unreadable(e.to_string()))?;
    Ok(if v.error.is_some() {
        Outcome::JsonrpcError
    } else if v
        .result
        .and_then(|r| r.is_error)
        .is_some_and(|e| e == Value::Bool(true))
    {
        Outcome::ToolError
    } else {
        Outcome::Ok
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[cfg(test)]
mod unavailable_tests {
    use super::*;

    #[test]
    fn the_outcome_is_read_without_building_the_answer() {
        let cases: [(&[u8], Outcome); 6] = [
            (br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}"#, Outcome::Ok),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"text":"\"isError\":true"}],"isError":true}}"#, Outcome::ToolError),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"isError":"true"}}"#, Outcome::Ok),
            (br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#, Outcome::JsonrpcError),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"text":"an \"error\" in text"}}"#, Outcome::Ok),
            (br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, Outcome::Ok),
        ];
        for (msg, want) in cases {
            let v: Value = serde_json::from_slice(msg).unwrap();
            assert_eq!(
                outcome_in(msg).unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(msg)
            );
            assert_eq!(outcome_of(&v), want, "the same as the full parse");
        }
        assert!(outcome_in(b"{not json").is_err());
    }

    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_filtered_tool_list_is_never_cached_publicly() {
        let policy =
            toolgate_policy::load_str(r#"{"version":"1","default":"deny","tools":{"a":{}}}"#)
                .unwrap()
                .policy;
        let hook = Hook::FilterTools(
            Some(Arc::new(policy)),
            None,
            Sanitize {
                on: false,
                server: "s".into(),
            },
        );
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","cacheScope":"public","ttlMs":60000,"tools":[{"name":"a","inputSchema":{}},{"name":"b","inputSchema":{}}]}}"#;
        let out: Value = serde_json::from_str(&hook.apply(msg).await.unwrap().unwrap()).unwrap();
        assert_eq!(out["result"]["cacheScope"], "private");
        assert_eq!(out["result"]["ttlMs"], 60000);
        assert_eq!(out["result"]["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn each_failure_has_its_rule_and_metric() {
        let cases = [
            (
                Unavailable::Store("x".into()),
                "(store unavailable)",
                "store",
            ),
            (
                Unavailable::Counters("x".into()),
                "(store unavailable)",
                "store",
            ),
            (
                Unavailable::Audit("x".into()),
                "(audit unavailable)",
                "audit",
            ),
        ];
        for (u, rule, metric) in cases {
            assert_eq!(u.rule(), rule);
            assert_eq!(u.metric(), metric);
            let d = u.decision();
            assert_eq!(d.rule, rule);
            assert_eq!(d.effect, Effect::Deny);
        }
    }
}
