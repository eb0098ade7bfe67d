//! The one cache of state the gateway reads on every request: grants by token, whether a
//! tool's definition is held, and identities' upstream access tokens, all valid for one
//! version of the state store ([`toolgate_store::StateStore::data_version`], which moves on
//! every change to grants, admin tokens, pins and upstream connections, whoever made it:
//! this process, the CLI, another replica).
//!
//! The version is read at the start of each request ([`crate::state::AppState::state_version`]);
//! a new one empties the cache. An answer read from the store is kept only if the cache did
//! not move meanwhile (it could predate the change), tracked by a generation that moves
//! with every version change and every [`StateCache::forget_pins`] (this process changed
//! a pin: until the store's version says so, nothing cached about pins is trusted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use toolgate_policy::{ArgsSchema, Violation};
use toolgate_store::Grant;

/// A tool's argument schema, from its pinned definition (`validate_arguments`).
#[derive(Debug)]
pub enum ToolSchema {
    /// No pinned definition of the tool yet.
    Unknown,
    /// The pinned `inputSchema`, compiled, and the arguments it sends in headers
    /// (`x-mcp-header`: the property and the header's name after `Mcp-Param-`).
    Compiled(ArgsSchema, Vec<(String, String)>),
    /// The pinned `inputSchema` does not compile.
    Invalid(Violation),
}

/// How many entries each map holds before it is emptied (a bound against an agent sending
/// endless distinct tokens).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
struct Entries {
    version: Option<i64>,
    generation: u64,
    grants: HashMap<String, Option<Grant>>,
    held: HashMap<(String, String), bool>,
    schemas: HashMap<(String, String), Arc<ToolSchema>>,
    tokens: HashMap<(String, String), Option<Arc<UpstreamToken>>>,
}

/// An identity's access token at an `auth = "oauth"` server, as last read (and unsealed)
/// from its stored connection, for calls while it needs no refresh.
pub struct UpstreamToken {
    /// The access token.
    pub access_token: String,
    /// Until when it is used as it is (ms since the epoch; `None`: it does not expire).
    /// Past this the broker reads the store again and refreshes it.
    pub fresh_until_ms: Option<u64>,
    /// The upstream subject it acts as, if known.
    pub subject: Option<String>,
    /// The client id it was issued to.
    pub client_id: String,
    /// The resource (the server's URL) it was issued for.
    pub resource: String,
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("UpstreamToken")
            .field("fresh_until_ms", &self.fresh_until_ms)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl UpstreamToken {
    /// Whether the token may be used as it is at `now_ms`.
    pub fn fresh(&self, now_ms: u64) -> bool {
        self.fresh_until_ms.is_none_or(|until| now_ms < until)
    }
}

/// Grants and pin checks, keyed by the state version (see the module documentation).
#[derive(Debug, Default)]
pub struct StateCache(Mutex<Entries>);

/// Where the cache stood when a store read began: pass it back to keep the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl StateCache {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state's version was just read: a new one empties the cache.
    pub fn seen_version(&self, version: i64) {
        let mut e = self.lock();
        if e.version != Some(version) {
            e.version = Some(version);
            e.generation += 1;
            e.grants.clear();
            e.held.clear();
            e.schemas.clear();
            e.tokens.clear();
        }
    }

    /// This process changed pins: forget every pin check until the next version.
    pub fn forget_pins(&self) {
        let mut e = self.lock();
        e.generation += 1;
        e.held.clear();
        e.schemas.clear();
    }

    /// Where the cache stands now (take it before reading the store).
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// The grant a token opens, if cached.
    pub fn grant(&self, token: &str) -> Option<Option<Grant>> {
        let e = self.lock();
        e.version?;
        e.grants.get(token).cloned()
    }

    /// Keeps the grant a token opens, read from the store since `at`.
    pub fn keep_grant(&self, at: Generation, token: &str, grant: Option<Grant>) {
        let mut e = self.lock();
        if e.version.is_some() && e.generation == at.0 {
            if e.grants.len() >= MAX_ENTRIES {
                e.grants.clear();
            }
            e.grants.insert(token.to_string(), grant);
        }
    }

    /// Whether the tool's definition is held, if cached.
    pub fn held(&self, server: &str, tool: &str) -> Option<bool> {
        let e = self.lock();
        e.version?;
        e.held.get(&(server.to_string(), tool.to_string())).copied()
    }

    /// Keeps whether the tool's definition is held, read from the store since `at`.
    pub fn keep_held(&self, at: Generation, server: &str, tool: &str, held: bool) {
        let mut e = self.lock();
        if e.version.is_some() && e.generation == at.0 {
            if e.held.len() >= MAX_ENTRIES {
                e.held.clear();
            }
            e.held.insert((server.to_string(), tool.to_string()), held);
        }
    }
}

impl StateCache {
    /// The tool's argument schema, if cached.
    pub fn schema(&self, server: &str, tool: &str) -> Option<Arc<ToolSchema>> {
        let e = self.lock();
        e.version?;
        e.schemas
            .get(&(server.to_string(), tool.to_string()))
            .cloned()
    }

    /// Keeps the tool's argument schema, read from the store since `at`.
    pub fn keep_schema(&self, at: Generation, server: &str, tool: &str, schema: Arc<ToolSchema>) {
        let mut e = self.lock();
        if e.version.is_some() && e.generation == at.0 {
            if e.schemas.len() >= MAX_ENTRIES {
                e.schemas.clear();
            }
            e.schemas
                .insert((server.to_string(), tool.to_string()), schema);
        }
    }
}

impl StateCache {
    /// `identity`'s token at `server`, if cached: `Some(None)` when it has no connection.
    pub fn token(&self, server: &str, identity: &str) -> Option<Option<Arc<UpstreamToken>>> {
        let e = self.lock();
        e.version?;
        e.tokens
            .get(&(server.to_string(), identity.to_string()))
            .cloned()
    }

    /// Keeps `identity`'s token at `server` (`None`: not connected), read from the store
    /// since `at`.
    pub fn keep_token(
        &self,
        at: Generation,
        server: &str,
        identity: &str,
        token: Option<Arc<UpstreamToken>>,
    ) {
        let mut e = self.lock();
        if e.version.is_some() && e.generation == at.0 {
            if e.tokens.len() >= MAX_ENTRIES {
                e.tokens.clear();
            }
            e.tokens
                .insert((server.to_string(), identity.to_string()), token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StateCache, UpstreamToken};
    use std::sync::Arc;

    #[test]
    fn upstream_tokens_live_for_one_version_and_while_fresh() {
        let c = StateCache::default();
        c.seen_version(7);
        let at = c.generation();
        let t = UpstreamToken {
            access_token: "a".into(),
            fresh_until_ms: Some(1_000),
            subject: Some("alice".into()),
            client_id: "c".into(),
            resource: "https://gh.example/mcp".into(),
        };
        assert!(
            !format!("{t:?}").contains("\"a\""),
            "no token in debug output"
        );
        c.keep_token(at, "gh", "alice", Some(Arc::new(t)));
        c.keep_token(at, "gh", "bob", None);
        let got = c.token("gh", "alice").unwrap().unwrap();
        assert!(got.fresh(999) && !got.fresh(1_000));
        assert!(
            matches!(c.token("gh", "bob"), Some(None)),
            "not connected, cached"
        );
        assert!(c.token("gh", "carol").is_none());
        // A connection changed anywhere moves the version: nothing cached is trusted.
        c.seen_version(8);
        assert!(c.token("gh", "alice").is_none() && c.token("gh", "bob").is_none());
        // A read that began before the change is not kept.
        c.keep_token(at, "gh", "alice", None);
        assert!(c.token("gh", "alice").is_none());
        let forever = UpstreamToken {
            fresh_until_ms: None,
            access_token: "b".into(),
            subject: None,
            client_id: "c".into(),
            resource: "https://gh.example/mcp".into(),
        };
        assert!(forever.fresh(u64::MAX));
    }

    #[test]
    fn answers_live_for_one_version_and_a_read_across_a_change_is_not_kept() {
        let c = StateCache::default();
        let before = c.generation();
        c.keep_held(before, "s", "t", false);
        assert_eq!(
            c.held("s", "t"),
            None,
            "nothing is kept before a version is read"
        );
        c.seen_version(1);
        let at = c.generation();
        c.keep_held(at, "s", "t", false);
        assert_eq!(c.held("s", "t"), Some(false));
        c.seen_version(1);
        assert_eq!(c.held("s", "t"), Some(false), "the same version keeps it");
        // A read that began before this process changed a pin is not kept.
        let at = c.generation();
        c.forget_pins();
        c.keep_held(at, "s", "t", true);
        assert_eq!(c.held("s", "t"), None);
        c.seen_version(2);
        assert_eq!(c.held("s", "t"), None);
    }
}
