//! The state every replica must agree on, behind one set of traits: grants, admin tokens,
//! pins, approvals and policy history. Two backends implement them: [`SqliteStore`] (one
//! file, one machine) and [`RedisState`] (shared by replicas on several machines).
//!
//! The traits are split by subject so each backend keeps one file per subject; a
//! [`StateStore`] is all of them. Callers hold an `Arc<dyn StateStore>`, on which every
//! method is callable without importing the subject traits.

use std::path::Path;
use std::sync::Arc;

use crate::admin::{AdminToken, Role};
use crate::approvals::{Approval, DecideError, NewApproval};
use crate::connections::{Connection, PendingConnection};
use crate::grants::{Grant, NewGrant};
use crate::policy_versions::PolicyVersion;
use crate::sqlite::{Observed, Pin, SqliteStore};
use crate::{RedisState, StoreError};

/// Grants: bearer tokens for one server with one policy.
pub trait GrantStore {
    /// Creates a grant; returns it and its token (the only time the token exists in clear).
    fn create_grant(&self, new: &NewGrant, now_ms: u64) -> Result<(Grant, String), StoreError>;
    /// Every grant, oldest first.
    fn list_grants(&self) -> Result<Vec<Grant>, StoreError>;
    /// How many grants exist (any status).
    fn grant_count(&self) -> Result<u64, StoreError>;
    /// One grant by id.
    fn grant(&self, id: &str) -> Result<Grant, StoreError>;
    /// Gives a grant a new token (the old one stops working at once); returns the new token.
    fn rotate_grant(&self, id: &str) -> Result<(Grant, String), StoreError>;
    /// Revokes a grant (idempotent: the first revocation time is kept).
    fn revoke_grant(&self, id: &str, now_ms: u64) -> Result<Grant, StoreError>;
    /// The grant a bearer token opens, if any (whatever its status: the caller checks).
    fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError>;
    /// The newest active grant for `server` bound to `identity` (JWT identities).
    fn grant_for_identity(
        &self,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Grant>, StoreError>;
}

/// Admin tokens: bearer tokens for the admin API, each with a role.
pub trait AdminStore {
    /// Creates an admin token; returns it and the token (shown once).
    fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(AdminToken, String), StoreError>;
    /// Every admin token, oldest first.
    fn admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError>;
    /// Revokes an admin token (idempotent).
    fn revoke_admin_token(&self, id: &str, now_ms: u64) -> Result<(), StoreError>;
    /// The unrevoked admin token a bearer token is, if any.
    fn admin_by_token(&self, token: &str) -> Result<Option<AdminToken>, StoreError>;
}

/// Tool pins: the reviewed definition of every tool, and changed ones held for approval.
pub trait PinStore {
    /// Every pin of a server, by tool name.
    fn pins(&self, server: &str) -> Result<Vec<Pin>, StoreError>;
    /// Records the definitions an upstream just listed, as `(tool, hash, definition)`. The
    /// first time a server is seen every tool is pinned as it is; after that a changed
    /// definition, or a tool that was not there, is recorded as pending (held). Returns the
    /// pins of the listed tools, in the order given.
    fn observe_tools(
        &self,
        server: &str,
        tools: &[(String, String, String)],
        now_ms: u64,
    ) -> Result<Observed, StoreError>;
    /// True when the tool's definition is held (changed or new since pinning).
    fn is_held(&self, server: &str, tool: &str) -> Result<bool, StoreError>;
    /// Approves a held definition: it becomes the pin. Errors when nothing is pending.
    fn approve_pin(&self, server: &str, tool: &str, now_ms: u64) -> Result<Pin, StoreError>;
    /// Records that a client with this set of capabilities (a canonical name such as
    /// `elicitation,sampling`) listed the server's tools; true the first time the set is
    /// seen for the server (servers list some tools only to clients with a capability).
    fn observe_capabilities(
        &self,
        server: &str,
        caps: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
}

/// The approval queue: calls held for a person's decision.
pub trait ApprovalStore {
    /// Holds a call: returns the pending approval for the same grant, tool and arguments
    /// if one is waiting (a retry does not ask twice; `false`), else a new one in status
    /// `opening` (`true`), which [`ApprovalStore::open_approval`] makes visible.
    fn request_approval(
        &self,
        new: &NewApproval,
        now_ms: u64,
    ) -> Result<(Approval, bool), StoreError>;
    /// Makes a new approval visible to approvers (`opening` → `pending`).
    fn open_approval(&self, id: &str) -> Result<(), StoreError>;
    /// One approval.
    fn approval(&self, id: &str) -> Result<Approval, StoreError>;
    /// Approvals, newest first: only those waiting (pending, not expired), or the newest
    /// 1,000 of any status.
    fn approvals(&self, waiting_only: bool, now_ms: u64) -> Result<Vec<Approval>, StoreError>;
    /// Records an approver's approval; the approval is granted once `required` distinct
    /// approvers have approved. An approved call stays usable for `timeout` from then.
    fn approve(
        &self,
        id: &str,
        approver: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError>;
    /// Denies a pending approval with a reason the agent will read.
    fn deny_approval(
        &self,
        id: &str,
        approver: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError>;
    /// Marks a pending approval expired (nobody decided in time). True if it was pending.
    fn expire_approval(&self, id: &str, now_ms: u64) -> Result<bool, StoreError>;
    /// Uses an approval once: the approved, unexpired approval for exactly this grant,
    /// tool and arguments (hash) becomes `used`. `id` narrows it to one approval.
    fn take_approved(
        &self,
        grant_id: &str,
        tool: &str,
        arg_hash: &str,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Approval>, StoreError>;
}

/// Policy history: every document put through the admin API, for rollback.
pub trait PolicyHistory {
    /// Stores a version; a version already stored keeps its first author and time.
    fn record_policy_version(&self, v: &PolicyVersion) -> Result<(), StoreError>;
    /// The stored versions of a policy, newest first.
    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError>;
    /// One stored version.
    fn policy_version(&self, name: &str, version: &str) -> Result<PolicyVersion, StoreError>;
}

/// Upstream connections: each identity's sealed token set at a server toolgate reaches as
/// an OAuth client, consent flows begun, and toolgate's client registrations (see
/// [`crate::connections`]).
pub trait ConnectionStore {
    /// Stores an identity's connection (replacing the one it had at that server).
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError>;
    /// An identity's connection to a server.
    fn connection(&self, server: &str, identity: &str) -> Result<Option<Connection>, StoreError>;
    /// Every connection, by server then identity.
    fn connections(&self) -> Result<Vec<Connection>, StoreError>;
    /// Forgets a connection, and any consent flow begun for it (a consent URL handed out
    /// before a disconnect must not reconnect the identity); true if there was one.
    fn delete_connection(&self, server: &str, identity: &str) -> Result<bool, StoreError>;
    /// Replaces (`Some`) or deletes (`None`) the connection of `expected`'s server and
    /// identity only while it is still `expected` (the same sealed bytes): false, and
    /// nothing written, when it changed or is gone meanwhile (a disconnect, a new consent,
    /// another refresh). A refresh writes its answer through this, so it never brings back
    /// a connection removed while it was under way.
    fn swap_connection(
        &self,
        expected: &Connection,
        next: Option<&Connection>,
    ) -> Result<bool, StoreError>;
    /// Keeps a consent flow begun (replacing any other of the same server and identity;
    /// flows older than [`crate::connections::PENDING_TTL_MS`] are dropped).
    fn begin_connection(&self, p: &PendingConnection) -> Result<(), StoreError>;
    /// Takes the flow `state` names, once; `None` when there is none, or it is older than
    /// [`crate::connections::PENDING_TTL_MS`] at `now_ms` (taken all the same).
    fn take_pending(
        &self,
        state: &str,
        now_ms: u64,
    ) -> Result<Option<PendingConnection>, StoreError>;
    /// Stores toolgate's client registration at `issuer` for `server`, sealed.
    fn put_registration(&self, server: &str, issuer: &str, sealed: &[u8])
        -> Result<(), StoreError>;
    /// toolgate's registration at `issuer` for `server`.
    fn registration(&self, server: &str, issuer: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Takes the refresh lock of `(server, identity)` for `holder` until `now_ms + ttl_ms`:
    /// true when taken (free, expired, or already `holder`'s). One replica refreshes a
    /// token set at a time; the others wait and read the new one.
    fn lock_refresh(
        &self,
        server: &str,
        identity: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Gives the refresh lock back, if `holder` still has it.
    fn unlock_refresh(&self, server: &str, identity: &str, holder: &str) -> Result<(), StoreError>;
}

/// Everything a gateway shares with its CLI and its replicas.
pub trait StateStore:
    GrantStore
    + AdminStore
    + PinStore
    + ApprovalStore
    + PolicyHistory
    + ConnectionStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Where the state lives, for messages (a Redis URL without its password).
    fn describe(&self) -> String;
    /// A number that changes whenever grants, admin tokens, pins or upstream connections
    /// change, in any process or replica: caches compare it before trusting what they hold.
    fn data_version(&self) -> Result<i64, StoreError>;
    /// [`StateStore::data_version`] when it can be had without IO or waiting (safe on an
    /// async thread); `None`: ask [`StateStore::data_version`] off the async threads.
    fn data_version_now(&self) -> Option<i64> {
        None
    }
    /// Answers when the state can be read (for `/readyz`).
    fn check(&self) -> Result<(), StoreError> {
        self.data_version().map(|_| ())
    }
    /// Calls `on_decided` with the id of every approval announced by any process sharing
    /// this state ([`StateStore::announce_decided`]): a wake-up only, waiters read the
    /// approval again. The default does nothing; waiters then rely on polling.
    fn watch_decisions(&self, on_decided: Box<dyn Fn(&str) + Send + Sync>) {
        drop(on_decided);
    }
    /// Tells every process watching this state that approval `id` was decided. Called after
    /// the decision's audit record is written, so a held call woken by it records `used`
    /// after `approved`. Best effort: a lost announcement only delays the wake-up to the
    /// next poll. The default does nothing.
    fn announce_decided(&self, id: &str) {
        let _ = id;
    }
}

/// Opens the state named by a store URL: `sqlite://PATH` (relative to `base`) or
/// `redis://HOST:PORT/DB`.
pub fn open_state(url: &str, base: &Path) -> Result<Arc<dyn StateStore>, StoreError> {
    if url.starts_with("redis://") || url.starts_with("redis+unix://") {
        Ok(Arc::new(RedisState::open(url)?))
    } else {
        Ok(Arc::new(SqliteStore::open_url(url, base)?))
    }
}

impl StateStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        SqliteStore::data_version(self)
    }

    fn data_version_now(&self) -> Option<i64> {
        SqliteStore::data_version_now(self)
    }
}
