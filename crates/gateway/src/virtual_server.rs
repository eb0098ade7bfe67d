//! Virtual servers (`[[virtual_servers]]`): one endpoint combining tools of several
//! servers. toolgate answers `initialize` (and `server/discover`) itself; each agent
//! session holds one session per included server ([`Members`]), opened when first needed
//! with the client's own `initialize` params. Lists (`tools/list`, `prompts/list`,
//! `resources/list`) are gathered from every included server and renamed; a `tools/call`
//! is judged by its exposed name in the call pipeline, then forwarded here to its server
//! under its original name ([`target`]); other requests go to the server that owns the
//! name or URI. A server that cannot be reached leaves its tools out and fails only its
//! own calls. Requests a server sends the client carry ids tagged with its name
//! ([`crate::session::tag_request`]), so the client's answer goes back to it ([`one_way`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use toolgate_protocol::sse::{encode, SseParser};
use toolgate_protocol::{error_codes, error_response};
use toolgate_store::Grant;

use crate::config::{Config, Include, Pinning, ServerConfig, Transport};
use crate::deliver::{send_one_way, to_member_request};
use crate::enforce::{Hook, PinCtx, Sanitize};
use crate::relay::{
    open_channel, own_headers, read_capped, relay_request, short_err, upstream_request,
};
use crate::respond::{http_error, json_response, sse_response, SESSION_HEADER, VERSION_HEADER};
use crate::session::{tag_request, Member, Members, Session, UpstreamSession};
use crate::state::AppState;

/// The protocol versions of the legacy era toolgate answers `initialize` with (the
/// client's own when it is one of these, else the newest).
const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The most pages of one list toolgate reads from one server.
const MAX_PAGES: usize = 50;

/// Resource URIs one `subscriptions/listen` may name.
const MAX_SUBSCRIPTIONS: usize = 100;

/// Tools per page of a virtual server's `tools/list`.
const PAGE: usize = 100;

/// The prefix of the cursors of a virtual server's `tools/list` pages.
const CURSOR: &str = "tgv-page:";

/// One page of `items` from `cursor` (none: the first), and the cursor of the next page if
/// there is one. A cursor toolgate did not give is an error.
fn page(
    items: Vec<Value>,
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<Value>, Option<String>), String> {
    let from = match cursor {
        None => 0,
        Some(c) => c
            .strip_prefix(CURSOR)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                format!("invalid cursor {c:?}: pass the `nextCursor` of the previous page")
            })?,
    };
    let to = (from + size).min(items.len());
    let next = (to < items.len()).then(|| format!("{CURSOR}{to}"));
    Ok((items[from..to].to_vec(), next))
}

/// Where a call of an exposed tool goes: its server and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The included (real) server.
    pub server: String,
    /// The tool's name on that server.
    pub tool: String,
}

/// The includes of a virtual server; a real server served through a session of toolgate's
/// own (a 2026-07-28 client of a stdio or legacy SSE server) is its own one include, all
/// tools under their own names.
pub fn includes(srv: &ServerConfig) -> std::borrow::Cow<'_, [Include]> {
    match &srv.transport {
        Transport::Virtual { includes } => std::borrow::Cow::Borrowed(includes),
        _ => std::borrow::Cow::Owned(vec![Include {
            server: srv.name.clone(),
            tools: vec![],
            prefix: String::new(),
            rename: vec![],
            describe: vec![],
        }]),
    }
}

/// True for a `[[virtual_servers]]` entry.
pub fn is_virtual(srv: &ServerConfig) -> bool {
    matches!(srv.transport, Transport::Virtual { .. })
}

/// The route of the exposed tool `tool` called in `session`: where this session's last
/// `tools/list` said it comes from, else the first include that claims the name.
pub fn route_in(srv: &ServerConfig, session: &Session, tool: &str) -> Option<Route> {
    if let UpstreamSession::Virtual(members) = &session.upstream {
        if let Some((server, original)) = members.listed_tool(tool) {
            // Only as long as the config still exposes it so.
            let still = includes(srv)
                .iter()
                .any(|i| i.server == server && i.expose(&original).as_deref() == Some(tool));
            if still {
                return Some(Route {
                    server,
                    tool: original,
                });
            }
        }
    }
    route(srv, tool)
}

/// The route of the exposed tool `tool` on `srv` (see [`includes`]).
pub fn route(srv: &ServerConfig, tool: &str) -> Option<Route> {
    let all = includes(srv);
    let (inc, original) = crate::config::virtual_server::route(&all, tool)?;
    Some(Route {
        server: inc.server.clone(),
        tool: original,
    })
}

/// The answer to `initialize` on a virtual server, and the agent session it opens.
pub fn initialize(
    srv: &ServerConfig,
    grant: &Grant,
    our_id: &str,
    bytes: &[u8],
    id_text: &str,
) -> (Arc<Session>, String) {
    let msg: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = LEGACY_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1]);
    let session = Session::new(
        our_id.to_string(),
        srv.name.clone(),
        grant.id.clone(),
        UpstreamSession::Virtual(Arc::new(Members::new(params, grant.identity.clone()))),
    )
    .with_client_caps(crate::session::client_caps(bytes));
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(srv),
        "instructions": instructions(srv),
    });
    (Arc::new(session), result_message(id_text, result))
}

fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true, "subscribe": true},
        "logging": {},
    })
}

fn server_info(srv: &ServerConfig) -> Value {
    json!({"name": srv.name, "version": env!("CARGO_PKG_VERSION"), "title": format!("{} (toolgate virtual server)", srv.name)})
}

fn instructions(srv: &ServerConfig) -> String {
    let names: Vec<String> = includes(srv).iter().map(|i| i.server.clone()).collect();
    format!(
        "Tools of {} through toolgate; every call is checked against a policy.",
        names.join(", ")
    )
}

fn result_message(id_text: &str, result: Value) -> String {
    let id: Value = serde_json::from_str(id_text).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// What a 2026-07-28 client declared it can be asked during a request (in its `_meta`),
/// of what toolgate can ask it for a legacy server ([`crate::input`]): the pooled sessions
/// are kept apart by it, each declaring exactly that upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientAsks {
    /// `elicitation` declared.
    pub elicitation: bool,
    /// `sampling` declared.
    pub sampling: bool,
}

impl ClientAsks {
    /// From the client's declared capabilities.
    pub fn of(caps: &Value) -> Self {
        let has = |k: &str| caps.get(k).is_some_and(|v| !v.is_null());
        ClientAsks {
            elicitation: has("elicitation"),
            sampling: has("sampling"),
        }
    }

    fn suffix(self) -> &'static str {
        match (self.elicitation, self.sampling) {
            (false, false) => "",
            (true, false) => "_e",
            (false, true) => "_s",
            (true, true) => "_es",
        }
    }

    /// The capabilities the legacy session declares. Never `roots`: legacy servers ask for
    /// roots when a session opens, outside any call, where no client can be asked.
    fn capabilities(self) -> Value {
        let mut c = json!({});
        if self.elicitation {
            c["elicitation"] = json!({});
        }
        if self.sampling {
            c["sampling"] = json!({});
        }
        c
    }
}

/// The session a 2026-07-28 request (no session of its own) uses on a virtual server: one
/// per grant, kept in the session table (so it is capped and reaped like any other), whose
/// servers toolgate opens in the legacy era.
pub fn pooled(
    st: &AppState,
    cfg: &Config,
    srv: &ServerConfig,
    grant: &Grant,
    asks: ClientAsks,
) -> Result<Arc<Session>, String> {
    // One per set of capabilities declared: a server sees only what the client declared.
    let id = format!("tgv_{}_{}{}", srv.name, grant.id, asks.suffix());
    // Looked up and made under one lock: two first requests never make two.
    let _one = st.pool_lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = st.sessions.get(&id, &srv.name, &grant.id) {
        return Ok(s);
    }
    let _slot = st
        .sessions
        .reserve(
            &srv.name,
            &grant.id,
            crate::session::Caps::of(&cfg.sessions, &srv.transport),
        )
        .map_err(|full| format!("session refused: {full}"))?;
    let init = json!({
        "protocolVersion": LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1],
        // What toolgate can ask its 2026-07-28 clients for during a call (crate::input).
        // Not `roots`: legacy servers ask for roots when the session opens, outside any
        // call, where no client can be asked.
        "capabilities": asks.capabilities(),
        "clientInfo": {"name": format!("toolgate (for grant {})", grant.label), "version": env!("CARGO_PKG_VERSION")},
    });
    let s = Arc::new(Session::new(
        id,
        srv.name.clone(),
        grant.id.clone(),
        UpstreamSession::Virtual(Arc::new(Members::new(init, grant.identity.clone()))),
    ));
    st.sessions.insert(s.clone());
    Ok(s)
}

/// The member session to the included server `server`, opened now if it is not open.
pub async fn member(
    st: &AppState,
    cfg: &Config,
    vsrv: &str,
    members: &Members,
    server: &str,
) -> Result<Arc<Member>, String> {
    if let Some(m) = members.get(server) {
        return Ok(m);
    }
    let _one = members.opening.lock().await;
    if let Some(m) = members.get(server) {
        return Ok(m);
    }
    let Some(srv) = cfg.servers.iter().find(|s| s.name == server) else {
        return Err(format!("server `{server}` is no longer in the config"));
    };
    let opened = tokio::time::timeout(
        Duration::from_secs(cfg.upstream_timeout_secs),
        open_member(st, cfg, members, srv),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "upstream `{server}` did not answer `initialize` in time"
        ))
    });
    match opened {
        Ok(m) => {
            st.virtual_down.mark(vsrv, server, None);
            let m = Arc::new(m);
            if !members.put(m.clone()) {
                return Err("the agent's session has ended".into());
            }
            Ok(m)
        }
        Err(e) => {
            tracing::warn!(virtual_server = %vsrv, server = %server, "an included server cannot be reached: {e}; its tools are left out");
            st.virtual_down.mark(vsrv, server, Some(e.clone()));
            Err(e)
        }
    }
}

async fn open_member(
    st: &AppState,
    cfg: &Config,
    members: &Members,
    srv: &ServerConfig,
) -> Result<Member, String> {
    let id = members.next_id();
    let init = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": members.init});
    let caps = crate::session::client_caps(init.to_string().as_bytes());
    let identity = srv.oauth.is_some().then(|| members.identity.clone());
    let jwt = members.agent_jwt.get();
    let opening = crate::oauth::with_token(st, srv, identity.as_deref(), jwt.as_deref()).await?;
    let (upstream, answer) = match &opening.transport {
        Transport::Http { url, headers } => {
            let (sid, answer) =
                http_exchange(st, cfg, url, headers, None, None, &id, &init).await?;
            (UpstreamSession::Http { session_id: sid }, answer)
        }
        Transport::Stdio { .. } | Transport::Sse { .. } => {
            let ch = open_channel(st, srv).await?;
            // Killed if this opening is given up at any point (an error, the caller's
            // timeout, the agent leaving): a child never outlives an opening nobody kept.
            let guard = KillUnlessKept(Some(ch.clone()));
            let answer = channel_exchange(cfg, &ch, &srv.name, &id, &init).await?;
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            ch.send(note.to_string().as_bytes())
                .await
                .map_err(|e| format!("upstream `{}`: {e}", srv.name))?;
            guard.keep();
            (UpstreamSession::Channel(ch), answer)
        }
        Transport::Virtual { .. } => return Err("a virtual server cannot include another".into()),
    };
    let result = outcome(&answer, &srv.name, "initialize")?;
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1])
        .to_string();
    let mut session = Session::new(
        format!("member-of-virtual/{}", srv.name),
        srv.name.clone(),
        String::new(),
        upstream,
    )
    .with_client_caps(caps);
    session.member_of = Some(srv.name.clone());
    let m = Member {
        srv: srv.clone(),
        identity,
        agent_jwt: members.agent_jwt.clone(),
        session: Arc::new(session),
        version,
        capabilities: result.get("capabilities").cloned().unwrap_or(Value::Null),
        initialized: result.clone(),
    };
    if matches!(m.session.upstream, UpstreamSession::Http { .. }) {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        send_one_way(st, cfg, &m, note.to_string().into()).await?;
    }
    Ok(m)
}

/// Kills a channel when dropped, unless [`KillUnlessKept::keep`] was called.
struct KillUnlessKept(Option<Arc<crate::upstream::channel::Channel>>);

impl KillUnlessKept {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for KillUnlessKept {
    fn drop(&mut self) {
        if let Some(ch) = self.0.take() {
            ch.kill();
        }
    }
}

/// The result of a response, or its error as text.
fn outcome(answer: &Value, server: &str, method: &str) -> Result<Value, String> {
    if let Some(r) = answer.get("result") {
        return Ok(r.clone());
    }
    let msg = answer
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no result");
    Err(format!("upstream `{server}` refused `{method}`: {msg}"))
}

/// Sends one request to an HTTP server and reads the response with id `id` (JSON or SSE).
#[allow(clippy::too_many_arguments)]
async fn http_exchange(
    st: &AppState,
    cfg: &Config,
    url: &str,
    extra: &[(String, String)],
    session: Option<&str>,
    version: Option<&str>,
    id: &str,
    body: &Value,
) -> Result<(Option<String>, Value), String> {
    let req = upstream_request(
        st,
        reqwest::Method::POST,
        url,
        &own_headers(version),
        extra,
        session,
    )
    .timeout(Duration::from_secs(cfg.upstream_timeout_secs))
    .body(body.to_string());
    let resp = req.send().await.map_err(|e| short_err(&e))?;
    let status = resp.status();
    let sid = resp
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let bytes = read_capped(resp, cfg.max_answer)
        .await
        .map_err(|e| match e {
            crate::relay::Capped::Over => {
                format!("answer over max_answer ({} bytes)", cfg.max_answer)
            }
            crate::relay::Capped::Failed(e) => short_err(&e),
        })?;
    if !status.is_success() {
        let shown: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        return Err(format!("HTTP {} ({shown:?})", status.as_u16()));
    }
    let key = toolgate_protocol::upstream::id_key(&json!(id).to_string());
    let pick = |data: &[u8]| -> Option<Value> {
        let fixed = toolgate_protocol::upstream::repair(data);
        let v: Value = serde_json::from_slice(&fixed).ok()?;
        let matches = v
            .get("id")
            .is_some_and(|i| toolgate_protocol::upstream::id_key(&i.to_string()) == key)
            && v.get("method").is_none();
        matches.then_some(v)
    };
    if sse {
        let mut parser = SseParser::with_limit(cfg.max_answer);
        let events = parser.push(&bytes).map_err(|e| e.to_string())?;
        let mut events = events;
        if let Ok(mut tail) = parser.push(b"\n\n") {
            events.append(&mut tail);
        }
        for ev in events {
            if let Some(v) = pick(ev.data.as_bytes()) {
                return Ok((sid, v));
            }
        }
        return Err("the event stream ended without the answer".into());
    }
    pick(&bytes)
        .map(|v| (sid, v))
        .ok_or_else(|| "the answer was not a JSON-RPC response to the request".into())
}

/// Sends one request over a channel and waits for its response.
async fn channel_exchange(
    cfg: &Config,
    ch: &crate::upstream::channel::Channel,
    server: &str,
    id: &str,
    body: &Value,
) -> Result<Value, String> {
    let id_raw = json!(id).to_string();
    let key = toolgate_protocol::upstream::id_key(&id_raw);
    let mut rx = ch.register(&id_raw, None);
    if let Err(e) = ch.send(body.to_string().as_bytes()).await {
        ch.unregister(&id_raw);
        return Err(format!("upstream `{server}` is not running: {e}"));
    }
    let deadline = tokio::time::sleep(Duration::from_secs(cfg.upstream_timeout_secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    if let crate::enforce::Seen::Answer(a) = crate::enforce::classify(&m, &key) {
                        return serde_json::from_slice(&a).map_err(|e| format!("upstream `{server}` answered something that is not JSON: {e}"));
                    }
                }
                None => return Err(format!("upstream `{server}` exited before answering")),
            },
            _ = &mut deadline => {
                ch.unregister(&id_raw);
                return Err(format!("upstream `{server}` timed out"));
            }
        }
    }
}

/// Sends a request of toolgate's own to a member and returns the response message.
async fn exchange(
    st: &AppState,
    cfg: &Config,
    members: &Members,
    m: &Member,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let id = members.next_id();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let srv = crate::oauth::member_srv(st, m).await?;
    let answer = match (&m.session.upstream, &srv.transport) {
        (UpstreamSession::Http { session_id }, Transport::Http { url, headers }) => http_exchange(
            st,
            cfg,
            url,
            headers,
            session_id.as_deref(),
            Some(&m.version),
            &id,
            &body,
        )
        .await
        .map(|(_, v)| v),
        (UpstreamSession::Channel(ch), _) => {
            channel_exchange(cfg, ch, &m.srv.name, &id, &body).await
        }
        _ => Err("the server's transport changed; start a new session".into()),
    };
    if answer.is_err() {
        members.forget(&m.srv.name);
    }
    answer
}

/// Every page of one list (`tools`, `prompts`, `resources`, `resourceTemplates`) from a member.
async fn list_all(
    st: &AppState,
    cfg: &Config,
    members: &Members,
    m: &Member,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, String> {
    let mut out = vec![];
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let answer = exchange(st, cfg, members, m, method, params).await?;
        let result = outcome(&answer, &m.srv.name, method)?;
        if let Some(items) = result.get(key).and_then(Value::as_array) {
            out.extend(items.iter().cloned());
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => return Ok(out),
        }
    }
    tracing::warn!(server = %m.srv.name, "{method}: more than {MAX_PAGES} pages; the rest is left out");
    Ok(out)
}

/// True when the member declared the capability (`tools`, `prompts`, `resources`).
fn offers(m: &Member, capability: &str) -> bool {
    m.capabilities.get(capability).is_some_and(|c| !c.is_null())
}

/// One request on a virtual session other than `tools/call` (which goes through the call
/// pipeline and [`target`]).
pub struct Request<'a> {
    /// Shared state.
    pub st: &'a Arc<AppState>,
    /// The config it arrived under.
    pub cfg: &'a Arc<Config>,
    /// The virtual server.
    pub srv: &'a ServerConfig,
    /// The caller's grant.
    pub grant: &'a Grant,
    /// The agent's session.
    pub session: &'a Arc<Session>,
    /// The agent's headers.
    pub headers: &'a HeaderMap,
    /// The request.
    pub bytes: Bytes,
    /// Its method.
    pub method: &'a str,
    /// Its id, as JSON text.
    pub id_text: &'a str,
    /// Its progress token, as JSON text.
    pub progress: Option<&'a str>,
    /// The agent takes an SSE answer.
    pub accepts_sse: bool,
    /// The request is in the 2026-07-28 era.
    pub modern: bool,
}

impl Request<'_> {
    fn members(&self) -> Option<&Arc<Members>> {
        match &self.session.upstream {
            UpstreamSession::Virtual(m) => Some(m),
            _ => None,
        }
    }

    /// The hook of an answer relayed from a member: a 2026-07-28 request's result gets its
    /// `resultType` (and a read resource, its cache hints).
    fn hook(&self) -> Hook {
        match (self.modern, self.method) {
            (true, "resources/read") => Hook::CompleteCacheable(Box::new(Hook::None)),
            (true, _) => Hook::Complete(Box::new(Hook::None)),
            (false, _) => Hook::None,
        }
    }

    fn reply(&self, mut result: Value) -> Response {
        if self.modern {
            if let Value::Object(o) = &mut result {
                o.entry("resultType")
                    .or_insert_with(|| Value::String("complete".into()));
                // Lists are cacheable results in that era: gathered for this grant, never
                // to be shared.
                if self.method.ends_with("/list") {
                    o.entry("ttlMs").or_insert_with(|| json!(0));
                    o.insert("cacheScope".into(), json!("private"));
                }
            }
        }
        json_response(StatusCode::OK, result_message(self.id_text, result))
    }

    fn error(&self, code: i64, message: &str) -> Response {
        json_response(
            StatusCode::OK,
            error_response(self.id_text, code, message, None),
        )
    }

    /// Answers the request.
    pub async fn answer(self) -> Response {
        let Some(members) = self.members().cloned() else {
            return self.error(
                error_codes::INTERNAL_ERROR,
                "not a virtual server's session",
            );
        };
        match self.method {
            "ping" => self.reply(json!({})),
            "server/discover" if is_virtual(self.srv) => self.reply(json!({
                "supportedVersions": ["2026-07-28"],
                "capabilities": capabilities(),
                "serverInfo": server_info(self.srv),
                "_meta": {"io.modelcontextprotocol/serverInfo": server_info(self.srv)},
                "instructions": instructions(self.srv),
                "ttlMs": 0,
                "cacheScope": "private",
            })),
            // A real server toolgate speaks the legacy era to: what it said in `initialize`.
            "server/discover" => {
                match member(self.st, self.cfg, &self.srv.name, &members, &self.srv.name).await {
                    Ok(m) => {
                        let mut r = json!({
                            "supportedVersions": ["2026-07-28"],
                            "capabilities": m.capabilities,
                            "ttlMs": 0,
                            "cacheScope": "private",
                        });
                        for key in ["serverInfo", "instructions"] {
                            if let Some(v) = m.initialized.get(key) {
                                r[key] = v.clone();
                            }
                        }
                        if let Some(info) = m.initialized.get("serverInfo") {
                            r["_meta"] = json!({"io.modelcontextprotocol/serverInfo": info});
                        }
                        self.reply(r)
                    }
                    Err(e) => self.error(
                        error_codes::UPSTREAM_ERROR,
                        &format!("upstream `{}` is unavailable: {e}", self.srv.name),
                    ),
                }
            }
            "tools/list" => self.tools(&members).await,
            "prompts/list" => {
                self.gather(&members, "prompts", "prompts/list", "prompts")
                    .await
            }
            "resources/list" => {
                self.gather(&members, "resources", "resources/list", "resources")
                    .await
            }
            "resources/templates/list" => {
                self.gather(
                    &members,
                    "resources",
                    "resources/templates/list",
                    "resourceTemplates",
                )
                .await
            }
            "subscriptions/listen" => self.listen(&members).await,
            "logging/setLevel" => {
                for inc in includes(self.srv).iter() {
                    if let Ok(m) =
                        member(self.st, self.cfg, &self.srv.name, &members, &inc.server).await
                    {
                        let mut msg: Value =
                            serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
                        strip_modern_envelope(&mut msg);
                        let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
                        if let Err(e) =
                            exchange(self.st, self.cfg, &members, &m, "logging/setLevel", params)
                                .await
                        {
                            tracing::debug!(server = %inc.server, "logging/setLevel: {e}");
                        }
                    }
                }
                self.reply(json!({}))
            }
            "prompts/get"
            | "completion/complete"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe" => self.routed(&members).await,
            // One real server: anything else goes to it as it is.
            _ if !is_virtual(self.srv) => self.forward(&members).await,
            other => self.error(
                error_codes::METHOD_NOT_FOUND,
                &format!(
                    "`{other}` is not served by virtual server `{}`",
                    self.srv.name
                ),
            ),
        }
    }

    /// `tools/list`: every included server's tools (pinned per server first), under their
    /// exposed names, then filtered by the virtual server's policy.
    async fn tools(&self, members: &Arc<Members>) -> Response {
        let mut tools: Vec<Value> = vec![];
        let mut exposed_from: Vec<(String, String)> = vec![];
        let mut routes: std::collections::HashMap<String, (String, String)> =
            std::collections::HashMap::new();
        for inc in includes(self.srv).iter() {
            let m = match member(self.st, self.cfg, &self.srv.name, members, &inc.server).await {
                Ok(m) => m,
                Err(_) => continue,
            };
            if !offers(&m, "tools") {
                continue;
            }
            let listed = match list_all(self.st, self.cfg, members, &m, "tools/list", "tools").await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(virtual_server = %self.srv.name, server = %inc.server, "tools/list failed: {e}; its tools are left out");
                    self.st
                        .virtual_down
                        .mark(&self.srv.name, &inc.server, Some(e));
                    continue;
                }
            };
            let held = self.pin(&m, &listed).await;
            for mut t in listed {
                let Some(original) = t.get("name").and_then(Value::as_str).map(str::to_string)
                else {
                    continue;
                };
                if held.as_ref().is_none_or(|h| h.contains(&original)) {
                    continue;
                }
                let Some(exposed) = inc.expose(&original) else {
                    continue;
                };
                if let Some((_, first)) = exposed_from.iter().find(|(e, _)| *e == exposed) {
                    tracing::warn!(virtual_server = %self.srv.name, tool = %exposed, "`{}.{original}` is exposed under the same name as `{first}`; the first is kept", inc.server);
                    continue;
                }
                exposed_from.push((exposed.clone(), format!("{}.{original}", inc.server)));
                routes.insert(exposed.clone(), (inc.server.clone(), original.clone()));
                t["name"] = Value::String(exposed.clone());
                if let Some(d) = inc.description(&exposed) {
                    t["description"] = Value::String(d.to_string());
                }
                tools.push(t);
            }
        }
        members.remember_tools(routes);
        let policy = self
            .grant
            .policy
            .as_ref()
            .and_then(|p| self.cfg.policies.get(p))
            .cloned();
        let hook = Hook::FilterTools(
            policy,
            None,
            Sanitize {
                on: self.srv.sanitize_descriptions,
                server: self.srv.name.clone(),
            },
        );
        let mut result = json!({"tools": tools});
        if self.modern {
            result["resultType"] = json!("complete");
            result["cacheScope"] = json!("private");
            result["ttlMs"] = json!(0);
        }
        let msg = result_message(self.id_text, result);
        let filtered = match hook.apply(msg.as_bytes()).await {
            Ok(Some(filtered)) => filtered,
            Ok(None) => msg,
            Err(e) => return self.error(error_codes::INTERNAL_ERROR, &e.to_string()),
        };
        // Paginated after the policy's filter, so every page is full.
        let cursor: Option<String> =
            serde_json::from_slice::<Value>(&self.bytes)
                .ok()
                .and_then(|v| {
                    v.pointer("/params/cursor")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
        let mut v: Value = serde_json::from_str(&filtered).unwrap_or(Value::Null);
        let all = v
            .pointer_mut("/result/tools")
            .map(Value::take)
            .and_then(|t| match t {
                Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default();
        match page(all, cursor.as_deref(), PAGE) {
            Ok((tools, next)) => {
                v["result"]["tools"] = Value::Array(tools);
                if let Some(next) = next {
                    v["result"]["nextCursor"] = Value::String(next);
                }
                json_response(StatusCode::OK, v.to_string())
            }
            Err(e) => self.error(error_codes::INVALID_PARAMS, &e),
        }
    }

    /// Pins a member's listed tools under its own server's pinning; the names to leave out
    /// (`None`: all of them, the pin store failed under enforcement).
    async fn pin(&self, m: &Member, listed: &[Value]) -> Option<Vec<String>> {
        if m.srv.pinning == Pinning::Off {
            return Some(vec![]);
        }
        let ctx = PinCtx {
            store: self.st.store.clone(),
            server: m.srv.name.clone(),
            enforce: m.srv.pinning == Pinning::Enforce,
            audit: self.st.audit.clone(),
            client_caps: m.session.client_caps.clone(),
            clock: self.st.clock.clone(),
            cache: self.st.cache.clone(),
        };
        crate::enforce::pin_tools(&ctx, listed).await.ok()
    }

    /// `prompts/list` and the resource lists: gathered from every server that offers them;
    /// prompt names take the include's prefix, resource URIs are kept (and remembered).
    async fn gather(
        &self,
        members: &Arc<Members>,
        capability: &str,
        method: &str,
        key: &str,
    ) -> Response {
        let mut items: Vec<Value> = vec![];
        for inc in includes(self.srv).iter() {
            let Ok(m) = member(self.st, self.cfg, &self.srv.name, members, &inc.server).await
            else {
                continue;
            };
            if !offers(&m, capability) {
                continue;
            }
            let listed = match list_all(self.st, self.cfg, members, &m, method, key).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(virtual_server = %self.srv.name, server = %inc.server, "{method} failed: {e}; left out");
                    continue;
                }
            };
            for mut it in listed {
                if key == "prompts" {
                    if let Some(name) = it.get("name").and_then(Value::as_str) {
                        it["name"] = Value::String(inc.expose_prompt(name));
                    }
                }
                if key == "resources" {
                    if let Some(uri) = it.get("uri").and_then(Value::as_str) {
                        members.remember_resource(uri, &inc.server);
                    }
                }
                items.push(it);
            }
        }
        self.reply(json!({ key: items }))
    }

    /// `subscriptions/listen` (2026-07-28) on a session toolgate holds: acknowledged with the
    /// notification types asked for (list changes of tools, prompts and resources, and the
    /// resource URIs its servers accepted `resources/subscribe` for), then those
    /// notifications from every server's stream, each with the subscription's id in
    /// `_meta`. Lasts until the agent leaves.
    async fn listen(&self, members: &Arc<Members>) -> Response {
        let msg: Value = serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
        let filter = msg
            .pointer("/params/notifications")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let want = |k: &str| filter.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut methods: Vec<&'static str> = vec![];
        let mut honored = serde_json::Map::new();
        for (key, method) in [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            (
                "resourcesListChanged",
                "notifications/resources/list_changed",
            ),
        ] {
            if want(key) {
                methods.push(method);
                honored.insert(key.into(), Value::Bool(true));
            }
        }
        let asked: Vec<String> = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if asked.len() > MAX_SUBSCRIPTIONS {
            return self.error(
                error_codes::INVALID_PARAMS,
                &format!("at most {MAX_SUBSCRIPTIONS} resource URIs per subscription"),
            );
        }
        let mut uris: Vec<String> = vec![];
        for uri in asked {
            let server = match members.resource_server(&uri) {
                Some(s) => Some(s),
                None => {
                    let mut found = None;
                    for inc in includes(self.srv).iter() {
                        if let Ok(m) =
                            member(self.st, self.cfg, &self.srv.name, members, &inc.server).await
                        {
                            if offers(&m, "resources") {
                                found = Some(inc.server.clone());
                                break;
                            }
                        }
                    }
                    found
                }
            };
            let Some(server) = server else { continue };
            let Ok(m) = member(self.st, self.cfg, &self.srv.name, members, &server).await else {
                continue;
            };
            match exchange(
                self.st,
                self.cfg,
                members,
                &m,
                "resources/subscribe",
                json!({"uri": uri}),
            )
            .await
            {
                Ok(a) if a.get("result").is_some() => uris.push(uri),
                Ok(a) => {
                    tracing::info!(server = %server, "resources/subscribe refused: {}", a.get("error").cloned().unwrap_or_default())
                }
                Err(e) => tracing::warn!(server = %server, "resources/subscribe failed: {e}"),
            }
        }
        if !uris.is_empty() {
            honored.insert("resourceSubscriptions".into(), json!(uris));
        }
        let id: Value = serde_json::from_str(self.id_text).unwrap_or(Value::Null);
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honored, "_meta": {SUBSCRIPTION_ID: id}},
        });
        let streams = member_streams(self.st, self.cfg, self.srv, members).await;
        sse_of(
            Some(encode(&ack.to_string(), None)),
            streams,
            move |_, raw| {
                let mut v: Value = serde_json::from_slice(raw).ok()?;
                let method = v.get("method").and_then(Value::as_str)?.to_string();
                let wanted = methods.contains(&method.as_str())
                    || (method == "notifications/resources/updated"
                        && v.pointer("/params/uri")
                            .and_then(Value::as_str)
                            .is_some_and(|u| uris.iter().any(|x| x == u)));
                if !wanted || v.get("id").is_some() {
                    return None;
                }
                if !v.get("params").is_some_and(Value::is_object) {
                    v["params"] = json!({});
                }
                if !v["params"].get("_meta").is_some_and(Value::is_object) {
                    v["params"]["_meta"] = json!({});
                }
                v["params"]["_meta"][SUBSCRIPTION_ID] = id.clone();
                Some(encode(&v.to_string(), None))
            },
        )
    }

    /// Forwards the request as it is to a real server served through toolgate's session.
    async fn forward(&self, members: &Arc<Members>) -> Response {
        let m = match member(self.st, self.cfg, &self.srv.name, members, &self.srv.name).await {
            Ok(m) => m,
            Err(e) => {
                return self.error(
                    error_codes::UPSTREAM_ERROR,
                    &format!("upstream `{}` is unavailable: {e}", self.srv.name),
                )
            }
        };
        let msg: Value = match serde_json::from_slice(&self.bytes) {
            Ok(v) => v,
            Err(e) => return self.error(error_codes::PARSE_ERROR, &e.to_string()),
        };
        self.to_member(members, m, msg).await
    }

    /// Relays `msg` (this request as the member gets it) to member `m`.
    async fn to_member(&self, members: &Arc<Members>, m: Arc<Member>, msg: Value) -> Response {
        let t = Target {
            members: members.clone(),
            member: m,
            msg,
        };
        relay(
            self.st,
            self.cfg,
            t,
            self.headers,
            self.id_text,
            self.progress,
            self.accepts_sse,
            self.hook(),
        )
        .await
    }

    /// A request for one named prompt or one resource: forwarded to the server that owns
    /// it, with the prompt's original name.
    async fn routed(&self, members: &Arc<Members>) -> Response {
        let mut msg: Value = match serde_json::from_slice(&self.bytes) {
            Ok(v) => v,
            Err(e) => return self.error(error_codes::PARSE_ERROR, &e.to_string()),
        };
        let incs = includes(self.srv);
        let prompt_at = match self.method {
            "prompts/get" => Some("/params/name"),
            "completion/complete" => Some("/params/ref/name"),
            _ => None,
        };
        let uri_at = match self.method {
            "completion/complete" => "/params/ref/uri",
            _ => "/params/uri",
        };
        let mut server: Option<String> = None;
        if let Some(at) = prompt_at {
            if let Some(name) = msg.pointer(at).and_then(Value::as_str).map(str::to_string) {
                // The longest prefix that fits wins (`fs_` before ``).
                let mut best: Option<(&Include, String)> = None;
                for inc in incs.iter() {
                    if let Some(o) = inc.original_prompt(&name) {
                        if best
                            .as_ref()
                            .is_none_or(|(b, _)| inc.prefix.len() > b.prefix.len())
                        {
                            best = Some((inc, o));
                        }
                    }
                }
                if let Some((inc, original)) = best {
                    if let Some(slot) = msg.pointer_mut(at) {
                        *slot = Value::String(original);
                    }
                    server = Some(inc.server.clone());
                }
            }
        }
        if server.is_none() {
            if let Some(uri) = msg.pointer(uri_at).and_then(Value::as_str) {
                server = members.resource_server(uri);
                if server.is_none() {
                    // Not listed yet in this session: the first server that offers resources.
                    for inc in incs.iter() {
                        if let Ok(m) =
                            member(self.st, self.cfg, &self.srv.name, members, &inc.server).await
                        {
                            if offers(&m, "resources") {
                                server = Some(inc.server.clone());
                                break;
                            }
                        }
                    }
                }
            }
        }
        let Some(server) = server else {
            return self.error(
                error_codes::INVALID_PARAMS,
                &format!(
                    "no server of virtual server `{}` serves this {}",
                    self.srv.name, self.method
                ),
            );
        };
        let m = match member(self.st, self.cfg, &self.srv.name, members, &server).await {
            Ok(m) => m,
            Err(e) => {
                return self.error(
                    error_codes::UPSTREAM_ERROR,
                    &format!("upstream `{server}` is unavailable: {e}"),
                )
            }
        };
        self.to_member(members, m, msg).await
    }
}

/// The prefix of the `_meta` keys the 2026-07-28 era reserves for its envelope.
const ENVELOPE_KEYS: &str = "io.modelcontextprotocol/";

/// Removes a 2026-07-28 request's envelope keys (`_meta["io.modelcontextprotocol/…"]`):
/// toolgate speaks the legacy era to the servers it opens sessions to, and a legacy
/// session refuses requests that carry them.
fn strip_modern_envelope(msg: &mut Value) {
    if let Some(Value::Object(meta)) = msg.pointer_mut("/params/_meta") {
        meta.retain(|k, _| !k.starts_with(ENVELOPE_KEYS));
        if meta.is_empty() {
            if let Some(Value::Object(params)) = msg.get_mut("params") {
                params.remove("_meta");
            }
        }
    }
}

/// The agent's headers as a member gets them: its own protocol version.
fn member_headers(headers: &HeaderMap, m: &Member) -> HeaderMap {
    let mut h = headers.clone();
    h.remove(SESSION_HEADER);
    for name in [crate::respond::METHOD_HEADER, crate::respond::NAME_HEADER] {
        h.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(&m.version) {
        h.insert(VERSION_HEADER, v);
    }
    if !h.contains_key(header::ACCEPT) {
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
    }
    h
}

/// Where a request on a session toolgate holds goes: the member, and the request as the
/// member gets it.
pub struct Target {
    members: Arc<Members>,
    member: Arc<Member>,
    msg: Value,
}

/// The target of an allowed `tools/call` on a virtual session: its member (opened if it
/// is not), and the request with the tool's original name.
pub async fn target(
    st: &AppState,
    cfg: &Config,
    vsrv: &str,
    session: &Session,
    route: &Route,
    bytes: &[u8],
) -> Result<Target, String> {
    let UpstreamSession::Virtual(members) = &session.upstream else {
        return Err("not a virtual server's session".into());
    };
    let member = self::member(st, cfg, vsrv, members, &route.server).await?;
    let mut msg: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if let Some(name) = msg.pointer_mut("/params/name") {
        *name = Value::String(route.tool.clone());
    }
    Ok(Target {
        members: members.clone(),
        member,
        msg,
    })
}

impl Target {
    /// The member's server.
    pub fn server(&self) -> &str {
        &self.member.srv.name
    }
}

/// Relays a request to its member under an id of its own (so requests of agents sharing
/// a member, or reusing ids, never collide there), without the 2026-07-28 envelope keys,
/// and gives the answer back under the agent's id. A member that is gone (its process
/// exited, its session ended upstream) is forgotten: the next request opens it again.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    st: &Arc<AppState>,
    cfg: &Arc<Config>,
    t: Target,
    headers: &HeaderMap,
    id_text: &str,
    progress: Option<&str>,
    accepts_sse: bool,
    hook: Hook,
) -> Response {
    let Target {
        members,
        member: m,
        mut msg,
    } = t;
    let wire = members.wire_id();
    msg["id"] = Value::String(wire.clone());
    // A 2026-07-28 client: what the member asks it during the request becomes an
    // `input_required` result (crate::input), so the member's answer is read as a stream.
    let resumable = matches!(
        msg.get("method").and_then(Value::as_str),
        Some("tools/call" | "prompts/get" | "resources/read")
    );
    let request = crate::input::request_of(&msg);
    let modern_caps = (resumable
        && msg
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .is_some())
    .then(|| {
        msg.pointer("/params/_meta/io.modelcontextprotocol~1clientCapabilities")
            .cloned()
            .unwrap_or_else(|| json!({}))
    });
    strip_modern_envelope(&mut msg);
    let wire_text = Value::String(wire.clone()).to_string();
    let srv = match crate::oauth::member_srv(st, &m).await {
        Ok(s) => s,
        Err(e) => {
            hook.never_reached();
            return http_error(
                StatusCode::FORBIDDEN,
                id_text,
                error_codes::INVALID_REQUEST,
                &e,
            );
        }
    };
    let resp = relay_request(
        st,
        cfg,
        &srv,
        &m.session,
        &member_headers(headers, &m),
        Bytes::from(msg.to_string()),
        &wire_text,
        progress,
        accepts_sse || modern_caps.is_some(),
        hook,
    )
    .await;
    let gone = match &m.session.upstream {
        UpstreamSession::Channel(ch) => !ch.is_alive(),
        _ => resp.status() == StatusCode::NOT_FOUND,
    };
    if gone || resp.status() == StatusCode::BAD_GATEWAY {
        members.forget(&m.srv.name);
    }
    // A legacy agent cancels by its own id: the member knows the request by the wire id.
    let tracked = if modern_caps.is_none() {
        members.track(id_text, &m.srv.name, &wire)
    } else {
        None
    };
    let resp = match modern_caps {
        Some(caps) => {
            let a = crate::input::Answering {
                st: st.clone(),
                cfg: cfg.clone(),
                members: members.clone(),
            };
            let agent = serde_json::from_str(id_text).unwrap_or(Value::Null);
            match crate::input::modern_answer(
                a,
                resp,
                Value::String(wire),
                caps,
                request,
                agent,
                accepts_sse,
            )
            .await
            {
                Ok(answered) => return answered,
                Err(json) => {
                    // A JSON answer: under the agent's id, with the status its error calls for.
                    let json = answer_as(json, &wire_text, id_text, cfg.max_answer, None).await;
                    if !json.status().is_success() {
                        return json;
                    }
                    let max = cfg.max_answer.saturating_add(4096);
                    return match axum::body::to_bytes(json.into_body(), max).await {
                        Ok(b) => crate::input::final_json(String::from_utf8_lossy(&b).into_owned()),
                        Err(e) => json_response(
                            StatusCode::BAD_GATEWAY,
                            error_response(
                                id_text,
                                error_codes::UPSTREAM_ERROR,
                                &format!("the answer could not be read: {e}"),
                                None,
                            ),
                        ),
                    };
                }
            }
        }
        None => resp,
    };
    answer_as(resp, &wire_text, id_text, cfg.max_answer, tracked).await
}

/// The response with every message whose id is `wire` (JSON text) given `agent` (JSON
/// text) instead: the answer, and any error toolgate wrote for it. Other messages
/// (notifications, the member's own requests) pass as they are.
async fn answer_as(
    resp: Response,
    wire: &str,
    agent: &str,
    max: usize,
    tracked: Option<crate::session::InFlight>,
) -> Response {
    let wire_v: Value = serde_json::from_str(wire).unwrap_or(Value::Null);
    let agent_v: Value = serde_json::from_str(agent).unwrap_or(Value::Null);
    let swap = move |data: &[u8]| -> Option<String> {
        let mut v: Value = serde_json::from_slice(data).ok()?;
        if v.get("id") != Some(&wire_v) || v.get("method").is_some() {
            return None;
        }
        v["id"] = agent_v.clone();
        Some(v.to_string())
    };
    let sse = crate::respond::is_sse(&resp);
    let (parts, body) = resp.into_parts();
    if sse {
        let mut chunks = body.into_data_stream();
        let stream = async_stream::stream! {
            // Cancellable at the member while the answer streams.
            let _tracked = tracked;
            let mut parser = SseParser::with_limit(max.max(toolgate_protocol::sse::MAX_EVENT_BYTES));
            while let Some(chunk) = chunks.next().await {
                let Ok(chunk) = chunk else { break };
                let Ok(events) = parser.push(&chunk) else { break };
                for ev in events {
                    match swap(ev.data.as_bytes()) {
                        Some(text) => yield Ok::<Bytes, std::io::Error>(encode(&text, ev.id.as_deref())),
                        None => yield Ok(ev.raw),
                    }
                }
            }
        };
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    match axum::body::to_bytes(body, max.saturating_add(4096)).await {
        Ok(bytes) => match swap(&bytes) {
            Some(text) => {
                let mut parts = parts;
                parts.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(parts, Body::from(text))
            }
            None => Response::from_parts(parts, Body::from(bytes)),
        },
        Err(e) => json_response(
            StatusCode::BAD_GATEWAY,
            error_response(
                agent,
                error_codes::UPSTREAM_ERROR,
                &format!("the answer could not be read: {e}"),
                None,
            ),
        ),
    }
}

/// A notification or a response from the agent on a virtual session: a response to a
/// request a member sent (its id tagged) goes back to that member with its own id;
/// `notifications/initialized` was already sent by toolgate; other notifications go to
/// every open member.
pub async fn one_way(st: &AppState, cfg: &Config, session: &Session, bytes: Bytes) -> Response {
    let UpstreamSession::Virtual(members) = &session.upstream else {
        return StatusCode::ACCEPTED.into_response();
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&bytes) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    match method.as_deref() {
        Some("notifications/initialized") => {}
        Some("notifications/cancelled") => {
            // To the member the request went to, under the id it knows it by.
            let key = msg
                .pointer("/params/requestId")
                .map(|id| id.to_string())
                .unwrap_or_default();
            let Some((server, wire)) = members.in_flight(&key) else {
                tracing::debug!(session = %session.id, "a cancellation of no request in flight; dropped");
                return StatusCode::ACCEPTED.into_response();
            };
            let mut note = msg.clone();
            note["params"]["requestId"] = Value::String(wire);
            if let Some(m) = members.get(&server) {
                if let Err(e) = send_one_way(st, cfg, &m, note.to_string().into()).await {
                    tracing::debug!(server = %server, "cancellation not delivered: {e}");
                }
            }
        }
        Some(_) => {
            for m in members.all() {
                if let Err(e) = send_one_way(st, cfg, &m, bytes.clone()).await {
                    tracing::debug!(server = %m.srv.name, "notification not delivered: {e}");
                }
            }
        }
        None => to_member_request(st, cfg, members, msg).await,
    }
    StatusCode::ACCEPTED.into_response()
}

/// Every included server's own stream of messages (its GET stream, or its channel's
/// messages outside any request), opened now (each server opened first if it is not), as
/// raw messages tagged with the server's name.
async fn member_streams(
    st: &Arc<AppState>,
    cfg: &Config,
    srv: &ServerConfig,
    members: &Members,
) -> Vec<futures::stream::BoxStream<'static, (String, Bytes)>> {
    let mut streams: Vec<futures::stream::BoxStream<'static, (String, Bytes)>> = vec![];
    for inc in includes(srv).iter() {
        let Ok(m) = member(st, cfg, &srv.name, members, &inc.server).await else {
            continue;
        };
        let server = m.srv.name.clone();
        let msrv = match crate::oauth::member_srv(st, &m).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(server = %server, "no GET stream from the server: {e}");
                continue;
            }
        };
        match (&m.session.upstream, &msrv.transport) {
            (UpstreamSession::Channel(ch), _) => {
                let rx = ch.open_stream();
                let s = tokio_stream_of(rx).map(move |msg| (server.clone(), msg));
                streams.push(Box::pin(s));
            }
            (UpstreamSession::Http { session_id }, Transport::Http { url, headers }) => {
                let mut h = own_headers(Some(&m.version));
                h.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("text/event-stream"),
                );
                let (st, url, extra, sid) =
                    (st.clone(), url.clone(), headers.clone(), session_id.clone());
                let max = cfg.max_answer;
                // Opened now (before the agent's stream starts, so nothing the server sends
                // after that is missed), unless the server refuses it for now.
                let first =
                    upstream_request(&st, reqwest::Method::GET, &url, &h, &extra, sid.as_deref())
                        .send()
                        .await;
                let s = async_stream::stream! {
                    // A server allows one GET stream per session: while the one an earlier
                    // listener left is still being closed, it answers 409; tried again for
                    // up to 10 s (the stream ends with the agent's, stopping this too).
                    let mut tries = 0;
                    let mut first = Some(first);
                    let resp = loop {
                        let sent = match first.take() {
                            Some(f) => f,
                            None => upstream_request(&st, reqwest::Method::GET, &url, &h, &extra, sid.as_deref()).send().await,
                        };
                        match sent {
                            Ok(r) if r.status() == StatusCode::CONFLICT && tries < 40 => {
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                            Ok(r) if r.status().is_success() => break Some(r),
                            Ok(r) => {
                                tracing::debug!(server = %server, status = %r.status(), "no GET stream from the server");
                                break None;
                            }
                            Err(e) => {
                                tracing::debug!(server = %server, "no GET stream from the server: {}", short_err(&e));
                                break None;
                            }
                        }
                    };
                    if let Some(resp) = resp {
                        let body = resp.bytes_stream();
                        let mut parser = SseParser::with_limit(max);
                        futures::pin_mut!(body);
                        while let Some(Ok(chunk)) = body.next().await {
                            let Ok(events) = parser.push(&chunk) else { break };
                            for ev in events {
                                if ev.data.is_empty() {
                                    continue;
                                }
                                yield (server.clone(), Bytes::from(ev.data.into_bytes()));
                            }
                        }
                    }
                };
                streams.push(Box::pin(s));
            }
            _ => {}
        }
    }
    streams
}

/// An SSE body of `first` (if any), then the merged `streams` each message made by `make`
/// (`None`: not sent), with keep-alives every 15 s; it lasts until the agent leaves.
fn sse_of(
    first: Option<Bytes>,
    streams: Vec<futures::stream::BoxStream<'static, (String, Bytes)>>,
    make: impl Fn(&str, &[u8]) -> Option<Bytes> + Send + 'static,
) -> Response {
    let merged = futures::stream::select_all(streams);
    let out = async_stream::stream! {
        if let Some(first) = first {
            yield Ok::<Bytes, std::io::Error>(first);
        }
        futures::pin_mut!(merged);
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        loop {
            tokio::select! {
                m = merged.next() => match m {
                    Some((server, msg)) => {
                        if let Some(b) = make(&server, &msg) {
                            yield Ok(b);
                        }
                    }
                    None => {
                        // Every stream ended: keep the agent's stream open with keep-alives.
                        keepalive.tick().await;
                        yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                    }
                },
                _ = keepalive.tick() => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    };
    sse_response(Body::from_stream(out))
}

/// The GET stream of a virtual session: every included server's stream, merged, requests
/// tagged with their server.
pub async fn stream(
    st: &Arc<AppState>,
    cfg: &Config,
    srv: &ServerConfig,
    session: &Session,
) -> Response {
    let UpstreamSession::Virtual(members) = &session.upstream else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let streams = member_streams(st, cfg, srv, members).await;
    sse_of(None, streams, |server, msg| Some(outward(server, msg)))
}

/// The `_meta` key of every message on a `subscriptions/listen` stream.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> {
    async_stream::stream! {
        while let Some(m) = rx.recv().await {
            yield m;
        }
    }
}

/// One message of a member's stream as the agent gets it (SSE-encoded, requests tagged).
fn outward(server: &str, msg: &[u8]) -> Bytes {
    match tag_request(server, msg) {
        Some(tagged) => encode(&tagged, None),
        None => encode(&String::from_utf8_lossy(msg), None),
    }
}

/// Ends a virtual session's member sessions (HTTP ones with a DELETE).
pub async fn end(st: &AppState, session: &Session) {
    let UpstreamSession::Virtual(members) = &session.upstream else {
        return;
    };
    for m in members.all() {
        let Ok(msrv) = crate::oauth::member_srv(st, &m).await else {
            continue;
        };
        if let (
            UpstreamSession::Http {
                session_id: Some(sid),
            },
            Transport::Http { url, headers },
        ) = (&m.session.upstream, &msrv.transport)
        {
            let req = upstream_request(
                st,
                reqwest::Method::DELETE,
                url,
                &own_headers(Some(&m.version)),
                headers,
                Some(sid),
            )
            .timeout(Duration::from_secs(10));
            if let Err(e) = req.send().await {
                tracing::debug!(server = %m.srv.name, "DELETE failed: {}", short_err(&e));
            }
        }
    }
    members.close();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_paged_by_cursor_and_a_foreign_cursor_is_refused() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let (first, next) = page(items.clone(), None, 2).unwrap();
        assert_eq!(first, vec![json!(0), json!(1)]);
        let (second, next) = page(items.clone(), next.as_deref(), 2).unwrap();
        assert_eq!(second, vec![json!(2), json!(3)]);
        let (last, next) = page(items.clone(), next.as_deref(), 2).unwrap();
        assert_eq!((last, next), (vec![json!(4)], None));
        assert!(page(items.clone(), Some("abc"), 2).is_err());
        assert!(page(items, Some("tgv-page:9"), 2).is_err());
        assert_eq!(page(vec![], None, 2).unwrap(), (vec![], None));
    }
}
