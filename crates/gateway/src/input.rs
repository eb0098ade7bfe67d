//! A 2026-07-28 client's request relayed to a legacy server over a session toolgate holds
//! ([`crate::virtual_server::pooled`]): what the server asks the client during the request
//! (`elicitation/create`, `sampling/createMessage`, `roots/list`: legacy server-to-client
//! requests, which that era has no stream for) becomes an `input_required` result
//! (SEP-2322). The server's request goes to the client under a key of `inputRequests`, and
//! the rest of the server's answer is parked ([`crate::parked`]) under toolgate's
//! `requestState` (`toolgate-era:` and a random token). The client's retry, carrying the
//! state and its `inputResponses`, is not judged again: it is the same call, already
//! judged and running. Its answers go to the server as the responses to its requests, and
//! the parked answer goes on under the retry's id (the final result, or the next
//! question).
//!
//! A request the client did not declare the capability for (in the request's
//! `_meta`) is answered on the client's behalf with an error, as a legacy client without
//! the capability would. A parked call waits at most `upstream_timeout_secs`; at most
//! [`crate::parked::MAX_PARKED`] wait per pooled session.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use toolgate_protocol::sse::encode;
use toolgate_protocol::{error_codes, error_response};

use crate::config::Config;
use crate::parked::{Events, Parked};
use crate::respond::{json_response, sse_response};
use crate::session::{Members, Session, UpstreamSession};
use crate::state::AppState;

/// The prefix of toolgate's `requestState` for a parked call (then the token).
pub const STATE_PREFIX: &str = "toolgate-era:";

/// True when `request`'s `params.requestState` is toolgate's, for a parked call (a retry).
pub fn is_retry(request: &[u8]) -> bool {
    // Most requests carry no state: they are not parsed again.
    memchr::memmem::find(request, b"\"toolgate-era:").is_some()
        && serde_json::from_slice::<Value>(request).is_ok_and(|v| {
            v.pointer("/params/requestState")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(STATE_PREFIX))
        })
}

/// How long toolgate waits, after a server's first request in a round, for more requests
/// sent with it (all asked in the same `input_required` result); at most [`GATHER_MAX`]
/// requests, gathered for at most [`GATHER_FOR`] in all.
const GATHER: Duration = Duration::from_millis(50);
/// The most requests of a server asked in one `input_required` result.
const GATHER_MAX: usize = 16;
/// The longest toolgate gathers a round's requests.
const GATHER_FOR: Duration = Duration::from_millis(250);

/// A request's method and what it names (`params.name`, or `params.uri`).
pub fn request_of(msg: &Value) -> (String, Option<String>) {
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = msg
        .pointer("/params/name")
        .or_else(|| msg.pointer("/params/uri"))
        .and_then(Value::as_str)
        .map(str::to_string);
    (method, name)
}

/// The client capability a server-to-client request needs.
fn capability(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Where an answer goes on: shared state and the pooled session's members.
#[derive(Clone)]
pub struct Answering {
    /// Shared state.
    pub st: Arc<AppState>,
    /// The config the request arrived under.
    pub cfg: Arc<Config>,
    /// The members of the pooled session.
    pub members: Arc<Members>,
}

/// What came next on a call's answer.
enum Step {
    /// A message to pass on (a notification, progress): the event's bytes.
    Pass(Bytes),
    /// The answer, under the client's id (JSON text).
    Final(String),
    /// A request of the server the client must answer.
    Ask(Value),
    /// The stream ended without an answer.
    End,
}

impl Answering {
    fn max_age(&self) -> Duration {
        Duration::from_secs(self.cfg.upstream_timeout_secs.max(1))
    }

    /// Ends the call parked under `token` if its client has not retried within
    /// `upstream_timeout_secs`: the server's requests get an error, the rest of its answer is
    /// dropped (the call's outcome is recorded as abandoned).
    fn expire_later(&self, token: String) {
        let members = Arc::downgrade(&self.members);
        let (st, cfg, wait) = (self.st.clone(), self.cfg.clone(), self.max_age());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(members) = members.upgrade() else {
                return;
            };
            let Some(call) = members.parked.take(&token, Duration::MAX) else {
                return;
            };
            tracing::info!(
                "a call waited {} s for its client's input; ended",
                wait.as_secs()
            );
            for (_, id) in &call.asked {
                let msg = json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": error_codes::INTERNAL_ERROR,
                    "message": "the client did not answer in time",
                }});
                crate::deliver::to_member_request(&st, &cfg, &members, msg).await;
            }
        });
    }

    /// Sends a response to a server's request (its id tagged with the server's name).
    async fn reply(&self, msg: Value) {
        crate::deliver::to_member_request(&self.st, &self.cfg, &self.members, msg).await;
    }

    async fn step(&self, call: &mut Parked, agent: &Value) -> Step {
        loop {
            let Some(ev) = call.events.next().await else {
                return Step::End;
            };
            // Events without data (a legacy server's priming event, for resuming its
            // stream) mean nothing to a 2026-07-28 client, which cannot resume one.
            if ev.data.is_empty() {
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
                return Step::Pass(ev.raw);
            };
            let method = v.get("method").and_then(Value::as_str).map(str::to_string);
            match (method, v.get("id").cloned()) {
                (None, Some(id)) if id == call.wire => {
                    v["id"] = agent.clone();
                    return Step::Final(v.to_string());
                }
                (Some(method), Some(id)) if method == "ping" => {
                    self.reply(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
                        .await;
                }
                (Some(method), Some(id)) => {
                    let declared = capability(&method)
                        .is_some_and(|c| call.caps.get(c).is_some_and(|v| !v.is_null()));
                    if declared {
                        return Step::Ask(v);
                    }
                    let message = match capability(&method) {
                        Some(c) => format!(
                            "the client (2026-07-28 era, through toolgate) did not declare the `{c}` capability"
                        ),
                        None => format!(
                            "toolgate cannot ask a 2026-07-28 client `{method}` (only elicitation, sampling and roots)"
                        ),
                    };
                    self.reply(json!({"jsonrpc": "2.0", "id": id, "error": {"code": error_codes::METHOD_NOT_FOUND, "message": message}}))
                        .await;
                }
                _ => return Step::Pass(ev.raw),
            }
        }
    }

    /// Parks `call` for the server's request `request` and gives the `input_required`
    /// result that asks the client; the call back when no more calls may wait (the
    /// server's request is then answered with an error and the call goes on).
    async fn park(
        &self,
        mut call: Parked,
        request: Value,
        agent: &Value,
    ) -> Result<String, Box<Parked>> {
        // A server may ask several things at once (they are then all outstanding): what
        // comes right after the first request is asked in the same round.
        let mut requests = vec![request];
        let until = tokio::time::Instant::now() + GATHER_FOR;
        while requests.len() < GATHER_MAX {
            let wait = GATHER.min(until.saturating_duration_since(tokio::time::Instant::now()));
            let Ok(Some(ev)) = tokio::time::timeout(wait, call.events.next()).await else {
                break;
            };
            let v: Option<Value> = serde_json::from_str(&ev.data).ok();
            let asking = v.as_ref().is_some_and(|v| {
                v.get("id").is_some()
                    && v.get("method")
                        .and_then(Value::as_str)
                        .and_then(capability)
                        .is_some_and(|c| call.caps.get(c).is_some_and(|x| !x.is_null()))
            });
            match v {
                Some(v) if asking => requests.push(v),
                _ => {
                    call.events.unread(ev);
                    break;
                }
            }
        }
        let Ok(token) = toolgate_store::grants::random_hex(16) else {
            for r in &requests {
                let id = r.get("id").cloned().unwrap_or(Value::Null);
                self.reply(json!({"jsonrpc": "2.0", "id": id, "error": {"code": error_codes::INTERNAL_ERROR, "message": "toolgate has no random source to hold this call"}}))
                    .await;
            }
            return Err(Box::new(call));
        };
        let mut input_requests = serde_json::Map::new();
        call.asked = Vec::new();
        for (n, request) in requests.iter().enumerate() {
            let key = format!("toolgate-{}", n + 1);
            input_requests.insert(
                key.clone(),
                json!({
                    "method": request.get("method").cloned().unwrap_or(Value::Null),
                    "params": request.get("params").cloned().unwrap_or_else(|| json!({})),
                }),
            );
            call.asked
                .push((key, request.get("id").cloned().unwrap_or(Value::Null)));
        }
        let ids: Vec<Value> = call.asked.iter().map(|(_, id)| id.clone()).collect();
        match self
            .members
            .parked
            .park(token.clone(), call, self.max_age())
        {
            None => {
                self.expire_later(token.clone());
                Ok(json!({
                    "jsonrpc": "2.0",
                    "id": agent,
                    "result": {
                        "resultType": "input_required",
                        "inputRequests": input_requests,
                        "requestState": format!("{STATE_PREFIX}{token}"),
                    }
                })
                .to_string())
            }
            Some(mut call) => {
                call.asked.clear();
                for id in ids {
                    self.reply(json!({"jsonrpc": "2.0", "id": id, "error": {"code": error_codes::INTERNAL_ERROR, "message": "toolgate holds too many calls waiting for their clients' input; try again later"}}))
                        .await;
                }
                Err(Box::new(call))
            }
        }
    }

    /// The client's answer from `call` on: an SSE stream (notifications, then the result
    /// or an `input_required` result) or, for a client that takes JSON only, the one
    /// message.
    pub async fn answer(self, mut call: Parked, agent: Value, accepts_sse: bool) -> Response {
        if !accepts_sse {
            loop {
                match self.step(&mut call, &agent).await {
                    Step::Pass(_) => {}
                    Step::Final(text) => return final_json(text),
                    Step::Ask(request) => match self.park(call, request, &agent).await {
                        Ok(text) => return json_response(StatusCode::OK, text),
                        Err(back) => call = *back,
                    },
                    Step::End => return json_response(StatusCode::BAD_GATEWAY, ended(&agent)),
                }
            }
        }
        // Nothing is sent before the first message: an answer that is only the result goes
        // as JSON, with the HTTP status its error calls for.
        let first = self.step(&mut call, &agent).await;
        let first = match first {
            Step::Final(text) => return final_json(text),
            other => other,
        };
        let stream = async_stream::stream! {
            let mut pending = Some(first);
            loop {
                let step = match pending.take() {
                    Some(s) => s,
                    None => self.step(&mut call, &agent).await,
                };
                match step {
                    Step::Pass(raw) => yield Ok::<Bytes, std::io::Error>(raw),
                    Step::Final(text) => {
                        yield Ok(encode(&text, None));
                        break;
                    }
                    Step::Ask(request) => match self.park(call, request, &agent).await {
                        Ok(text) => {
                            yield Ok(encode(&text, None));
                            break;
                        }
                        Err(back) => call = *back,
                    },
                    Step::End => {
                        yield Ok(encode(&ended(&agent), None));
                        break;
                    }
                }
            }
        };
        sse_response(Body::from_stream(stream))
    }
}

/// The final answer as JSON; HTTP 400 for the 2026-07-28 error that says the client did
/// not declare a capability the request needs (-32021), as that era's HTTP transport says.
pub fn final_json(text: String) -> Response {
    let missing_capability = memchr::memmem::find(text.as_bytes(), b"-32021").is_some()
        && serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64))
            == Some(MISSING_CAPABILITY);
    let status = if missing_capability {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_response(status, text)
}

/// The 2026-07-28 error: the request needs a client capability the client did not declare.
const MISSING_CAPABILITY: i64 = -32021;

/// True for an `input_required` answer.
fn is_input_required(answer: &[u8]) -> bool {
    memchr::memmem::find(answer, b"input_required").is_some()
        && serde_json::from_slice::<Value>(answer).is_ok_and(|v| {
            v.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required")
        })
}

/// Accounts for a round toolgate answered with its own error (HTTP `status`): a timeout may
/// have run the call (nothing given back); a first round that found no server never
/// reached it (its counts given back); anything later was lost on the way.
fn failed(hook: &crate::enforce::Hook, status: StatusCode, first: bool) {
    match status {
        StatusCode::GATEWAY_TIMEOUT => hook.lost(true),
        StatusCode::BAD_GATEWAY | StatusCode::NOT_FOUND if first => hook.never_reached(),
        _ => hook.lost(false),
    }
}

/// The error for a call whose server's answer ended without a result.
fn ended(agent: &Value) -> String {
    error_response(
        &agent.to_string(),
        error_codes::UPSTREAM_ERROR,
        "the server's answer ended without a result",
        None,
    )
}

/// A member's answer to a 2026-07-28 client's request: an SSE answer is read through
/// [`Answering::answer`] (the server may ask the client something); `None` for a JSON
/// answer, which cannot carry a request.
#[allow(clippy::too_many_arguments)]
pub async fn modern_answer(
    a: Answering,
    resp: Response,
    wire: Value,
    caps: Value,
    request: (String, Option<String>),
    agent: Value,
    accepts_sse: bool,
) -> Result<Response, Response> {
    let sse = crate::respond::is_sse(&resp);
    if !sse {
        return Err(resp);
    }
    let max = a.cfg.max_answer;
    let call = Parked::new(Events::new(resp.into_body(), max), wire, caps, request);
    Ok(a.answer(call, agent, accepts_sse).await)
}

/// A retried request carrying toolgate's `requestState`: the client's `inputResponses` go
/// to the server as the responses to what it asked, and the parked call's answer goes on
/// under this request's id. The retry is the same call: it is not judged again.
pub async fn resume(
    st: &Arc<AppState>,
    cfg: &Arc<Config>,
    session: &Session,
    bytes: &[u8],
    id_text: &str,
    accepts_sse: bool,
) -> Response {
    let agent: Value = serde_json::from_str(id_text).unwrap_or(Value::Null);
    let refuse = |message: String| {
        json_response(
            StatusCode::OK,
            error_response(id_text, error_codes::INVALID_PARAMS, &message, None),
        )
    };
    let Ok(request) = serde_json::from_slice::<Value>(bytes) else {
        return refuse("the request could not be read".into());
    };
    let Some(token) = request
        .pointer("/params/requestState")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix(STATE_PREFIX))
    else {
        return refuse("`requestState` is not one toolgate gave".into());
    };
    let UpstreamSession::Virtual(members) = &session.upstream else {
        return refuse("`requestState` names no call waiting on this server".into());
    };
    let a = Answering {
        st: st.clone(),
        cfg: cfg.clone(),
        members: members.clone(),
    };
    let Some(mut call) = members.parked.take(token, a.max_age()) else {
        return refuse(format!(
            "`requestState` names no call waiting for input (already answered, or it waited over {} s): send the request again without `requestState` and `inputResponses`",
            a.max_age().as_secs()
        ));
    };
    // The retry must be the request that was asked about (the call judged is that one).
    let this = request_of(&request);
    if this != call.request {
        let (method, name) = call.request.clone();
        members.parked.restore(token.to_string(), call);
        return refuse(format!(
            "`requestState` belongs to another request (`{method}` {}): retry that request with it",
            name.map(|n| format!("`{n}`")).unwrap_or_default()
        ));
    }
    let responses = request.pointer("/params/inputResponses");
    for (key, id) in std::mem::take(&mut call.asked) {
        let msg = match responses.and_then(|r| r.get(&key)) {
            Some(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            None => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": error_codes::INVALID_PARAMS,
                "message": format!("the client's retry gave no `inputResponses.{key}`"),
            }}),
        };
        a.reply(msg).await;
    }
    a.answer(call, agent, accepts_sse).await
}

/// The most `input_required` rounds toolgate goes through for one request of a legacy
/// client (each round asks the client and retries the request upstream).
pub const MAX_ROUNDS: usize = 16;

/// The prefix of the ids of requests toolgate sends a legacy client for its 2026-07-28
/// server (then a random part): the client's answers with such ids come back to toolgate.
fn question_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let nonce = toolgate_store::grants::random_hex(6)
            .unwrap_or_else(|_| format!("{:x}", std::process::id()));
        format!("toolgate-input-{nonce}-")
    })
}

/// True for the id (raw JSON text) of a request toolgate sent a legacy client on behalf of
/// its 2026-07-28 server.
pub fn is_question_id(raw_id: &str) -> bool {
    raw_id
        .strip_prefix('"')
        .is_some_and(|r| r.starts_with(question_prefix()))
}

/// One request of a legacy client to a server that serves only the 2026-07-28 era
/// ([`crate::era::legacy_over_modern`]), already in that era's shape.
pub struct LegacyRequest {
    /// Shared state.
    pub st: Arc<AppState>,
    /// The config it arrived under.
    pub cfg: Arc<Config>,
    /// The server.
    pub srv: crate::config::ServerConfig,
    /// The client's session (toolgate's own).
    pub session: Arc<Session>,
    /// The headers sent upstream.
    pub headers: axum::http::HeaderMap,
    /// The request.
    pub bytes: Bytes,
    /// Its id, as JSON text.
    pub id_text: String,
    /// Its progress token, as JSON text.
    pub progress: Option<String>,
}

/// What the server answered one round: the messages before the answer (already passed on)
/// and the answer.
enum Round {
    /// A JSON answer.
    Answer(Vec<u8>),
    /// An SSE answer: its events (notifications, then the answer).
    Events(Events),
    /// toolgate's own error response (the server could not be reached or read): relayed as
    /// it is.
    Failed(Response),
}

impl LegacyRequest {
    /// Relays the request; when the server answers `input_required`, asks the client each
    /// of its `inputRequests` as a legacy request on this request's stream, waits for the
    /// answers, and sends the request again with `inputResponses` (and the server's
    /// `requestState`), at most [`MAX_ROUNDS`] times. The final answer goes through `hook`
    /// (the call's outcome, its `results` rules), once.
    pub async fn answer(self, hook: crate::enforce::Hook, accepts_sse: bool) -> Response {
        let id: Value = serde_json::from_str(&self.id_text).unwrap_or(Value::Null);
        if !accepts_sse {
            // A server that cannot be reached is answered with toolgate's own error and its
            // HTTP status.
            let first = match self.round(self.bytes.clone()).await {
                Round::Failed(resp) => {
                    failed(&hook, resp.status(), true);
                    return resp;
                }
                other => other,
            };
            // JSON only: no stream to ask on, nor to pass notifications on.
            let answer = match first {
                Round::Answer(a) => Some(a),
                Round::Events(mut events) => {
                    let mut answer = None;
                    while let Some(ev) = events.next().await {
                        let v: Option<Value> = serde_json::from_str(&ev.data).ok();
                        if v.is_some_and(|v| v.get("method").is_none() && v.get("id") == Some(&id))
                        {
                            answer = Some(ev.data.into_bytes());
                            break;
                        }
                    }
                    answer
                }
                Round::Failed(_) => None,
            };
            let Some(answer) = answer else {
                hook.lost(false);
                return json_response(StatusCode::BAD_GATEWAY, ended(&id));
            };
            if is_input_required(&answer) {
                hook.lost(false);
                return json_response(
                    StatusCode::OK,
                    error_response(
                        &self.id_text,
                        error_codes::UPSTREAM_ERROR,
                        &format!(
                            "the call to `{}` cannot go on: it asks the client for input, and this request takes JSON only (no stream to ask on)",
                            self.srv.name
                        ),
                        None,
                    ),
                );
            }
            let text = hook
                .answer(&answer, &self.id_text, &self.srv.name)
                .await
                .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
            return json_response(StatusCode::OK, text);
        }
        // A stream at once (the request can be cancelled from now on); a server that cannot
        // be reached gets toolgate's error as the stream's message.
        let stream = async_stream::stream! {
            let mut bytes = self.bytes.clone();
            let mut rounds = 0;
            loop {
                let answer = match self.round(bytes.clone()).await {
                    Round::Failed(resp) => {
                        failed(&hook, resp.status(), rounds == 0);
                        let body = axum::body::to_bytes(resp.into_body(), self.cfg.max_answer.saturating_add(4096)).await.unwrap_or_default();
                        yield Ok::<Bytes, std::io::Error>(encode(&String::from_utf8_lossy(&body), None));
                        break;
                    }
                    Round::Answer(a) => a,
                    Round::Events(mut events) => {
                        // Notifications (progress) go on as they come; then the answer.
                        let mut answer = None;
                        while let Some(ev) = events.next().await {
                            let v: Option<Value> = serde_json::from_str(&ev.data).ok();
                            match v {
                                Some(v) if v.get("method").is_none() && v.get("id") == Some(&id) => {
                                    answer = Some(ev.data.into_bytes());
                                    break;
                                }
                                _ => yield Ok(ev.raw),
                            }
                        }
                        match answer {
                            Some(a) => a,
                            None => {
                                hook.lost(false);
                                yield Ok(encode(&ended(&id), None));
                                break;
                            }
                        }
                    }
                };
                let asked = serde_json::from_slice::<Value>(&answer).ok().filter(|v| {
                    v.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required")
                });
                let Some(asked) = asked else {
                    let text = hook.answer(&answer, &self.id_text, &self.srv.name).await
                        .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
                    yield Ok(encode(&text, None));
                    break;
                };
                rounds += 1;
                let retry = if rounds > MAX_ROUNDS {
                    Err(format!("it asked for input more than {MAX_ROUNDS} times"))
                } else {
                    match self.questions(&asked) {
                        Ok((questions, waiting)) => {
                            // Sent on the stream first, then awaited.
                            for q in questions {
                                yield Ok(q);
                            }
                            match self.answers(waiting).await {
                                Ok(answers) => self.retry_with(&asked, answers),
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    }
                };
                match retry {
                    Ok(next) => bytes = next,
                    Err(why) => {
                        hook.lost(false);
                        let e = error_response(&self.id_text, error_codes::UPSTREAM_ERROR, &format!("the call to `{}` cannot go on: {why}", self.srv.name), None);
                        yield Ok(encode(&e, None));
                        break;
                    }
                }
            }
        };
        sse_response(Body::from_stream(stream))
    }

    /// Sends `bytes` upstream.
    async fn round(&self, bytes: Bytes) -> Round {
        let resp = crate::relay::relay_request(
            &self.st,
            &self.cfg,
            &self.srv,
            &self.session,
            &self.headers,
            bytes,
            &self.id_text,
            self.progress.as_deref(),
            true,
            crate::enforce::Hook::None,
        )
        .await;
        if !resp.status().is_success() {
            return Round::Failed(resp);
        }
        let sse = crate::respond::is_sse(&resp);
        if sse {
            return Round::Events(Events::new(resp.into_body(), self.cfg.max_answer));
        }
        let max = self.cfg.max_answer.saturating_add(4096);
        match axum::body::to_bytes(resp.into_body(), max).await {
            Ok(b) => Round::Answer(b.to_vec()),
            Err(e) => Round::Failed(json_response(
                StatusCode::BAD_GATEWAY,
                error_response(
                    &self.id_text,
                    error_codes::UPSTREAM_ERROR,
                    &format!("the answer could not be read: {e}"),
                    None,
                ),
            )),
        }
    }

    /// The legacy requests that ask the client each of the server's `inputRequests`, and
    /// where each answer will arrive (by key).
    #[allow(clippy::type_complexity)]
    fn questions(
        &self,
        asked: &Value,
    ) -> Result<
        (
            Vec<Bytes>,
            Vec<(String, tokio::sync::oneshot::Receiver<Value>)>,
        ),
        String,
    > {
        let requests = asked
            .pointer("/result/inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut questions = Vec::new();
        let mut waiting = Vec::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            match capability(method) {
                Some(c) if self.session.client_can(c) => {}
                Some(c) => {
                    return Err(format!(
                        "it asks `{method}`, and the client did not declare the `{c}` capability"
                    ))
                }
                None => {
                    return Err(format!(
                        "it asks `{method}`, which toolgate cannot ask a legacy client"
                    ))
                }
            }
            let Ok(random) = toolgate_store::grants::random_hex(8) else {
                return Err("no random source to name toolgate's question".into());
            };
            let qid = format!("{}{random}", question_prefix());
            let raw = Value::String(qid.clone()).to_string();
            let Some(rx) = self.session.ask(&raw) else {
                return Err("too many questions wait for this client's answers".into());
            };
            let mut q = json!({"jsonrpc": "2.0", "id": qid, "method": method});
            if let Some(p) = request.get("params") {
                q["params"] = p.clone();
            }
            questions.push(encode(&q.to_string(), None));
            waiting.push((key, rx));
        }
        Ok((questions, waiting))
    }

    /// The client's answers, by key, each within `upstream_timeout_secs`.
    async fn answers(
        &self,
        waiting: Vec<(String, tokio::sync::oneshot::Receiver<Value>)>,
    ) -> Result<Vec<(String, Value)>, String> {
        let timeout = Duration::from_secs(self.cfg.upstream_timeout_secs.max(1));
        let mut answers = Vec::new();
        for (key, rx) in waiting {
            let response = match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => return Err("the question was dropped".into()),
                Err(_) => {
                    return Err(format!(
                        "the client did not answer within {} s",
                        timeout.as_secs()
                    ))
                }
            };
            match response.get("result") {
                Some(r) => answers.push((key, r.clone())),
                None => {
                    let why = response
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no result");
                    return Err(format!("the client refused what it was asked: {why}"));
                }
            }
        }
        Ok(answers)
    }

    /// The request again, with the client's answers and the server's state.
    fn retry_with(&self, asked: &Value, answers: Vec<(String, Value)>) -> Result<Bytes, String> {
        let mut v: Value = serde_json::from_slice(&self.bytes).map_err(|e| e.to_string())?;
        let params = v
            .get_mut("params")
            .and_then(Value::as_object_mut)
            .ok_or("the request has no params")?;
        params.insert(
            "inputResponses".into(),
            Value::Object(answers.into_iter().collect()),
        );
        match asked.pointer("/result/requestState") {
            Some(state) => params.insert("requestState".into(), state.clone()),
            None => params.remove("requestState"),
        };
        Ok(Bytes::from(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_told_by_its_request_state_only() {
        let retry = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","requestState":"toolgate-era:ab","inputResponses":{}}}"#;
        assert!(is_retry(retry));
        // The same text in the arguments is not a retry.
        let args = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{"s":"toolgate-era:ab"}}}"#;
        assert!(!is_retry(args));
        let theirs = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","requestState":"abc"}}"#;
        assert!(!is_retry(theirs));
    }
}
