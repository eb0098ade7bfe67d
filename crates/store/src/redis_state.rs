//! The shared state in Redis (`store = "redis://HOST:PORT/DB"`): grants, admin tokens,
//! pins, approvals and policy history, so gateway replicas on several machines (and the CLI
//! on any of them) see one set.
//!
//! Every change that must be all-or-nothing is one Lua script or one `MULTI` block, which
//! Redis runs alone: two replicas asking approval for the same call get one approval, an
//! approval is used at most once, a rotated token's old hash is gone in the same step.
//!
//! # Keys (all under `toolgate:`)
//! - `state:v`: bumped by every grant, admin-token and pin change ([`StateStore::data_version`]).
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
use crate::sqlite::{Observed, Pin, SqliteStore};
use crate::state::{AdminStore, ApprovalStore, GrantStore, PinStore, PolicyHistory, StateStore};
use crate::StoreError;

/// How long an approval stays readable in Redis after it expires (30 days).
pub const KEEP_MS: u64 = 30 * 24 * 3600 * 1000;
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

const ROTATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'token_hash')
if old then redis.call('DEL', ARGV[4] .. old) end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[1], 'token_prefix', ARGV[2])
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[3])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return 1
"#;

const REVOKE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'revoked_at_ms', ARGV[1])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return 1
"#;

/// KEYS: pins hash, held set. ARGV: now, then (tool, hash, definition) triples.
/// Returns {changed (tool, what) flat, pins as JSON in the order given}.
const OBSERVE: &str = r#"
local now = ARGV[1]
local first = redis.call('HLEN', KEYS[1]) == 0
local changed, out, touched = {}, {}, false
for i = 2, #ARGV, 3 do
  local tool, hash, def = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[1], tool)
  local p, write = nil, false
  if not raw then
    write = true
    if first then
      p = {hash = hash, definition = def, pinned_at_ms = now, seen_at_ms = now}
    else
      p = {pending_hash = hash, pending_definition = def, seen_at_ms = now}
      table.insert(changed, tool)
      table.insert(changed, 'new since pinning')
    end
  else
    p = cjson.decode(raw)
    if p.hash == hash then
      if p.pending_hash then
        p.pending_hash, p.pending_definition, write = nil, nil, true
      end
    elseif p.pending_hash ~= hash then
      local was = p.hash or 'none'
      p.pending_hash, p.pending_definition, p.seen_at_ms, write = hash, def, now, true
      table.insert(changed, tool)
      table.insert(changed, 'definition changed: pinned ' .. was .. ', now ' .. hash)
    end
  end
  local enc = cjson.encode(p)
  if write then
    redis.call('HSET', KEYS[1], tool, enc)
    touched = true
  end
  if p.pending_hash then redis.call('SADD', KEYS[2], tool) else redis.call('SREM', KEYS[2], tool) end
  table.insert(out, enc)
end
if touched then redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1') end
return {changed, out}
"#;

/// KEYS: pins hash, held set. ARGV: tool, now. Returns the new pin's JSON, or false.
const APPROVE_PIN: &str = r#"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local p = cjson.decode(raw)
if not p.pending_hash then return false end
p.hash, p.definition, p.pinned_at_ms = p.pending_hash, p.pending_definition, ARGV[2]
p.pending_hash, p.pending_definition = nil, nil
local enc = cjson.encode(p)
redis.call('HSET', KEYS[1], ARGV[1], enc)
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return enc
"#;

/// Drops from a call index (KEYS[1]) the approvals that can no longer be waited on or
/// used: gone from Redis, decided against, used, or past their expiry. Shared by the
/// scripts that walk the index, so it stays as short as the calls in flight.
const PRUNE_CALL_INDEX: &str = r#"
local function live_ids(index, now)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local f = redis.call('HMGET', 'toolgate:ap:' .. id, 'status', 'expires_at_ms', 'decided_at_ms')
    local status = f[1]
    if not status or status == 'denied' or status == 'expired' or status == 'used'
        or tonumber(f[2]) <= now then
      redis.call('ZREM', index, id)
    else
      table.insert(out, {id, status, tonumber(f[3]) or 0})
    end
  end
  return out
end
local function record(id)
  return {redis.call('HGETALL', 'toolgate:ap:' .. id), redis.call('ZRANGE', 'toolgate:ap-votes:' .. id, 0, -1)}
end
"#;

/// KEYS: call index, all approvals. ARGV: now, id, keep-until, then field/value pairs.
/// Returns {0 or 1 (created), id, fields, votes}.
const REQUEST: &str = r#"
local now = tonumber(ARGV[1])
for _, a in ipairs(live_ids(KEYS[1], now)) do
  if a[2] == 'pending' then
    local r = record(a[1])
    return {0, a[1], r[1], r[2]}
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - 2592000000, 'LIMIT', 0, 100)) do
  if redis.call('EXISTS', 'toolgate:ap:' .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
end
local id = ARGV[2]
local k = 'toolgate:ap:' .. id
redis.call('HSET', k, 'call_key', KEYS[1], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3]) - now
redis.call('PEXPIRE', k, ttl)
redis.call('ZADD', KEYS[1], now, id)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZADD', KEYS[2], now, id)
local r = record(id)
return {1, id, r[1], r[2]}
"#;

/// KEYS: approval, pending index. ARGV: id.
const OPEN: &str = r#"
if redis.call('HGET', KEYS[1], 'status') == 'opening' then
  redis.call('HSET', KEYS[1], 'status', 'pending')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created_at_ms'), ARGV[1])
end
return 1
"#;

/// KEYS: approval, votes, pending index. ARGV: id, approver, now, keep (ms).
/// Returns {'ok', fields, votes}, {'notfound'}, {'notpending', status} or {'already', required}.
const APPROVE: &str = r#"
local now = tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'status', 'expires_at_ms', 'required', 'timeout_ms')
if not f[1] then return {'notfound'} end
local status = f[1]
if (status == 'opening' or status == 'pending' or status == 'approved') and now >= tonumber(f[2]) then
  status = 'expired'
end
if status ~= 'pending' then
  if status == 'expired' and f[1] == 'pending' then
    redis.call('HSET', KEYS[1], 'status', 'expired')
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  return {'notpending', status}
end
if redis.call('ZADD', KEYS[2], 'NX', now, ARGV[2]) == 0 then return {'already', f[3]} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(f[3]) then
  local expires = now + tonumber(f[4])
  redis.call('HSET', KEYS[1], 'status', 'approved', 'decided_by', ARGV[2],
    'decided_at_ms', string.format('%d', now), 'expires_at_ms', string.format('%d', expires))
  redis.call('ZREM', KEYS[3], ARGV[1])
  local keep = expires - now + tonumber(ARGV[4])
  redis.call('PEXPIRE', KEYS[1], keep)
  -- The call's index must live as long, or the approved call could not find it.
  local index = redis.call('HGET', KEYS[1], 'call_key')
  if index and redis.call('PTTL', index) < keep then redis.call('PEXPIRE', index, keep) end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1)}
"#;

/// KEYS: approval, pending index. ARGV: id, reason, approver, now. Returns {fields, votes}
/// if it denied the approval, else false.
const DENY: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'status', 'expires_at_ms')
if f[1] == 'pending' and tonumber(f[2]) > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'denied', 'reason', ARGV[2], 'decided_by', ARGV[3], 'decided_at_ms', ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', 'toolgate:ap-votes:' .. ARGV[1], 0, -1)}
end
return false
"#;

/// KEYS: approval, pending index. ARGV: id, now. Returns 1 if it was pending.
const EXPIRE: &str = r#"
if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'decided_at_ms', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"#;

/// KEYS: call index. ARGV: now, id or ''. Returns {fields, votes} of the approval it used,
/// or false.
const TAKE: &str = r#"
local now = tonumber(ARGV[1])
local best, best_at = nil, nil
for _, a in ipairs(live_ids(KEYS[1], now)) do
  if a[2] == 'approved' and (ARGV[2] == '' or ARGV[2] == a[1]) then
    if best == nil or a[3] < best_at then best, best_at = a[1], a[3] end
  end
end
if best == nil then return false end
redis.call('HSET', 'toolgate:ap:' .. best, 'status', 'used', 'used_at_ms', ARGV[1])
return record(best)
"#;

/// KEYS: versions hash, order. ARGV: version, JSON.
const RECORD_VERSION: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], redis.call('INCR', 'toolgate:pv-seq'), ARGV[1])
end
return 1
"#;

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
    /// Pin checks answered since the state's version was last read (see [`HeldCache`]).
    held: Mutex<HeldCache>,
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

/// Whether (server, tool) is held, as of the state version read at `read_at`. Every pin
/// change bumps the version, and the gateway reads the version at the start of each
/// request, so a call's pin check costs no round trip while nothing changed. Answers are
/// trusted for at most [`HELD_FRESH`] after that read.
#[derive(Debug, Default)]
struct HeldCache {
    version: Option<i64>,
    read_at: Option<std::time::Instant>,
    by_tool: HashMap<(String, String), bool>,
}

/// How long after a version read cached pin checks are trusted.
const HELD_FRESH: Duration = Duration::from_secs(1);

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
            held: Mutex::new(HeldCache::default()),
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
        self.with(|c| {
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

    fn held_cache(&self) -> std::sync::MutexGuard<'_, HeldCache> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to [`VERSION_CHANGED`] from a thread of its own, reconnecting after a
    /// second when the connection drops. While it is not subscribed, `live` is false and
    /// every request reads the version (one round trip), as without it.
    fn listen_for_changes(&self) {
        let (client, pushed) = (self.client.clone(), self.pushed.clone());
        let set_live = move |pushed: &Mutex<Pushed>, live: bool| {
            let mut p = pushed.lock().unwrap_or_else(|e| e.into_inner());
            p.live = live;
            // Changes may have been missed while not subscribed: read again first.
            p.generation += 1;
        };
        let spawned = std::thread::Builder::new()
            .name("toolgate-redis-version".into())
            .spawn(move || loop {
                let ended: Result<(), redis::RedisError> = match client
                    .get_connection_with_timeout(TIMEOUT)
                {
                    Ok(mut conn) => {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        let mut sub = conn.as_pubsub();
                        match sub.subscribe(VERSION_CHANGED) {
                            Ok(()) => {
                                set_live(&pushed, true);
                                loop {
                                    match sub.get_message() {
                                        Ok(_) => {
                                            let mut p =
                                                pushed.lock().unwrap_or_else(|e| e.into_inner());
                                            p.generation += 1;
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
                set_live(&pushed, false);
                match ended {
                    Err(e) if e.is_timeout() => {}
                    _ => std::thread::sleep(Duration::from_secs(1)),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "cannot listen for state changes (every request reads the version): {e}"
            );
        }
    }

    /// Forgets cached pin checks (after this process changed a pin).
    fn forget_held(&self) {
        let mut cache = self.held_cache();
        cache.by_tool.clear();
        cache.version = None;
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

impl GrantStore for RedisState {
    fn create_grant(&self, new: &NewGrant, now_ms: u64) -> Result<(Grant, String), StoreError> {
        let (grant, token) = new.mint(now_ms)?;
        let hash = hash_token(&token);
        let mut fields = vec![
            ("id", grant.id.clone()),
            ("label", grant.label.clone()),
            ("server", grant.server.clone()),
            ("identity", grant.identity.clone()),
            ("token_hash", hash.clone()),
            ("token_prefix", grant.token_prefix.clone()),
            ("created_at_ms", now_ms.to_string()),
        ];
        if let Some(p) = &grant.policy {
            fields.push(("policy", p.clone()));
        }
        if let Some(e) = grant.expires_at_ms {
            fields.push(("expires_at_ms", e.to_string()));
        }
        let ident = ident_key(&grant.server, &grant.identity);
        self.insert_tokened(
            (&grant_key(&grant.id), &fields),
            ("toolgate:grants", &grant.id, now_ms),
            &format!("toolgate:grant-token:{hash}"),
            |p| {
                p.sadd(&ident, &grant.id).ignore();
            },
        )?;
        Ok((grant, token))
    }

    fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.grants_by_ids(&self.ids("toolgate:grants")?)
    }

    fn grant_count(&self) -> Result<u64, StoreError> {
        self.read(|c| redis::cmd("ZCARD").arg("toolgate:grants").query(c))
    }

    fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        let f = self.hash(&grant_key(id))?;
        if f.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        grant_from(&f).ok_or_else(|| corrupt("a grant"))
    }

    fn rotate_grant(&self, id: &str) -> Result<(Grant, String), StoreError> {
        let token = new_token()?;
        let prefix: String = token.chars().take(9).collect();
        let n: i64 = self.with(|c| {
            self.scripts
                .rotate
                .key(grant_key(id))
                .arg(hash_token(&token))
                .arg(&prefix)
                .arg(id)
                .arg("toolgate:grant-token:")
                .invoke(c)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok((self.grant(id)?, token))
    }

    fn revoke_grant(&self, id: &str, now_ms: u64) -> Result<Grant, StoreError> {
        let n: i64 = self.with(|c| self.scripts.revoke.key(grant_key(id)).arg(now_ms).invoke(c))?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.grant(id)
    }

    fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        match self.by_token("toolgate:grant-token:", grant_key, token)? {
            Some(f) => Ok(Some(grant_from(&f).ok_or_else(|| corrupt("a grant"))?)),
            None => Ok(None),
        }
    }

    fn grant_for_identity(
        &self,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Grant>, StoreError> {
        let ids: Vec<String> = self.read(|c| {
            redis::cmd("SMEMBERS")
                .arg(ident_key(server, identity))
                .query(c)
        })?;
        let mut grants = self.grants_by_ids(&ids)?;
        grants.retain(|g| {
            g.server == server
                && g.identity == identity
                && g.status(now_ms) == crate::GrantStatus::Active
        });
        grants.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        Ok(grants.into_iter().next())
    }
}

impl AdminStore for RedisState {
    fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(AdminToken, String), StoreError> {
        let (t, token) = AdminToken::mint(name, role, now_ms)?;
        let hash = hash_token(&token);
        let fields = [
            ("id", t.id.clone()),
            ("name", t.name.clone()),
            ("role", role.as_str().to_string()),
            ("token_hash", hash.clone()),
            ("token_prefix", t.token_prefix.clone()),
            ("created_at_ms", now_ms.to_string()),
        ];
        self.insert_tokened(
            (&admin_key(&t.id), &fields),
            ("toolgate:admins", &t.id, now_ms),
            &format!("toolgate:admin-token:{hash}"),
            |_| {},
        )?;
        Ok((t, token))
    }

    fn admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        let ids = self.ids("toolgate:admins")?;
        let keys: Vec<String> = ids.iter().map(|id| admin_key(id)).collect();
        self.hashes(&keys)?
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| admin_from(f).ok_or_else(|| corrupt("an admin token")))
            .collect()
    }

    fn revoke_admin_token(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        let n: i64 = self.with(|c| self.scripts.revoke.key(admin_key(id)).arg(now_ms).invoke(c))?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    fn admin_by_token(&self, token: &str) -> Result<Option<AdminToken>, StoreError> {
        let Some(f) = self.by_token("toolgate:admin-token:", admin_key, token)? else {
            return Ok(None);
        };
        let t = admin_from(&f).ok_or_else(|| corrupt("an admin token"))?;
        Ok(t.revoked_at_ms.is_none().then_some(t))
    }
}

fn pins_key(server: &str) -> String {
    format!("toolgate:pins:{server}")
}

fn held_key(server: &str) -> String {
    format!("toolgate:held:{server}")
}

fn caps_key(server: &str) -> String {
    format!("toolgate:pin-caps:{server}")
}

impl PinStore for RedisState {
    fn pins(&self, server: &str) -> Result<Vec<Pin>, StoreError> {
        let all: HashMap<String, String> = self.hash(&pins_key(server))?;
        let mut pins = all
            .iter()
            .map(|(tool, json)| parse_pin(json, server, tool))
            .collect::<Result<Vec<_>, _>>()?;
        pins.sort_by(|a, b| a.tool.cmp(&b.tool));
        Ok(pins)
    }

    fn observe_tools(
        &self,
        server: &str,
        tools: &[(String, String, String)],
        now_ms: u64,
    ) -> Result<Observed, StoreError> {
        let (changed, pins): (Vec<String>, Vec<String>) = self.with(|c| {
            let mut inv = self.scripts.observe.prepare_invoke();
            inv.key(pins_key(server)).key(held_key(server)).arg(now_ms);
            for (tool, hash, definition) in tools {
                inv.arg(tool).arg(hash).arg(definition);
            }
            inv.invoke(c)
        })?;
        self.forget_held();
        let pins = tools
            .iter()
            .zip(&pins)
            .map(|((tool, _, _), json)| parse_pin(json, server, tool))
            .collect::<Result<Vec<_>, _>>()?;
        let changed = changed
            .chunks(2)
            .filter_map(|p| match p {
                [tool, what] => Some((tool.clone(), what.clone())),
                _ => None,
            })
            .collect();
        Ok(Observed { pins, changed })
    }

    fn observe_capabilities(
        &self,
        server: &str,
        caps: &str,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let added: i64 =
            self.with(|c| redis::cmd("SADD").arg(caps_key(server)).arg(caps).query(c))?;
        Ok(added == 1)
    }

    fn held_cached(&self, server: &str, tool: &str) -> Option<bool> {
        let cache = self.held_cache();
        let fresh = cache.read_at.is_some_and(|t| t.elapsed() < HELD_FRESH);
        if !fresh {
            return None;
        }
        cache
            .by_tool
            .get(&(server.to_string(), tool.to_string()))
            .copied()
    }

    fn is_held(&self, server: &str, tool: &str) -> Result<bool, StoreError> {
        let key = (server.to_string(), tool.to_string());
        if let Some(held) = self.held_cached(server, tool) {
            return Ok(held);
        }
        let version = self.held_cache().version;
        let held: bool = self.read(|c| {
            redis::cmd("SISMEMBER")
                .arg(held_key(server))
                .arg(tool)
                .query(c)
        })?;
        let mut cache = self.held_cache();
        // Kept only if no newer version was seen meanwhile (the answer could predate it).
        if version.is_some() && cache.version == version {
            cache.by_tool.insert(key, held);
        }
        Ok(held)
    }

    fn approve_pin(&self, server: &str, tool: &str, now_ms: u64) -> Result<Pin, StoreError> {
        let json: Option<String> = self.with(|c| {
            self.scripts
                .approve_pin
                .key(pins_key(server))
                .key(held_key(server))
                .arg(tool)
                .arg(now_ms)
                .invoke(c)
        })?;
        self.forget_held();
        match json {
            Some(j) => parse_pin(&j, server, tool),
            None => Err(StoreError::NotFound(format!(
                "{server}/{tool} (no change is waiting for approval)"
            ))),
        }
    }
}

impl ApprovalStore for RedisState {
    fn request_approval(
        &self,
        new: &NewApproval,
        now_ms: u64,
    ) -> Result<(Approval, bool), StoreError> {
        let id = format!("ap_{}", random_hex(8)?);
        let expires = now_ms.saturating_add(new.timeout_ms);
        let mut fields: Vec<(&str, String)> = vec![
            ("id", id.clone()),
            ("server", new.server.clone()),
            ("grant_id", new.grant_id.clone()),
            ("grant_label", new.grant_label.clone()),
            ("identity", new.identity.clone()),
            ("tool", new.tool.clone()),
            ("arguments", new.arguments.clone()),
            ("arg_hash", new.arg_hash.clone()),
            ("rule", new.rule.clone()),
            ("required", new.required.max(1).to_string()),
            ("timeout_ms", new.timeout_ms.to_string()),
            ("status", "opening".to_string()),
            ("created_at_ms", now_ms.to_string()),
            ("expires_at_ms", expires.to_string()),
        ];
        if let Some(p) = &new.policy {
            fields.push(("policy", p.clone()));
        }
        if let Some(v) = &new.policy_version {
            fields.push(("policy_version", v.clone()));
        }
        let (created, _, f, votes): (i64, String, Fields, Vec<String>) = self.with(|c| {
            let mut inv = self.scripts.request.prepare_invoke();
            inv.key(call_key(&new.grant_id, &new.tool, &new.arg_hash))
                .key(ALL_APPROVALS)
                .arg(now_ms)
                .arg(&id)
                .arg(expires.saturating_add(KEEP_MS));
            for (k, v) in &fields {
                inv.arg(*k).arg(v);
            }
            inv.invoke(c)
        })?;
        let a = approval_from(&f, votes).ok_or_else(|| corrupt("an approval"))?;
        Ok((a, created == 1))
    }

    fn open_approval(&self, id: &str) -> Result<(), StoreError> {
        let _: i64 = self.with(|c| {
            self.scripts
                .open
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .invoke(c)
        })?;
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Approval, StoreError> {
        self.approvals_by_ids(&[id.to_string()])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn approvals(&self, waiting_only: bool, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        let index = if waiting_only { PENDING } else { ALL_APPROVALS };
        let ids: Vec<String> = self.read(|c| {
            redis::cmd("ZREVRANGE")
                .arg(index)
                .arg(0)
                .arg(if waiting_only { -1 } else { 999 })
                .query(c)
        })?;
        let list: Vec<Approval> = self
            .approvals_by_ids(&ids)?
            .into_iter()
            .filter(|a| !waiting_only || a.status_at(now_ms) == ApprovalStatus::Pending)
            .collect();
        if list.len() < ids.len() && (waiting_only || ids.len() < 1000) {
            // Gone from Redis, or (in the pending index) past their time and never to be
            // pending again: drop them from the index.
            let stale: Vec<&String> = ids
                .iter()
                .filter(|id| !list.iter().any(|a| &a.id == *id))
                .collect();
            self.with(|c| redis::cmd("ZREM").arg(index).arg(&stale).query::<i64>(c))?;
        }
        Ok(list)
    }

    fn approve(
        &self,
        id: &str,
        approver: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let answer: Vec<redis::Value> = self.with(|c| {
            self.scripts
                .approve
                .key(approval_key(id))
                .key(votes_key(id))
                .key(PENDING)
                .arg(id)
                .arg(approver)
                .arg(now_ms)
                .arg(KEEP_MS)
                .invoke(c)
        })?;
        let text = |v: Option<&redis::Value>| -> String {
            v.and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                .unwrap_or_default()
        };
        match (text(answer.first()).as_str(), &answer[..]) {
            ("ok", [_, f, votes]) => {
                let parsed: Option<(Fields, Vec<String>)> = redis::from_redis_value(f.clone())
                    .ok()
                    .zip(redis::from_redis_value(votes.clone()).ok());
                let (f, votes) = parsed.ok_or_else(|| corrupt("an approval"))?;
                approval_from(&f, votes)
                    .map(Ok)
                    .ok_or_else(|| corrupt("an approval"))
            }
            ("notfound", _) => Ok(Err(DecideError::NotFound(id.to_string()))),
            ("notpending", _) => Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: status_name(&text(answer.get(1))),
            })),
            ("already", _) => Ok(Err(DecideError::AlreadyApproved {
                id: id.to_string(),
                approver: approver.to_string(),
                required: text(answer.get(1)).parse().unwrap_or(1),
            })),
            (other, _) => Err(self.err(format!("unexpected script answer {other:?}"))),
        }
    }

    fn deny_approval(
        &self,
        id: &str,
        approver: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let denied: Option<(Fields, Vec<String>)> = self.with(|c| {
            self.scripts
                .deny
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .arg(reason)
                .arg(approver)
                .arg(now_ms)
                .invoke(c)
        })?;
        match denied {
            Some((f, votes)) => approval_from(&f, votes)
                .map(Ok)
                .ok_or_else(|| corrupt("an approval")),
            None => match self.approval(id) {
                Ok(a) => Ok(Err(DecideError::NotPending {
                    id: id.to_string(),
                    status: a.status_at(now_ms).as_str(),
                })),
                Err(StoreError::NotFound(_)) => Ok(Err(DecideError::NotFound(id.to_string()))),
                Err(e) => Err(e),
            },
        }
    }

    fn expire_approval(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n: i64 = self.with(|c| {
            self.scripts
                .expire
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .arg(now_ms)
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    fn take_approved(
        &self,
        grant_id: &str,
        tool: &str,
        arg_hash: &str,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Approval>, StoreError> {
        let used: Option<(Fields, Vec<String>)> = self.with(|c| {
            self.scripts
                .take
                .key(call_key(grant_id, tool, arg_hash))
                .arg(now_ms)
                .arg(id.unwrap_or(""))
                .invoke(c)
        })?;
        match used {
            Some((f, votes)) => Ok(Some(
                approval_from(&f, votes).ok_or_else(|| corrupt("an approval"))?,
            )),
            None => Ok(None),
        }
    }
}

impl PolicyHistory for RedisState {
    fn record_policy_version(&self, v: &PolicyVersion) -> Result<(), StoreError> {
        let doc = serde_json::to_string(&VersionDoc {
            document: v.document.clone(),
            author: v.author.clone(),
            created_at_ms: v.created_at_ms,
        })
        .map_err(|e| self.err(e))?;
        let _: i64 = self.with(|c| {
            self.scripts
                .record_version
                .key(format!("toolgate:pv:{}", v.name))
                .key(format!("toolgate:pv-order:{}", v.name))
                .arg(&v.version)
                .arg(&doc)
                .invoke(c)
        })?;
        Ok(())
    }

    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let (order, docs): (Vec<String>, HashMap<String, String>) = self.read(|c| {
            redis::pipe()
                .cmd("ZREVRANGE")
                .arg(format!("toolgate:pv-order:{name}"))
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(format!("toolgate:pv:{name}"))
                .query(c)
        })?;
        order
            .iter()
            .filter_map(|version| docs.get(version).map(|d| (version, d)))
            .map(|(version, d)| self.version_from(name, version, d))
            .collect()
    }

    fn policy_version(&self, name: &str, version: &str) -> Result<PolicyVersion, StoreError> {
        let doc: Option<String> = self.read(|c| {
            redis::cmd("HGET")
                .arg(format!("toolgate:pv:{name}"))
                .arg(version)
                .query(c)
        })?;
        match doc {
            Some(d) => self.version_from(name, version, &d),
            None => Err(StoreError::NotFound(format!(
                "policy `{name}` version `{version}`"
            ))),
        }
    }
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
        let mut cache = self.held_cache();
        if cache.version != Some(v) {
            cache.by_tool.clear();
            cache.version = Some(v);
        }
        cache.read_at = Some(std::time::Instant::now());
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
        let mut cache = self.held_cache();
        if cache.version != Some(v) {
            cache.by_tool.clear();
            cache.version = Some(v);
        }
        cache.read_at = Some(std::time::Instant::now());
        Some(v)
    }

    fn as_sqlite(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<SqliteStore>> {
        None
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
        let (client, channel) = (self.client.clone(), self.channel.clone());
        let spawned = std::thread::Builder::new()
            .name("toolgate-redis-decisions".into())
            .spawn(move || {
                let mut warned = false;
                loop {
                    let ended = match client.get_connection_with_timeout(TIMEOUT) {
                        Ok(mut conn) => {
                            // Silence longer than this reconnects, so a server that vanished
                            // without closing the connection is noticed.
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut sub = conn.as_pubsub();
                            match sub.subscribe(&channel) {
                                Ok(()) => {
                                    warned = false;
                                    loop {
                                        match sub.get_message() {
                                            Ok(msg) => {
                                                if let Ok(id) = msg.get_payload::<String>() {
                                                    on_decided(&id);
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
                    match ended {
                        Err(e) if e.is_timeout() => {} // quiet: reconnect at once
                        Err(e) => {
                            if !warned {
                                tracing::warn!("not listening for approval decisions on {channel} (held calls poll instead; retrying every second): {e}");
                                warned = true;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Ok(()) => std::thread::sleep(Duration::from_secs(1)),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot listen for approval decisions (polling only): {e}");
        }
    }
}
