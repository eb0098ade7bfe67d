//! Agent sessions (legacy era): toolgate mints its own `Mcp-Session-Id` and maps it to
//! the upstream's, which the agent never sees.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{SessionLimits, Transport, SESSION_EVICT_AFTER_SECS};
use crate::upstream::channel::Channel;

/// How a session reaches its upstream.
#[derive(Debug, Clone)]
pub enum UpstreamSession {
    /// A Streamable HTTP upstream and its session id (none for stateless servers).
    Http {
        /// The upstream's `Mcp-Session-Id`.
        session_id: Option<String>,
    },
    /// This session's own message channel: a stdio child, or a legacy HTTP+SSE connection.
    Channel(Arc<Channel>),
    /// A virtual server's session: one session per included server, opened when first
    /// needed ([`crate::virtual_server`]).
    Virtual(Arc<Members>),
}

/// The most questions toolgate waits on per session (a bound: each is a held call).
pub const MAX_ASKS: usize = 64;

/// One agent session.
#[derive(Debug)]
pub struct Session {
    /// toolgate's id, given to the agent.
    pub id: String,
    /// The server it belongs to.
    pub server: String,
    /// The grant that opened it: no other grant may use it.
    pub grant_id: String,
    /// The upstream side.
    pub upstream: UpstreamSession,
    last_seen: Mutex<Instant>,
    /// The client's capabilities that servers gate tools on (`elicitation,roots,sampling`
    /// or a subset, sorted; empty for none), from its `initialize`.
    pub client_caps: String,
    /// Messages received on this session after `initialize`.
    uses: AtomicUsize,
    /// Requests in flight and GET streams open on this session.
    in_use: Arc<AtomicUsize>,
    /// Questions toolgate asked this session's client (approvals through elicitation), by
    /// the JSON-RPC id of the request: the held call waiting for the answer.
    asks: Mutex<HashMap<String, tokio::sync::oneshot::Sender<serde_json::Value>>>,
    /// Requests in flight the client can cancel (`notifications/cancelled`), by id (raw
    /// JSON text): a generation, and the signal that ends the request's answer.
    cancels: Mutex<HashMap<String, (u64, tokio::sync::watch::Sender<bool>)>>,
    /// The GET stream's stand-in on a session over a 2026-07-28-only server (its
    /// `subscriptions/listen`): a newer one ends the older.
    listening: Mutex<Option<tokio::sync::watch::Sender<()>>>,
    /// Tools the client allowed for the rest of this session (`session_scope`), with the
    /// policy version that asked and the approval that allowed them.
    allowed: Mutex<HashMap<String, (Option<String>, toolgate_store::Approval)>>,
    /// Set on a session a virtual server opened to one of its servers: the requests that
    /// server sends the client have their ids tagged with this server's name (so the
    /// client's answer finds its way back), see [`crate::virtual_server::tag_request`].
    pub member_of: Option<String>,
    /// Set on a legacy client's session with a server that serves only the 2026-07-28 era
    /// ([`crate::era::legacy_over_modern`]): the client's capabilities, sent in each
    /// request's `_meta`.
    pub modern_upstream: Option<Value>,
}

/// A JSON-RPC id (raw JSON text) as cancellations name it: parsed and written again, so
/// `1`, `1.0` and `"a"` with or without escapes compare as the client means them.
pub fn id_key_of(id_text: &str) -> String {
    serde_json::from_str::<Value>(id_text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| id_text.to_string())
}

/// The most requests of one session the client can cancel at once (a bound: each holds a
/// signal); later ones run uncancellable (the cancellation is still relayed upstream).
pub const MAX_CANCELLABLE: usize = 1024;

/// A request the client may cancel: `rx` turns true when it does. Dropping it forgets the
/// request.
#[derive(Debug)]
pub struct Cancellable {
    /// Turns true when the client cancels the request.
    pub rx: tokio::sync::watch::Receiver<bool>,
    session: Arc<Session>,
    id: String,
    generation: u64,
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        let mut cancels = self
            .session
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cancels
            .get(&self.id)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            cancels.remove(&self.id);
        }
    }
}

/// Marks a session in use (a request in flight, a stream open) while alive: a session in
/// use is never closed to make room for another.
#[derive(Debug)]
pub struct InUse(Arc<AtomicUsize>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Session {
    /// A new session.
    pub fn new(id: String, server: String, grant_id: String, upstream: UpstreamSession) -> Self {
        Session {
            id,
            server,
            grant_id,
            upstream,
            client_caps: String::new(),
            last_seen: Mutex::new(Instant::now()),
            uses: AtomicUsize::new(0),
            in_use: Arc::new(AtomicUsize::new(0)),
            asks: Mutex::default(),
            cancels: Mutex::default(),
            listening: Mutex::default(),
            allowed: Mutex::default(),
            member_of: None,
            modern_upstream: None,
        }
    }

    /// True when the client declared `capability` (`elicitation`, `roots`, `sampling`).
    pub fn client_can(&self, capability: &str) -> bool {
        self.client_caps.split(',').any(|c| c == capability)
    }

    /// Waits for the client's answer to toolgate's request `id` (see [`Session::answer`]).
    /// At most [`MAX_ASKS`] questions wait per session; `None` when that many already do.
    pub fn ask(&self, id: &str) -> Option<tokio::sync::oneshot::Receiver<serde_json::Value>> {
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        asks.retain(|_, tx| !tx.is_closed());
        if asks.len() >= MAX_ASKS {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        asks.insert(id.to_string(), tx);
        Some(rx)
    }

    /// Makes request `id` (raw JSON text) cancellable by the client until the returned guard
    /// is dropped; `None` when [`MAX_CANCELLABLE`] requests of this session already are.
    pub fn cancellable(self: &Arc<Self>, id: &str) -> Option<Cancellable> {
        static GENERATION: AtomicUsize = AtomicUsize::new(0);
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed) as u64;
        let mut cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        if cancels.len() >= MAX_CANCELLABLE {
            return None;
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        cancels.insert(id.to_string(), (generation, tx));
        Some(Cancellable {
            rx,
            session: self.clone(),
            id: id.to_string(),
            generation,
        })
    }

    /// Starts this session's one listening stream: the receiver's `changed()` fails when a
    /// newer one starts (or the session ends).
    pub fn take_over_listen(&self) -> tokio::sync::watch::Receiver<()> {
        let (tx, rx) = tokio::sync::watch::channel(());
        *self.listening.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// The client cancelled request `id` (raw JSON text): its answer ends now. False when no
    /// such request is in flight.
    pub fn cancel(&self, id: &str) -> bool {
        let cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        cancels.get(id).is_some_and(|(_, tx)| tx.send(true).is_ok())
    }

    /// Delivers the client's response to toolgate's request `id`; false when toolgate
    /// asked no such thing (or nobody waits any more).
    pub fn answer(&self, id: &str, response: serde_json::Value) -> bool {
        let tx = self
            .asks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        tx.is_some_and(|tx| tx.send(response).is_ok())
    }

    /// Allows `tool` for the rest of this session under policy version `version`.
    pub fn allow_tool(
        &self,
        tool: &str,
        version: Option<String>,
        approval: toolgate_store::Approval,
    ) {
        self.allowed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tool.to_string(), (version, approval));
    }

    /// The approval that allowed `tool` for this session, if the policy is still the
    /// version that asked.
    pub fn allowed(&self, tool: &str, version: Option<&str>) -> Option<toolgate_store::Approval> {
        let allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        allowed
            .get(tool)
            .filter(|(v, _)| v.as_deref() == version)
            .map(|(_, a)| a.clone())
    }

    /// The session of a client that declared these capabilities in `initialize`.
    pub fn with_client_caps(mut self, caps: String) -> Self {
        self.client_caps = caps;
        self
    }

    /// Marks the session in use until the guard is dropped.
    pub fn enter(&self) -> InUse {
        self.in_use.fetch_add(1, Ordering::SeqCst);
        InUse(self.in_use.clone())
    }

    fn busy(&self) -> bool {
        // A call parked for its client's input keeps the session too.
        self.in_use.load(Ordering::SeqCst) > 0
            || matches!(&self.upstream, UpstreamSession::Virtual(m) if !m.parked.is_empty())
    }

    /// True for a session used at most twice after `initialize` (its
    /// `notifications/initialized` and one request): a one-shot client that will not
    /// come back (the MCP Inspector's CLI, scripts that never DELETE).
    fn brief(&self) -> bool {
        self.uses.load(Ordering::Relaxed) <= 2
    }

    fn touch(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    pub(crate) fn close(&self) {
        match &self.upstream {
            UpstreamSession::Channel(p) => p.kill(),
            UpstreamSession::Virtual(m) => m.close(),
            UpstreamSession::Http { .. } => {}
        }
    }
}

/// The sessions a virtual server's agent session holds, one per included server, opened
/// when first needed by [`crate::virtual_server`].
#[derive(Debug)]
pub struct Members {
    /// The params of the client's `initialize`, sent on to each server toolgate opens (so
    /// each sees the client's capabilities and name).
    pub init: serde_json::Value,
    /// The identity of the agent's grant: at servers with `auth = "oauth"`, each request
    /// goes with this identity's own token ([`crate::oauth`]).
    pub identity: String,
    /// The agent's JWT on its latest request (`[auth.jwt]` only): at servers with
    /// `auth = "token_exchange"`, what is exchanged for the members' requests.
    pub agent_jwt: AgentJwt,
    /// The servers opened, by name.
    open: Mutex<HashMap<String, Arc<Member>>>,
    /// Held while a server is being opened (one opening at a time per agent session).
    pub opening: tokio::sync::Mutex<()>,
    /// Resource URIs listed, with the server that listed them (at most [`MAX_ROUTES`]).
    resources: Mutex<HashMap<String, String>>,
    /// Exposed tool names as the last `tools/list` gave them: the server and the tool's
    /// name there (at most [`MAX_ROUTES`]).
    tools: Mutex<HashMap<String, (String, String)>>,
    next_id: AtomicUsize,
    /// Random, per agent session: the ids toolgate puts on what it sends members cannot be
    /// guessed (an agent cannot make its own request collide with one).
    nonce: String,
    /// Set by [`Members::close`]: a member opened after it is closed at once.
    closed: std::sync::atomic::AtomicBool,
    /// Calls waiting for a 2026-07-28 client's input (see [`crate::input`]).
    pub parked: crate::parked::ParkedCalls,
    /// The agent's requests in flight at members (at most [`MAX_CANCELLABLE`]), by the
    /// agent's id ([`id_key_of`]): the member and the wire id it knows the request by, so
    /// that a cancellation reaches it.
    inflight: Arc<Mutex<HashMap<String, (String, String)>>>,
}

/// An agent's request in flight at a member, forgotten when dropped.
#[derive(Debug)]
pub struct InFlight {
    map: Arc<Mutex<HashMap<String, (String, String)>>>,
    key: String,
    wire: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&self.key).is_some_and(|(_, w)| *w == self.wire) {
            m.remove(&self.key);
        }
    }
}

/// The most resource URIs a virtual session remembers the server of.
pub const MAX_ROUTES: usize = 10_000;

/// The agent's JWT on its latest request, shared by a virtual or pooled session and its
/// members (what `auth = "token_exchange"` members exchange).
#[derive(Debug, Clone, Default)]
pub struct AgentJwt(Arc<Mutex<Option<String>>>);

impl AgentJwt {
    /// The latest JWT, if the agent sent one.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `jwt` as the latest.
    pub fn note(&self, jwt: &str) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_deref() != Some(jwt) {
            *held = Some(jwt.to_string());
        }
    }
}

/// One included server's session, as a virtual server opened it.
#[derive(Debug)]
pub struct Member {
    /// The server's config when it was opened (never with a token in it: see
    /// [`Member::identity`]).
    pub srv: crate::config::ServerConfig,
    /// For a server with `auth = "oauth"`: the identity whose token each request carries,
    /// attached when the request is made (so refreshed tokens are used).
    pub identity: Option<String>,
    /// The agent's latest JWT (shared with [`Members::agent_jwt`]), for
    /// `auth = "token_exchange"`.
    pub agent_jwt: AgentJwt,
    /// The session (never in the session table: it lives and ends with the agent's).
    pub session: Arc<Session>,
    /// The protocol version the server agreed to.
    pub version: String,
    /// The capabilities the server declared.
    pub capabilities: serde_json::Value,
    /// Its whole `initialize` result (server info, instructions).
    pub initialized: serde_json::Value,
}

impl Members {
    /// No server open yet; `init` is the client's `initialize` params, `identity` the
    /// agent's grant's.
    pub fn new(init: serde_json::Value, identity: String) -> Self {
        Members {
            init,
            identity,
            agent_jwt: AgentJwt::default(),
            open: Mutex::default(),
            opening: tokio::sync::Mutex::new(()),
            resources: Mutex::default(),
            tools: Mutex::default(),
            next_id: AtomicUsize::new(0),
            nonce: toolgate_store::grants::random_hex(6)
                .unwrap_or_else(|_| format!("{:x}", std::process::id())),
            closed: std::sync::atomic::AtomicBool::new(false),
            parked: crate::parked::ParkedCalls::default(),
            inflight: Arc::default(),
        }
    }

    /// The open session to `server`, if it is still usable.
    pub fn get(&self, server: &str) -> Option<Arc<Member>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let m = open.get(server)?.clone();
        if let UpstreamSession::Channel(p) = &m.session.upstream {
            if !p.is_alive() {
                open.remove(server);
                return None;
            }
        }
        Some(m)
    }

    /// Every open member.
    pub fn all(&self) -> Vec<Arc<Member>> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.values().cloned().collect()
    }

    /// Keeps a newly opened member; one opened after the session closed is closed at once
    /// (false).
    pub fn put(&self, m: Arc<Member>) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            drop(open);
            m.session.close();
            return false;
        }
        if let Some(old) = open.insert(m.srv.name.clone(), m) {
            old.session.close();
        }
        true
    }

    /// Forgets (and closes) a member that failed: the next use opens it again.
    pub fn forget(&self, server: &str) {
        let gone = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server);
        if let Some(m) = gone {
            m.session.close();
        }
    }

    /// Closes every member (and any opened later).
    pub fn close(&self) {
        let all: Vec<Arc<Member>> = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::SeqCst);
            open.drain().map(|(_, m)| m).collect()
        };
        for m in all {
            m.session.close();
        }
    }

    /// A fresh id for a request toolgate itself sends a member.
    pub fn next_id(&self) -> String {
        format!(
            "toolgate-{}-{}",
            self.nonce,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Remembers that the agent's request `agent_id` (raw JSON text) went to `server` as
    /// `wire`, until the guard is dropped; `None` when too many are in flight (such a
    /// request cannot be cancelled at the member).
    pub fn track(&self, agent_id: &str, server: &str, wire: &str) -> Option<InFlight> {
        let key = id_key_of(agent_id);
        let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_CANCELLABLE {
            return None;
        }
        m.insert(key.clone(), (server.to_string(), wire.to_string()));
        Some(InFlight {
            map: self.inflight.clone(),
            key,
            wire: wire.to_string(),
        })
    }

    /// The member and wire id of the agent's request `agent_key` ([`id_key_of`]), if in
    /// flight.
    pub fn in_flight(&self, agent_key: &str) -> Option<(String, String)> {
        let m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        m.get(agent_key).cloned()
    }

    /// A fresh id to put on an agent's request sent to a member (each request gets its
    /// own: agents sharing a pooled session, or reusing ids, never collide there).
    pub fn wire_id(&self) -> String {
        format!(
            "tgw-{}-{}",
            self.nonce,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Remembers which server listed a resource URI.
    pub fn remember_resource(&self, uri: &str, server: &str) {
        let mut r = self.resources.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= MAX_ROUTES && !r.contains_key(uri) {
            return;
        }
        r.insert(uri.to_string(), server.to_string());
    }

    /// Remembers what the last `tools/list` exposed: exposed name → (server, its name there).
    pub fn remember_tools(&self, listed: HashMap<String, (String, String)>) {
        if listed.len() <= MAX_ROUTES {
            *self.tools.lock().unwrap_or_else(|e| e.into_inner()) = listed;
        }
    }

    /// Where the last `tools/list` said an exposed tool comes from.
    pub fn listed_tool(&self, exposed: &str) -> Option<(String, String)> {
        let t = self.tools.lock().unwrap_or_else(|e| e.into_inner());
        t.get(exposed).cloned()
    }

    /// The server that listed a resource URI.
    pub fn resource_server(&self, uri: &str) -> Option<String> {
        let r = self.resources.lock().unwrap_or_else(|e| e.into_inner());
        r.get(uri).cloned()
    }
}

/// The prefix of a server-to-client request id toolgate tagged (`tgv:SERVER:ID`).
const TAG: &str = "tgv:";

/// A request from a member to the client, with its id tagged with the member's server
/// (`tgv:SERVER:ID`); `None` for any other message (relayed as it is).
pub fn tag_request(server: &str, msg: &[u8]) -> Option<String> {
    let p = toolgate_protocol::upstream::peek(msg).ok()?;
    let id = p.id?;
    if !p.has_method {
        return None;
    }
    let mut v: Value = serde_json::from_slice(msg).ok()?;
    v["id"] = Value::String(format!("{TAG}{server}:{}", id.get()));
    Some(v.to_string())
}

/// The server and the original id of an id [`tag_request`] tagged.
pub fn untag(id: &str) -> Option<(String, Value)> {
    let rest = id.strip_prefix(TAG)?;
    let (server, raw) = rest.split_once(':')?;
    let original: Value = serde_json::from_str(raw).ok()?;
    Some((server.to_string(), original))
}

/// The bounds on open sessions (`max_sessions_per_grant`, `max_sessions_per_server`).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Open sessions one grant may hold on one server.
    pub per_grant: usize,
    /// Open sessions on one server, all grants together.
    pub per_server: usize,
    /// At the server's cap, the least recently used session not in use and idle at least
    /// this long is closed to make room (at the grant's cap, its least recently used
    /// session not in use, however recent); a cap with no such session refuses.
    pub evict_after: Duration,
}

impl Caps {
    /// The caps of a server reached over `transport`: the configured ones, else the
    /// defaults for what a session costs there ([`SessionLimits::caps`]).
    pub fn of(limits: &SessionLimits, transport: &Transport) -> Caps {
        let (per_grant, per_server) = limits.caps(transport);
        Caps {
            per_grant,
            per_server,
            evict_after: Duration::from_secs(SESSION_EVICT_AFTER_SECS),
        }
    }
}

/// A session refused at a cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The grant holds `max_sessions_per_grant` sessions on this server, all in use.
    #[error("this grant already holds {0} open sessions on this server (max_sessions_per_grant), all with a request in flight or a stream open: close one (HTTP DELETE) or reuse it")]
    Grant(usize),
    /// The server has `max_sessions_per_server` sessions, none idle.
    #[error(
        "the server has {0} open sessions (max_sessions_per_server), none idle: try again later"
    )]
    Server(usize),
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Arc<Session>>,
    /// Sessions being opened (server, grant): counted against the caps.
    opening: Vec<(String, String)>,
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

/// A place held for a session while it opens (its child starting, its upstream
/// answering `initialize`); given back when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    sessions: &'a Sessions,
    server: String,
    grant: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if let Some(i) = inner
            .opening
            .iter()
            .position(|(s, g)| *s == self.server && *g == self.grant)
        {
            inner.opening.swap_remove(i);
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a place for a new session of `grant` on `server` within `caps`, closing the
    /// least recently used idle session at a full cap (the grant's own first).
    pub fn reserve(&self, server: &str, grant: &str, caps: Caps) -> Result<Slot<'_>, Full> {
        loop {
            let mut inner = self.lock();
            let on_server = |s: &Session| s.server == server;
            let of_grant = |s: &Session| s.server == server && s.grant_id == grant;
            let opening_grant = inner
                .opening
                .iter()
                .filter(|(s, g)| s == server && g == grant)
                .count();
            let opening_server = inner.opening.iter().filter(|(s, _)| s == server).count();
            let n_grant = inner.map.values().filter(|s| of_grant(s)).count() + opening_grant;
            let n_server = inner.map.values().filter(|s| on_server(s)).count() + opening_server;
            let victim = if n_grant >= caps.per_grant {
                Some(lru(&inner, &of_grant, Duration::ZERO).ok_or(Full::Grant(caps.per_grant))?)
            } else if n_server >= caps.per_server {
                Some(
                    lru(&inner, &on_server, caps.evict_after)
                        .ok_or(Full::Server(caps.per_server))?,
                )
            } else {
                None
            };
            match victim {
                Some(id) => {
                    if let Some(s) = inner.map.remove(&id) {
                        drop(inner);
                        s.close();
                        tracing::info!(server = %server, session = %id, "idle session closed to make room for a new one");
                    }
                }
                None => {
                    inner.opening.push((server.to_string(), grant.to_string()));
                    return Ok(Slot {
                        sessions: self,
                        server: server.to_string(),
                        grant: grant.to_string(),
                    });
                }
            }
        }
    }

    /// Adds a session.
    pub fn insert(&self, s: Arc<Session>) {
        let replaced = self.lock().map.insert(s.id.clone(), s);
        if let Some(old) = replaced {
            old.close();
        }
    }

    /// A live session by id, for this server and grant; touches it.
    pub fn get(&self, id: &str, server: &str, grant_id: &str) -> Option<Arc<Session>> {
        let s = self.lock().map.get(id).cloned()?;
        if s.server != server || s.grant_id != grant_id {
            return None;
        }
        if let UpstreamSession::Channel(p) = &s.upstream {
            if !p.is_alive() {
                self.remove(id);
                return None;
            }
        }
        s.touch();
        Some(s)
    }

    /// Removes and closes a session.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.lock().map.remove(id);
        if let Some(s) = &s {
            s.close();
        }
        s
    }

    /// Removes a session without closing its channel (the caller ends it its own way).
    pub fn remove_quietly(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().map.remove(id)
    }

    /// Closes sessions idle for longer than `max_idle`, and one-shot sessions (used at most
    /// twice after `initialize`) idle for longer than `max_idle_brief`; never one in use.
    /// Returns how many.
    pub fn reap(&self, max_idle: Duration, max_idle_brief: Duration) -> usize {
        let idle: Vec<String> = self
            .lock()
            .map
            .iter()
            .filter(|(_, s)| !s.busy())
            .filter(|(_, s)| {
                let idle = s.idle_for();
                idle > max_idle || (s.brief() && idle > max_idle_brief)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in &idle {
            self.remove(id);
        }
        idle.len()
    }

    /// Open sessions by server: (sessions, of which with a live channel: a stdio child
    /// or a legacy SSE connection).
    pub fn by_server(&self) -> Vec<(String, usize, usize)> {
        let mut out: HashMap<String, (usize, usize)> = HashMap::new();
        for s in self.lock().map.values() {
            let e = out.entry(s.server.clone()).or_default();
            e.0 += 1;
            if let UpstreamSession::Channel(p) = &s.upstream {
                if p.is_alive() {
                    e.1 += 1;
                }
            }
        }
        out.into_iter().map(|(k, (a, b))| (k, a, b)).collect()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The least recently used session matching `pick`, not in use, idle at least `min_idle`.
fn lru(inner: &Inner, pick: &dyn Fn(&Session) -> bool, min_idle: Duration) -> Option<String> {
    inner
        .map
        .values()
        .filter(|s| pick(s) && !s.busy())
        .map(|s| (s.idle_for(), s))
        .filter(|(idle, _)| *idle >= min_idle)
        .max_by_key(|(idle, _)| *idle)
        .map(|(_, s)| s.id.clone())
}

/// The capabilities servers gate tools on, as declared in an `initialize` request's
/// `params.capabilities`: a canonical, sorted subset of `elicitation`, `roots`, `sampling`
/// (others are ignored, so a client cannot mint new sets at will).
pub fn client_caps(initialize: &[u8]) -> String {
    const GATING: [&str; 3] = ["elicitation", "roots", "sampling"];
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(initialize) else {
        return String::new();
    };
    let Some(caps) = v
        .pointer("/params/capabilities")
        .and_then(|c| c.as_object())
    else {
        return String::new();
    };
    GATING
        .iter()
        .filter(|k| caps.contains_key(**k))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_member_request_is_tagged_and_its_answer_untagged() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"method":"elicitation/create","params":{}}"#;
        let tagged: Value = serde_json::from_str(&tag_request("everything", msg).unwrap()).unwrap();
        assert_eq!(tagged["id"], "tgv:everything:7");
        assert_eq!(
            untag("tgv:everything:7"),
            Some(("everything".into(), json!(7)))
        );
        let msg = br#"{"jsonrpc":"2.0","id":"a:b","method":"sampling/createMessage"}"#;
        let tagged: Value = serde_json::from_str(&tag_request("fs", msg).unwrap()).unwrap();
        assert_eq!(
            untag(tagged["id"].as_str().unwrap()),
            Some(("fs".into(), json!("a:b")))
        );
        // Notifications and responses pass as they are.
        assert!(tag_request(
            "fs",
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#
        )
        .is_none());
        assert!(tag_request("fs", br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_none());
        assert!(untag("7").is_none());
    }

    use super::*;

    fn http(id: &str, server: &str, grant: &str) -> Arc<Session> {
        Arc::new(Session::new(
            id.into(),
            server.into(),
            grant.into(),
            UpstreamSession::Http { session_id: None },
        ))
    }

    #[test]
    fn a_cancelled_request_is_signalled_once_and_forgotten_when_done() {
        let s = http("tgs_c", "srv", "g");
        let first = s.cancellable("1").unwrap();
        assert!(!*first.rx.borrow());
        // The same id again (a client reusing it): the newer request is the one cancelled,
        // and the older one's end does not forget it.
        let second = s.cancellable("1").unwrap();
        drop(first);
        assert!(s.cancel("1"));
        assert!(*second.rx.borrow());
        drop(second);
        assert!(!s.cancel("1"), "forgotten once its answer ended");
        assert!(!s.cancel("2"), "never in flight");
    }

    const CAPS: Caps = Caps {
        per_grant: 2,
        per_server: 3,
        evict_after: Duration::from_secs(3600),
    };

    #[test]
    fn a_grant_at_its_cap_is_refused_while_its_sessions_are_in_use() {
        let s = Sessions::default();
        let mut in_use = vec![];
        for i in 0..2 {
            let slot = s.reserve("a", "g1", CAPS).expect("room");
            let session = http(&format!("s{i}"), "a", "g1");
            in_use.push(session.enter());
            s.insert(session);
            drop(slot);
        }
        assert_eq!(s.reserve("a", "g1", CAPS).unwrap_err(), Full::Grant(2));
        // Once one is no longer in use, it makes room for the grant's new session.
        in_use.pop();
        let _room = s.reserve("a", "g1", CAPS).expect("the idle one closed");
        assert_eq!(s.len(), 1);
        drop(_room);
        let session = http("s9", "a", "g1");
        in_use.push(session.enter());
        s.insert(session);
        // Another grant still has room, up to the server's cap.
        let slot = s.reserve("a", "g2", CAPS).expect("room");
        assert_eq!(s.reserve("a", "g3", CAPS).unwrap_err(), Full::Server(3));
        drop(slot);
        assert!(s.reserve("b", "g1", CAPS).is_ok(), "caps are per server");
    }

    #[test]
    fn places_being_opened_count_against_the_cap() {
        let s = Sessions::default();
        let a = s.reserve("a", "g1", CAPS).expect("room");
        let b = s.reserve("a", "g1", CAPS).expect("room");
        assert!(s.reserve("a", "g1", CAPS).is_err());
        drop(a);
        drop(b);
        assert!(s.reserve("a", "g1", CAPS).is_ok());
    }

    #[test]
    fn the_least_recently_used_idle_session_makes_room() {
        let s = Sessions::default();
        let caps = Caps {
            evict_after: Duration::ZERO,
            ..CAPS
        };
        for i in 0..2 {
            s.insert(http(&format!("s{i}"), "a", "g1"));
            std::thread::sleep(Duration::from_millis(5));
        }
        s.get("s0", "a", "g1")
            .expect("s0 touched: s1 is now the oldest");
        let _slot = s.reserve("a", "g1", caps).expect("an idle session closed");
        assert!(s.get("s1", "a", "g1").is_none());
        assert!(s.get("s0", "a", "g1").is_some());
    }

    #[test]
    fn one_shot_sessions_are_reaped_sooner_and_busy_ones_never() {
        let s = Sessions::default();
        let one_shot = http("a", "x", "g");
        let used = http("b", "x", "g");
        let busy = http("c", "x", "g");
        for _ in 0..3 {
            used.touch();
        }
        let _guard = busy.enter();
        for session in [one_shot, used, busy] {
            s.insert(session);
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            s.reap(Duration::from_secs(3600), Duration::from_millis(10)),
            1
        );
        assert!(s.get("a", "x", "g").is_none());
        // Past the long idle time too: the used one goes, the busy one stays.
        assert_eq!(
            s.reap(Duration::from_millis(10), Duration::from_millis(10)),
            1
        );
        assert_eq!(s.len(), 1);
        assert!(s.get("c", "x", "g").is_some());
    }

    #[test]
    fn client_caps_are_the_gating_ones_sorted() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{"sampling":{},"x-made-up":{},"roots":{"listChanged":true}}}}"#;
        assert_eq!(client_caps(init), "roots,sampling");
        assert_eq!(client_caps(b"{}"), "");
    }
}
