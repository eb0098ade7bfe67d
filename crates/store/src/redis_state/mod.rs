//! The shared state in Redis (`store = "redis://HOST:PORT/DB"`): grants, admin tokens,
//! pins, approvals and policy history, so gateway replicas on several machines (and the CLI
//! on any of them) see one set.
//!
//! Every change that must be all-or-nothing is one Lua script (in `src/lua/`, one file
//! each) or one `MULTI` block, which Redis runs alone: two replicas asking approval for the same call get one approval, an
//! approval is used at most once, a rotated token's old hash is gone in the same step.
//!
//! # Keys (all under `toolgate:`)
//! - `state:v`: bumped by every grant, admin-token, pin and connection change ([`StateStore::data_version`]),
//!   each bump published on `toolgate:state:changed`.
//! - `grant:{id}` (hash), `grants` (ids by creation), `grant-token:{sha256}` → id,
//!   `grant-ident:{digest of server, identity}` (set of ids).
//! - `admin:{id}` (hash), `admins`, `admin-token:{sha256}` → id.
//! - `pins:{server}` (hash: tool → JSON), `held:{server}` (set of held tools).
//! - `ap:{id}` (hash), `ap-votes:{id}` (approver → time), `aps` (ids by creation),
//!   `aps-pending`, `ap-call:{digest of grant, tool, arguments}`. An approval and its votes
//!   expire from Redis [`KEEP_MS`] after the approval itself expires; the audit log keeps
//!   every event for good.
//! - `pv:{name}` (hash: version → JSON), `pv-order:{name}` (versions by insertion), `pv-seq`.
//!
//! Redis Cluster is not supported: scripts touch keys they derive themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::admin::{AdminToken, Role};
use crate::approvals::{Approval, ApprovalStatus, DecideError, NewApproval};
use crate::grants::{constant_time_eq, hash_token, new_token, random_hex, Grant, NewGrant};
use crate::policy_versions::PolicyVersion;
use crate::sqlite::{Observed, Pin};
use crate::state::{
    AdminStore, ApprovalStore, ConnectionStore, GrantStore, PinStore, PolicyHistory, StateStore,
};
use crate::StoreError;

/// How long an approval stays readable in Redis after it expires (30 days).
pub const KEEP_MS: u64 = 30 * 24 * 3600 * 1000;
mod approvals;
mod connections;
mod grants;
mod history;
mod pins;

/// Listens on `channel` from a thread of its own (`thread`) for as long as the process
/// lives: `on_message` gets each payload, `on_live` hears when the subscription starts
/// (true) and ends (false). A dropped connection is retried every second (said once per
/// outage, naming `what`); 30 s of silence reconnects, so a server that vanished without
/// closing the connection is noticed.
fn subscribe_forever(
    client: redis::Client,
    channel: String,
    thread: &str,
    what: &'static str,
    on_live: impl Fn(bool) + Send + 'static,
    on_message: impl Fn(&str) + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let mut warned = false;
            loop {
                let ended: Result<(), redis::RedisError> =
                    match client.get_connection_with_timeout(TIMEOUT) {
                        Ok(mut conn) => {
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut sub = conn.as_pubsub();
                            match sub.subscribe(&channel) {
                                Ok(()) => {
                                    warned = false;
                                    on_live(true);
                                    loop {
                                        match sub.get_message() {
                                            Ok(msg) => {
                                                if let Ok(payload) = msg.get_payload::<String>() {
                                                    on_message(&payload);
                                                }
                                            }
                                            Err(e) => break Err(e),
                                        }
                                    }
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    };
                on_live(false);
                match ended {
                    Err(e) if e.is_timeout() => {} // quiet: reconnect at once
                    Err(e) => {
                        if !warned {
                            tracing::warn!("not listening for {what} on {channel} (retrying every second): {e}");
                            warned = true;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Ok(()) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot listen for {what}: {e}");
    }
}

/// How many idle connections are kept for reuse.
const MAX_IDLE: usize = 8;
/// Connect, read and write timeouts: a Redis that does not answer fails the call (closed).
const TIMEOUT: Duration = Duration::from_secs(2);
const VERSION: &str = "toolgate:state:v";
/// Published (payload `1`) with every bump of [`VERSION`], by the scripts and pipelines
/// that bump it: a gateway listening there knows its cached version is stale without
/// asking. Shared by all of a server's databases: a message from another database only
/// costs one extra read.
const VERSION_CHANGED: &str = "toolgate:state:changed";
/// The channel the approve and deny scripts publish decided approval ids on, followed by
/// the database number (channels are shared by all of a server's databases).
const DECIDED: &str = "toolgate:decided:";

const ROTATE: &str = include_str!("../lua/rotate.lua");

const REVOKE: &str = include_str!("../lua/revoke.lua");

/// KEYS: pins hash, held set. ARGV: now, then (tool, hash, definition) triples.
/// Returns {changed (tool, what) flat, pins as JSON in the order given}.
const OBSERVE: &str = include_str!("../lua/observe.lua");

/// KEYS: pins hash, held set. ARGV: tool, now. Returns the new pin's JSON, or false.
const APPROVE_PIN: &str = include_str!("../lua/approve-pin.lua");

/// Drops from a call index (KEYS[1]) the approvals that can no longer be waited on or
/// used: gone from Redis, decided against, used, or past their expiry. Shared by the
/// scripts that walk the index, so it stays as short as the calls in flight.
const PRUNE_CALL_INDEX: &str = include_str!("../lua/prune-call-index.lua");

/// KEYS: call index, all approvals. ARGV: now, id, keep-until, then field/value pairs.
/// Returns {0 or 1 (created), id, fields, votes}.
const REQUEST: &str = include_str!("../lua/request.lua");

/// KEYS: approval, pending index. ARGV: id.
const OPEN: &str = include_str!("../lua/open.lua");

/// KEYS: approval, votes, pending index. ARGV: id, approver, now, keep (ms).
/// Returns {'ok', fields, votes}, {'notfound'}, {'notpending', status} or {'already', required}.
const APPROVE: &str = include_str!("../lua/approve.lua");

/// KEYS: approval, pending index. ARGV: id, reason, approver, now. Returns {fields, votes}
/// if it denied the approval, else false.
const DENY: &str = include_str!("../lua/deny.lua");

/// KEYS: approval, pending index. ARGV: id, now. Returns 1 if it was pending.
const EXPIRE: &str = include_str!("../lua/expire.lua");

/// KEYS: call index. ARGV: now, id or ''. Returns {fields, votes} of the approval it used,
/// or false.
const TAKE: &str = include_str!("../lua/take.lua");

/// KEYS: versions hash, order. ARGV: version, JSON.
const RECORD_VERSION: &str = include_str!("../lua/record-version.lua");

struct Scripts {
    rotate: redis::Script,
    revoke: redis::Script,
    observe: redis::Script,
    approve_pin: redis::Script,
    request: redis::Script,
    open: redis::Script,
    approve: redis::Script,
    deny: redis::Script,
    expire: redis::Script,
    take: redis::Script,
    record_version: redis::Script,
}

/// The shared state in Redis.
pub struct RedisState {
    client: redis::Client,
    url: String,
    idle: Mutex<Vec<redis::Connection>>,
    scripts: Scripts,
    /// Where decisions are announced.
    channel: String,
    /// The version as last read, valid while a subscription to [`VERSION_CHANGED`] says
    /// nothing changed since (see [`StateStore::data_version_now`]).
    pushed: Arc<Mutex<Pushed>>,
    /// The subscriber thread is started on the first `data_version_now` (CLI commands
    /// never ask, and never start it).
    listening: std::sync::Once,
}

/// What the [`VERSION_CHANGED`] subscriber knows.
#[derive(Debug, Default)]
struct Pushed {
    /// Subscribed now: changes will be heard.
    live: bool,
    /// Bumped by every message and every (re)subscription.
    generation: u64,
    /// The version read when `generation` had the value in `read_at_generation`.
    version: Option<i64>,
    read_at_generation: u64,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("url", &crate::redact_url(&self.url))
            .finish()
    }
}

/// A pin as stored in Redis (all values strings, as the scripts write them).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PinDoc {
    hash: Option<String>,
    definition: Option<String>,
    pinned_at_ms: Option<String>,
    pending_hash: Option<String>,
    pending_definition: Option<String>,
}

impl PinDoc {
    fn into_pin(self, server: &str, tool: &str) -> Pin {
        Pin {
            server: server.to_string(),
            tool: tool.to_string(),
            hash: self.hash,
            definition: self.definition,
            pinned_at_ms: self.pinned_at_ms.and_then(|v| v.parse().ok()),
            pending_hash: self.pending_hash,
            pending_definition: self.pending_definition,
        }
    }
}

fn parse_pin(json: &str, server: &str, tool: &str) -> Result<Pin, StoreError> {
    serde_json::from_str::<PinDoc>(json)
        .map(|d| d.into_pin(server, tool))
        .map_err(|e| StoreError::Redis(format!("pin {server}/{tool} unreadable: {e}")))
}

#[derive(Serialize, Deserialize)]
struct VersionDoc {
    document: String,
    author: String,
    created_at_ms: u64,
}

/// A short digest naming a tuple of strings in a key (length-prefixed, so no two tuples
/// share one).
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize()).chars().take(32).collect()
}

type Fields = HashMap<String, String>;

fn get_u64(f: &Fields, k: &str) -> Option<u64> {
    f.get(k).and_then(|v| v.parse().ok())
}

fn grant_from(f: &Fields) -> Option<Grant> {
    Some(Grant {
        id: f.get("id")?.clone(),
        label: f.get("label")?.clone(),
        server: f.get("server")?.clone(),
        policy: f.get("policy").cloned(),
        identity: f.get("identity")?.clone(),
        token_prefix: f.get("token_prefix")?.clone(),
        created_at_ms: get_u64(f, "created_at_ms")?,
        expires_at_ms: get_u64(f, "expires_at_ms"),
        revoked_at_ms: get_u64(f, "revoked_at_ms"),
    })
}

fn admin_from(f: &Fields) -> Option<AdminToken> {
    Some(AdminToken {
        id: f.get("id")?.clone(),
        name: f.get("name")?.clone(),
        role: Role::parse(f.get("role")?).unwrap_or(Role::Viewer),
        token_prefix: f.get("token_prefix")?.clone(),
        created_at_ms: get_u64(f, "created_at_ms")?,
        revoked_at_ms: get_u64(f, "revoked_at_ms"),
    })
}

fn approval_from(f: &Fields, approvers: Vec<String>) -> Option<Approval> {
    Some(Approval {
        id: f.get("id")?.clone(),
        server: f.get("server")?.clone(),
        grant_id: f.get("grant_id")?.clone(),
        grant_label: f.get("grant_label")?.clone(),
        identity: f.get("identity")?.clone(),
        tool: f.get("tool")?.clone(),
        arguments: f.get("arguments")?.clone(),
        arg_hash: f.get("arg_hash")?.clone(),
        policy: f.get("policy").cloned(),
        policy_version: f.get("policy_version").cloned(),
        rule: f.get("rule")?.clone(),
        required: f.get("required")?.parse().ok()?,
        timeout_ms: get_u64(f, "timeout_ms")?,
        status: ApprovalStatus::parse(f.get("status")?),
        reason: f.get("reason").cloned(),
        decided_by: f.get("decided_by").cloned(),
        approvers,
        created_at_ms: get_u64(f, "created_at_ms")?,
        expires_at_ms: get_u64(f, "expires_at_ms")?,
        decided_at_ms: get_u64(f, "decided_at_ms"),
        used_at_ms: get_u64(f, "used_at_ms"),
    })
}

fn grant_key(id: &str) -> String {
    format!("toolgate:grant:{id}")
}

fn admin_key(id: &str) -> String {
    format!("toolgate:admin:{id}")
}

fn approval_key(id: &str) -> String {
    format!("toolgate:ap:{id}")
}

fn votes_key(id: &str) -> String {
    format!("toolgate:ap-votes:{id}")
}

fn call_key(grant_id: &str, tool: &str, arg_hash: &str) -> String {
    format!("toolgate:ap-call:{}", digest(&[grant_id, tool, arg_hash]))
}

fn ident_key(server: &str, identity: &str) -> String {
    format!("toolgate:grant-ident:{}", digest(&[server, identity]))
}

const PENDING: &str = "toolgate:aps-pending";
const ALL_APPROVALS: &str = "toolgate:aps";

/// Whether an error means the connection cannot be used again.
fn broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Redis(format!(
        "{what} is stored incompletely (a field is missing)"
    ))
}

impl RedisState {
    /// Connects to `url` (`redis://HOST:PORT/DB`) and checks it answers. Errors name the
    /// URL without its password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Redis(format!("{}: {e}", crate::redact_url(url))))?;
        let channel = format!(
            "{DECIDED}{}",
            client.get_connection_info().redis_settings().db()
        );
        let s = RedisState {
            pushed: Arc::new(Mutex::new(Pushed::default())),
            listening: std::sync::Once::new(),
            channel,
            client,
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
            scripts: Scripts {
                rotate: redis::Script::new(ROTATE),
                revoke: redis::Script::new(REVOKE),
                observe: redis::Script::new(OBSERVE),
                approve_pin: redis::Script::new(APPROVE_PIN),
                request: redis::Script::new(&format!("{PRUNE_CALL_INDEX}{REQUEST}")),
                open: redis::Script::new(OPEN),
                approve: redis::Script::new(APPROVE),
                deny: redis::Script::new(DENY),
                expire: redis::Script::new(EXPIRE),
                take: redis::Script::new(&format!("{PRUNE_CALL_INDEX}{TAKE}")),
                record_version: redis::Script::new(RECORD_VERSION),
            },
        };
        s.check()?;
        Ok(s)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Redis(format!("{}: {e}", crate::redact_url(&self.url)))
    }

    fn connect(&self) -> Result<redis::Connection, StoreError> {
        let c = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.err(e))?;
        c.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.err(e))?;
        c.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| self.err(e))?;
        Ok(c)
    }

    /// An idle connection (true) or a new one (false).
    fn checkout(&self) -> Result<(redis::Connection, bool), StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) => Ok((c, true)),
            None => Ok((self.connect()?, false)),
        }
    }

    /// Ends a use of `conn`: back to the pool, unless it broke, in which case the idle ones
    /// are dropped too (after a Redis restart they are all dead).
    fn finish<T>(
        &self,
        conn: redis::Connection,
        r: redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Err(e) if broken(&e) => {
                idle.clear();
                Err(self.err(e))
            }
            r => {
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                r.map_err(|e| self.err(e))
            }
        }
    }

    /// Runs `f` (a change, run at most once) on a pooled connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let (mut conn, _) = self.checkout()?;
        let r = f(&mut conn);
        self.finish(conn, r)
    }

    /// [`RedisState::with`] for a write that moves [`VERSION`]: this process's own change
    /// makes the next [`StateStore::data_version_now`] ask Redis, without waiting for the
    /// subscriber to hear the announcement (the cached version is stale at once).
    fn with_change<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let r = self.with(f);
        self.pushed().generation += 1;
        r
    }

    /// Runs `f` (a read, safe to repeat) on a pooled connection; when that connection is
    /// found broken (Redis restarted since it was last used), once more on a fresh one.
    fn read<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let (mut conn, pooled) = self.checkout()?;
        match f(&mut conn) {
            Err(e) if pooled && broken(&e) => {
                self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
                let mut fresh = self.connect()?;
                let r = f(&mut fresh);
                self.finish(fresh, r)
            }
            r => self.finish(conn, r),
        }
    }

    /// Stores a record that a bearer token opens, in one `MULTI`: its hash (key, fields),
    /// its place in an index by creation (index, id, time), the token's hash → id, whatever
    /// `more` adds, and a new state version.
    fn insert_tokened(
        &self,
        (key, fields): (&str, &[(&str, String)]),
        (index, id, created_ms): (&str, &str, u64),
        token_key: &str,
        more: impl Fn(&mut redis::Pipeline),
    ) -> Result<(), StoreError> {
        self.with_change(|c| {
            let mut p = redis::pipe();
            p.atomic()
                .hset_multiple(key, fields)
                .ignore()
                .zadd(index, id, created_ms)
                .ignore()
                .set(token_key, id)
                .ignore();
            more(&mut p);
            p.incr(VERSION, 1)
                .ignore()
                .publish(VERSION_CHANGED, 1)
                .ignore()
                .query::<()>(c)
        })
    }

    /// The ids in an index, oldest first.
    fn ids(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| redis::cmd("ZRANGE").arg(index).arg(0).arg(-1).query(c))
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to [`VERSION_CHANGED`] from a thread of its own, reconnecting after a
    /// second when the connection drops. While it is not subscribed, `live` is false and
    /// every request reads the version (one round trip), as without it.
    fn listen_for_changes(&self) {
        let (on_live, on_message) = (self.pushed.clone(), self.pushed.clone());
        subscribe_forever(
            self.client.clone(),
            VERSION_CHANGED.to_string(),
            "toolgate-redis-version",
            "state changes (every request reads the version instead)",
            move |live| {
                let mut p = on_live.lock().unwrap_or_else(|e| e.into_inner());
                p.live = live;
                // Changes may have been missed while not subscribed: read again first.
                p.generation += 1;
            },
            move |_| {
                on_message
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .generation += 1;
            },
        );
    }

    /// The record a bearer token opens: the id stored under `{index}{sha256 of token}`,
    /// then the hash at `key(id)`, if its stored token hash matches (in constant time).
    fn by_token(
        &self,
        index: &str,
        key: fn(&str) -> String,
        token: &str,
    ) -> Result<Option<Fields>, StoreError> {
        let hash = hash_token(token);
        let id: Option<String> =
            self.read(|c| redis::cmd("GET").arg(format!("{index}{hash}")).query(c))?;
        let Some(id) = id else { return Ok(None) };
        let f = self.hash(&key(&id))?;
        let stored = f
            .get("token_hash")
            .map(String::as_bytes)
            .unwrap_or_default();
        Ok((!f.is_empty() && constant_time_eq(stored, hash.as_bytes())).then_some(f))
    }

    fn hash(&self, key: &str) -> Result<Fields, StoreError> {
        self.read(|c| redis::cmd("HGETALL").arg(key).query(c))
    }

    fn hashes(&self, keys: &[String]) -> Result<Vec<Fields>, StoreError> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        self.read(|c| {
            let mut p = redis::pipe();
            for k in keys {
                p.cmd("HGETALL").arg(k);
            }
            p.query(c)
        })
    }

    fn grants_by_ids(&self, ids: &[String]) -> Result<Vec<Grant>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| grant_key(id)).collect();
        self.hashes(&keys)?
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| grant_from(f).ok_or_else(|| corrupt("a grant")))
            .collect()
    }

    /// Approvals by id with their votes, in the order given; ids whose approval has
    /// expired from Redis are left out.
    fn approvals_by_ids(&self, ids: &[String]) -> Result<Vec<Approval>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let rows: Vec<(Fields, Vec<String>)> = self.read(|c| {
            let mut p = redis::pipe();
            for id in ids {
                p.cmd("HGETALL").arg(approval_key(id));
                p.cmd("ZRANGE").arg(votes_key(id)).arg(0).arg(-1);
            }
            let flat: Vec<redis::Value> = p.query(c)?;
            let mut out = Vec::with_capacity(ids.len());
            let mut it = flat.into_iter();
            while let (Some(h), Some(v)) = (it.next(), it.next()) {
                out.push((redis::from_redis_value(h)?, redis::from_redis_value(v)?));
            }
            Ok(out)
        })?;
        rows.into_iter()
            .filter(|(f, _)| !f.is_empty())
            .map(|(f, votes)| approval_from(&f, votes).ok_or_else(|| corrupt("an approval")))
            .collect()
    }
}

fn status_name(s: &str) -> &'static str {
    ApprovalStatus::parse(s).as_str()
}

impl RedisState {
    fn version_from(
        &self,
        name: &str,
        version: &str,
        doc: &str,
    ) -> Result<PolicyVersion, StoreError> {
        let d: VersionDoc = serde_json::from_str(doc).map_err(|e| self.err(e))?;
        Ok(PolicyVersion {
            name: name.to_string(),
            version: version.to_string(),
            document: d.document,
            author: d.author,
            created_at_ms: d.created_at_ms,
        })
    }
}

impl StateStore for RedisState {
    fn describe(&self) -> String {
        crate::redact_url(&self.url)
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        // The generation before the read: a change announced meanwhile keeps it stale.
        let generation = self.pushed().generation;
        let v: Option<i64> = self.read(|c| redis::cmd("GET").arg(VERSION).query(c))?;
        let v = v.unwrap_or(0);
        {
            let mut p = self.pushed();
            p.version = Some(v);
            p.read_at_generation = generation;
        }
        Ok(v)
    }

    /// The version without a round trip while the [`VERSION_CHANGED`] subscription is
    /// live and has heard nothing since the last read; else `None` (read it, one round
    /// trip). The first call starts the subscriber.
    fn data_version_now(&self) -> Option<i64> {
        self.listening.call_once(|| self.listen_for_changes());
        let v = {
            let p = self.pushed();
            if !p.live || p.generation != p.read_at_generation {
                return None;
            }
            p.version?
        };
        Some(v)
    }

    /// Publishes `id` on `toolgate:decided:{db}`; a failure is logged, not returned.
    fn announce_decided(&self, id: &str) {
        if let Err(e) = self.with(|c| {
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(id)
                .query::<i64>(c)
        }) {
            tracing::warn!("cannot announce the decision of {id} (held calls will see it when they next look): {e}");
        }
    }

    /// Listens on the `toolgate:decided:{db}` channel, which [`StateStore::announce_decided`]
    /// publishes to, from a thread of its own that reconnects after a second when the
    /// connection drops (polling covers the gap).
    fn watch_decisions(&self, on_decided: Box<dyn Fn(&str) + Send + Sync>) {
        subscribe_forever(
            self.client.clone(),
            self.channel.clone(),
            "toolgate-redis-decisions",
            "approval decisions (held calls poll instead)",
            |_| {},
            move |id| on_decided(id),
        );
    }
}
