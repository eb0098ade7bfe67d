//! One `tools/call`, from judgement to the relayed answer: judge, take a standing approval
//! or hold the call, reserve the limits, write the durable audit record, forward.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use toolgate_audit::{arg_hash, Record};
use toolgate_policy::{Decision, Effect, Facts, Ticket};
use toolgate_protocol::Escaped;
use toolgate_store::{Approval, Grant, GrantStatus};

use crate::config::{Config, Pinning, ServerConfig};
use crate::enforce::{
    denial_message, judge, reserve, CallHook, Caller, Hook, Unavailable, Verdict,
};
use crate::error::GatewayError;
use crate::relay::relay_request;
use crate::respond::json_response;
use crate::session::Session;
use crate::state::AppState;
use crate::trail::{self, append_decision, Trail};

/// Everything about one agent request that outlives the handler (a held call keeps it).
#[derive(Clone)]
pub struct CallCtx {
    /// Shared state.
    pub st: Arc<AppState>,
    /// The config the request arrived under.
    pub cfg: Arc<Config>,
    /// The server.
    pub srv: ServerConfig,
    /// The caller's grant.
    pub grant: Grant,
    /// The agent session.
    pub session: Arc<Session>,
    /// The agent's headers (some are passed upstream).
    pub headers: HeaderMap,
    /// The request body, forwarded unchanged.
    pub bytes: Bytes,
    /// The JSON-RPC id, as text.
    pub id_text: String,
    /// The progress token, as JSON text.
    pub progress: Option<String>,
    /// The agent accepts an SSE answer.
    pub accepts_sse: bool,
    /// When the request arrived.
    pub started: Instant,
    /// The tool.
    pub tool: String,
    /// The arguments.
    pub args: Value,
    /// The audit record begun for this request (`None` with the audit off).
    pub record: Option<Record>,
    /// The request is in the 2026-07-28 era (results carry `resultType`).
    pub modern: bool,
    /// Its trace span (`[tracing]`), ended with the denial or the outcome.
    pub span: Option<Arc<crate::otlp::CallSpan>>,
    /// On a virtual server: the server and the name the exposed tool has there (`None` on
    /// a real server, or for a name no include claims).
    pub route: Option<crate::virtual_server::Route>,
}

impl CallCtx {
    /// Judges the call under the current config (a held call is judged again when it is
    /// approved: the policy or the grant may have changed meanwhile). The facts the
    /// engine needs from the store (is the grant still active, is the tool's definition
    /// held) are read off the runtime threads; the engine itself is pure.
    pub async fn judge(&self, approval_granted: bool) -> Result<Decision, Box<GatewayError>> {
        let cfg = if approval_granted {
            self.st.config()
        } else {
            self.cfg.clone()
        };
        if !approval_granted {
            self.check_param_headers().await?;
        }
        if approval_granted {
            // The call may have waited minutes: cached pin checks are trusted only for the
            // store's version as it is now.
            if let Err(e) = self.st.state_version().await {
                return Err(Box::new(GatewayError::Unavailable(Unavailable::Store(
                    e.to_string(),
                ))));
            }
        }
        let local = self.st.local_grant.as_ref().map(|g| g.id.as_str());
        if approval_granted && local != Some(self.grant.id.as_str()) {
            // The grant may have been revoked while the call waited (the local grant of
            // `toolgate run` is not in the store: it lives as long as the process).
            let id = self.grant.id.clone();
            match self.st.state(move |s| s.grant(&id)).await {
                Ok(g) if g.status(self.st.now_ms()) == GrantStatus::Active => {}
                Ok(g) => {
                    let d = Decision::denied(
                        "(grant inactive)",
                        &format!("the grant is {} now", g.status(self.st.now_ms()).as_str()),
                    );
                    return Err(Box::new(GatewayError::Denied(
                        denial_message(&self.id_text, &d),
                        d,
                    )));
                }
                Err(e) => {
                    return Err(Box::new(GatewayError::Unavailable(Unavailable::Store(
                        e.to_string(),
                    ))))
                }
            }
        }
        let policy = self.grant.policy.as_ref().and_then(|p| cfg.policies.get(p));
        // Held: is it new since pinning (never approved) or changed? Fails closed: a pin
        // store that cannot be read holds the tool. On a virtual server, the definition is
        // the one pinned on its real server.
        let (pin_server, pin_tool, pinning) = self.pin_target(&cfg);
        let cached = (pinning == Pinning::Enforce)
            .then(|| self.st.cache.held(pin_server, pin_tool))
            .flatten();
        let (held, definition_new) = if cached == Some(false) {
            // Not held, as of the store version read when the request was admitted.
            (false, false)
        } else if pinning == Pinning::Enforce {
            let (server, tool) = (pin_server.to_string(), pin_tool.to_string());
            let at = self.st.cache.generation();
            let read = self
                .st
                .state(move |s| {
                    if !s.is_held(&server, &tool)? {
                        return Ok((false, false));
                    }
                    let new = s
                        .pins(&server)?
                        .iter()
                        .any(|p| p.tool == tool && p.hash.is_none());
                    Ok((true, new))
                })
                .await;
            if let Ok((held, _)) = read {
                self.st.cache.keep_held(at, pin_server, pin_tool, held);
            }
            read.unwrap_or_else(|e| {
                    tracing::error!(server = %pin_server, "pin store failed: {e}; the call is held to be safe");
                    (true, false)
                })
        } else {
            (false, false)
        };
        // The 2026-07-28 era has no sessions: each request stands alone. There, a
        // `scope: "session"` limit counts per grant (docs/CONFIG.md), never per request
        // (which would let every call through).
        let stateless_key;
        let session_key = if self.modern {
            stateless_key = format!("stateless:{}", self.grant.id);
            &stateless_key
        } else {
            &self.session.id
        };
        let caller = Caller {
            grant: &self.grant.id,
            identity: &self.grant.identity,
            session: session_key,
            server: &self.srv.name,
        };
        let facts = Facts {
            definition_changed: held,
            definition_new,
            approval_granted,
        };
        let d = judge(
            &self.id_text,
            &self.tool,
            &self.args,
            policy.map(|p| p.as_ref()),
            caller,
            facts,
            self.st.now_ms(),
        )
        .map_err(|denied| {
            let (answer, d) = *denied;
            Box::new(GatewayError::Denied(answer, d))
        })?;
        // `validate_arguments`: the arguments against the pinned definition's schema,
        // before the call is held or forwarded.
        if let Some(rule) = policy.and_then(|p| p.validate_arguments_for(&self.tool)) {
            if let Some(why) = self.schema_violation().await? {
                let mut d = Decision::denied(rule, "the arguments do not match the tool's schema");
                d.detail = Some(why);
                return Err(Box::new(GatewayError::Denied(
                    denial_message(&self.id_text, &d),
                    d,
                )));
            }
        }
        Ok(d)
    }

    /// Why the arguments break the `inputSchema` of the tool's pinned definition, if they
    /// do; a tool with no pinned definition, or a schema that does not compile, is a
    /// violation too (never forwarded unchecked). The compiled schema is cached for the
    /// state version.
    async fn schema_violation(&self) -> Result<Option<String>, Box<GatewayError>> {
        use crate::cache::ToolSchema;
        let (pin_server, pin_tool, pinning) = self.pin_target(&self.cfg);
        let schema = self.tool_schema().await?;
        Ok(match schema.as_ref() {
            ToolSchema::Compiled(c, _) => c.check(&self.args).err().map(|v| v.to_string()),
            ToolSchema::Invalid(v) => Some(v.to_string()),
            ToolSchema::Unknown => Some(format!(
                "toolgate knows no reviewed definition of `{}` on `{}` yet, so its arguments cannot be checked: list the server's tools first (tools/list){}",
                pin_tool,
                pin_server,
                if pinning == Pinning::Off {
                    "; pinning is off for this server, so no definition is ever kept: turn it on (pinning = \"warn\" or \"enforce\")"
                } else {
                    ""
                }
            )),
        })
    }

    /// A 2026-07-28 call to a server toolgate translates (no server of that era checks it):
    /// its `Mcp-Param-*` headers against the arguments its pinned definition sends in
    /// headers (`x-mcp-header`). `Err` with the refusal (HTTP 400, -32020) when they do not
    /// match; nothing is checked without a pinned definition.
    pub async fn check_param_headers(&self) -> Result<(), Box<GatewayError>> {
        use crate::cache::ToolSchema;
        let translated = matches!(
            self.session.upstream,
            crate::session::UpstreamSession::Virtual(_)
        );
        if !self.modern || !translated {
            return Ok(());
        }
        let schema = self.tool_schema().await?;
        let ToolSchema::Compiled(_, declared) = schema.as_ref() else {
            return Ok(());
        };
        match crate::param_headers::violation(declared, &self.args, &self.headers) {
            None => Ok(()),
            Some(why) => Err(Box::new(GatewayError::Rejected(
                crate::error::Reject::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    toolgate_protocol::error_codes::HEADER_MISMATCH,
                    why,
                )
                .for_id(&self.id_text),
            ))),
        }
    }

    /// The tool's pinned schema (cached for the state version).
    async fn tool_schema(&self) -> Result<Arc<crate::cache::ToolSchema>, Box<GatewayError>> {
        use crate::cache::ToolSchema;
        let (pin_server, pin_tool, _) = self.pin_target(&self.cfg);
        let schema = match self.st.cache.schema(pin_server, pin_tool) {
            Some(s) => s,
            None => {
                let at = self.st.cache.generation();
                let (server, tool) = (pin_server.to_string(), pin_tool.to_string());
                let read = self
                    .st
                    .state(move |s| {
                        let pin = s.pins(&server)?.into_iter().find(|p| p.tool == tool);
                        let schema = match pin.and_then(|p| p.definition) {
                            None => ToolSchema::Unknown,
                            Some(def) => {
                                let def: Value = serde_json::from_str(&def).unwrap_or(Value::Null);
                                let input = def
                                    .get("inputSchema")
                                    .cloned()
                                    .unwrap_or_else(|| serde_json::json!({}));
                                match toolgate_policy::ArgsSchema::compile(&input) {
                                    Ok(c) => ToolSchema::Compiled(
                                        c,
                                        crate::param_headers::declared(&input),
                                    ),
                                    Err(v) => ToolSchema::Invalid(v),
                                }
                            }
                        };
                        Ok(Arc::new(schema))
                    })
                    .await
                    .map_err(|e| {
                        Box::new(GatewayError::Unavailable(Unavailable::Store(e.to_string())))
                    })?;
                self.st
                    .cache
                    .keep_schema(at, pin_server, pin_tool, read.clone());
                read
            }
        };
        Ok(schema)
    }

    /// The server and tool whose pinned definition this call is judged against, and that
    /// server's pinning: the call's own, or on a virtual server the real server's.
    fn pin_target<'a>(&'a self, cfg: &Config) -> (&'a str, &'a str, Pinning) {
        match &self.route {
            Some(r) => {
                let pinning = cfg
                    .servers
                    .iter()
                    .find(|s| s.name == r.server)
                    .map(|s| s.pinning)
                    .unwrap_or(Pinning::Enforce);
                (&r.server, &r.tool, pinning)
            }
            None => (&self.srv.name, &self.tool, self.srv.pinning),
        }
    }

    /// Refuses the call because a store is unavailable: logged, counted by kind, and
    /// answered and recorded like a denial with the failure's rule.
    pub fn refuse(&self, u: Unavailable, approval: Option<&Approval>) -> Response {
        tracing::error!("{u}; the call is refused");
        self.st.metrics.store_error(u.metric());
        let d = u.decision();
        self.deny(denial_message(&self.id_text, &d), &d, approval)
    }

    /// Answers with a denial and records it (not waited for).
    pub fn deny(&self, answer: String, d: &Decision, approval: Option<&Approval>) -> Response {
        tracing::info!(server = %self.srv.name, grant = %Escaped(&self.grant.label), tool = %Escaped(&self.tool), rule = %Escaped(&d.rule), "tools/call denied");
        let m = &self.st.metrics;
        m.call(
            &self.srv.name,
            &self.tool,
            if d.hidden { "hidden" } else { "deny" },
            self.started.elapsed().as_secs_f64(),
        );
        self.record_decision(d, approval, None);
        if let Some(s) = &self.span {
            s.set(
                "toolgate.decision",
                if d.hidden { "hidden" } else { "deny" },
            );
            s.set("toolgate.rule", d.rule.clone());
            s.end(Some(format!("denied by {}", d.rule)));
        }
        self.answer(answer)
    }

    /// A JSON answer toolgate wrote itself; in the 2026-07-28 era its result says
    /// `"resultType": "complete"`, as that era's schema has it.
    pub fn answer(&self, body: String) -> Response {
        if !self.modern {
            return json_response(StatusCode::OK, body);
        }
        let mut v: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) => return json_response(StatusCode::OK, body),
        };
        if let Some(Value::Object(result)) = v.get_mut("result") {
            result
                .entry("resultType")
                .or_insert_with(|| Value::String("complete".into()));
        }
        json_response(StatusCode::OK, v.to_string())
    }

    /// Appends the decision record without waiting; `decision` overrides the effect's name.
    pub fn record_decision(
        &self,
        d: &Decision,
        approval: Option<&Approval>,
        decision: Option<&str>,
    ) {
        if let (Some(log), Some(r)) = (&self.st.audit, self.decision_record(d, approval)) {
            let mut r = r;
            if let Some(name) = decision {
                r.decision = Some(name.to_string());
            }
            log.append(r);
        }
    }

    fn decision_record(&self, d: &Decision, approval: Option<&Approval>) -> Option<Record> {
        let mut r = trail::with_decision(
            self.record.clone()?,
            &self.srv,
            &self.tool,
            &self.args,
            d,
            self.started,
        );
        r.at_ms = self.st.now_ms();
        if let Some(route) = self
            .route
            .as_ref()
            .filter(|r| r.server != self.srv.name || r.tool != self.tool)
        {
            r.upstream_server = Some(route.server.clone());
            r.upstream_tool = Some(route.tool.clone());
        }
        if let Some(a) = approval {
            r.approval_id = Some(a.id.clone());
            r.approver = (!a.approvers.is_empty()).then(|| a.approvers.join(", "));
        }
        Some(r)
    }

    /// An approval event in the audit log (`used`, `expired`, ...), not waited for.
    pub fn record_approval(&self, a: &Approval, event: &str, message: Option<String>) {
        if let Some(log) = &self.st.audit {
            log.append(self.approval_record(a, event, message));
        }
    }

    /// The audit record of an approval event.
    pub fn approval_record(&self, a: &Approval, event: &str, message: Option<String>) -> Record {
        let mut r = a.audit_record(event, None, message, self.st.now_ms());
        r.session = Some(self.session.id.clone());
        r
    }

    /// Reserves the limits, writes the durable decision record, and forwards.
    pub async fn forward(self, d: Decision, approval: Option<Approval>) -> Response {
        let fail_open = self.srv.state_fail_mode == crate::config::FailMode::Open;
        let (verdict, decision) = reserve(
            &self.id_text,
            d,
            self.st.counters.as_ref(),
            self.st.now_ms(),
            fail_open,
        )
        .await;
        tracing::info!(server = %self.srv.name, grant = %Escaped(&self.grant.label), tool = %Escaped(&self.tool), decision = ?decision.effect, rule = %Escaped(&decision.rule), "tools/call judged");
        let ticket = match verdict {
            Verdict::Answer(body) => return self.deny(body, &decision, approval.as_ref()),
            Verdict::Unavailable(u) => return self.refuse(u, approval.as_ref()),
            Verdict::Forward(ticket) => ticket,
            Verdict::ForwardUncounted => {
                self.st.metrics.store_error("store");
                Ticket::default()
            }
        };
        let trail = match (
            &self.st.audit,
            self.decision_record(&decision, approval.as_ref()),
        ) {
            (Some(log), Some(r)) => match append_decision(log, r.clone()).await {
                Ok(seq) => Some(Arc::new(Trail::new(log.clone(), &r, seq))),
                Err(e) if fail_open => {
                    tracing::error!("audit log unavailable: {e}; the call goes through without a durable record (state_fail_mode = \"open\")");
                    self.st.metrics.store_error("audit");
                    None
                }
                Err(e) => {
                    // Not recorded: the audit log is what failed.
                    let u = Unavailable::Audit(e.to_string());
                    tracing::error!("{u}; the call is refused");
                    self.st.metrics.store_error(u.metric());
                    crate::enforce::give_back_later(&self.st.counters, &ticket);
                    return self.answer(denial_message(&self.id_text, &u.decision()));
                }
            },
            _ => None,
        };
        self.st.metrics.call(
            &self.srv.name,
            &self.tool,
            "allow",
            self.started.elapsed().as_secs_f64(),
        );
        if let Some(s) = &self.span {
            s.set("toolgate.decision", "allow");
            s.set("toolgate.rule", decision.rule.clone());
        }
        let results = self
            .grant
            .policy
            .as_ref()
            .and_then(|p| self.cfg.policies.get(p))
            .and_then(|p| p.results_rules(&self.tool))
            .map(|r| Arc::new(r.clone()));
        let hook = Hook::Call(CallHook {
            results,
            id_text: self.id_text.clone(),
            span: self.span.clone(),
            counters: self.st.counters.clone(),
            ticket,
            trail,
            watch: Some(crate::enforce::Watch {
                metrics: self.st.metrics.clone(),
                server: self.srv.name.clone(),
                sent: Instant::now(),
            }),
        });
        if matches!(
            self.session.upstream,
            crate::session::UpstreamSession::Virtual(_)
        ) {
            return self.forward_virtual(hook).await;
        }
        if self.session.modern_upstream.is_some() {
            // A legacy client of a 2026-07-28-only server: what the server asks the client
            // (input_required) is asked on this call's stream (crate::input).
            return self.legacy_request().answer(hook, self.accepts_sse).await;
        }
        relay_request(
            &self.st,
            &self.cfg,
            &self.srv,
            &self.session,
            &self.headers,
            self.bytes.clone(),
            &self.id_text,
            self.progress.as_deref(),
            self.accepts_sse,
            hook,
        )
        .await
    }

    /// This call as a request of a legacy client to a 2026-07-28-only server.
    fn legacy_request(&self) -> crate::input::LegacyRequest {
        crate::input::LegacyRequest {
            st: self.st.clone(),
            cfg: self.cfg.clone(),
            srv: self.srv.clone(),
            session: self.session.clone(),
            headers: self.headers.clone(),
            bytes: self.bytes.clone(),
            id_text: self.id_text.clone(),
            progress: self.progress.clone(),
        }
    }

    /// Forwards an allowed call of a virtual server to the real server of its route, under
    /// the tool's name there; a server that cannot be reached fails this call only.
    async fn forward_virtual(&self, hook: Hook) -> Response {
        let hook = if self.modern {
            Hook::Complete(Box::new(hook))
        } else {
            hook
        };
        let target = match &self.route {
            Some(route) => crate::virtual_server::target(
                &self.st,
                &self.cfg,
                &self.srv.name,
                &self.session,
                route,
                &self.bytes,
            )
            .await
            .map_err(|e| {
                (
                    toolgate_protocol::error_codes::UPSTREAM_ERROR,
                    format!("upstream `{}` is unavailable: {e}", route.server),
                )
            }),
            None => Err((
                toolgate_protocol::error_codes::INVALID_PARAMS,
                format!(
                    "virtual server `{}` exposes no tool named `{}`",
                    self.srv.name, self.tool
                ),
            )),
        };
        match target {
            Ok(t) => {
                crate::virtual_server::relay(
                    &self.st,
                    &self.cfg,
                    t,
                    &self.headers,
                    &self.id_text,
                    self.progress.as_deref(),
                    self.accepts_sse,
                    hook,
                )
                .await
            }
            Err((code, message)) => {
                hook.never_reached();
                json_response(
                    StatusCode::OK,
                    toolgate_protocol::error_response(&self.id_text, code, &message, None),
                )
            }
        }
    }

    /// The version of the grant's policy in this request's config (what an approval and a
    /// session allowance are bound to).
    pub fn policy_version(&self) -> Option<String> {
        self.grant
            .policy
            .as_ref()
            .and_then(|p| self.cfg.policy_versions.get(p).cloned())
    }

    /// The hash of the exact arguments (what an approval is bound to).
    pub fn arg_hash(&self) -> String {
        arg_hash(&self.args)
    }
}

/// Judges an approved call again (approval granted) and forwards it if it still passes.
pub async fn approved(ctx: CallCtx, a: Approval) -> Response {
    match ctx.judge(true).await {
        Ok(d) if d.effect == Effect::Allow => ctx.forward(d, Some(a)).await,
        Ok(d) => {
            // Cannot happen with approval granted; refuse rather than guess.
            let d = Decision::denied(&d.rule, "the call still needs approval");
            ctx.deny(denial_message(&ctx.id_text, &d), &d, Some(&a))
        }
        Err(refusal) => match *refusal {
            GatewayError::Denied(answer, d) => ctx.deny(answer, &d, Some(&a)),
            GatewayError::Unavailable(u) => ctx.refuse(u, Some(&a)),
            GatewayError::Rejected(r) => r.into_response(),
        },
    }
}
