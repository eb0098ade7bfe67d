//! toolgate's state that must survive a restart: grants and rate-limit counters.
//!
//! # Layout
//! - [`state`]: the traits over the shared state ([`StateStore`]: grants, admin tokens, pins,
//!   approvals, policy history) and [`open_state`], which picks the backend from the URL.
//! - [`sqlite`]: [`SqliteStore`], the embedded default (`sqlite://toolgate.db`): one file,
//!   WAL mode, safe to open from the gateway and the CLI at once.
//! - [`redis_state`]: [`RedisState`] (`store = "redis://…"`), the same state in Redis for
//!   replicas on several machines.
//! - [`memory`]: [`MemoryState`], the same state in this process's memory, for tests of
//!   what sits on the store (with an [`Outage`] switch); not a backend users choose.
//! - [`grants`]: [`Grant`]s and their tokens (shown once, stored as SHA-256 hashes).
//! - [`admin`]: admin tokens ([`AdminToken`]) with roles, for the admin API.
//! - [`approvals`]: the approval queue ([`Approval`]): held calls, votes, one use each.
//! - [`audit`]: [`AuditLog`], the hash-chained audit log in its own SQLite file
//!   (`synchronous=FULL`, group commit).
//! - [`redis_counters`]: [`RedisCounters`], exact sliding windows in Redis (Lua), shared
//!   by replicas.
//! - [`counters`]: [`PersistentCounters`], exact in-memory sliding windows whose entries
//!   are written through to the store before a call is forwarded, and restored at start.
//!
//! One gateway process owns a SQLite store's counters; replicas share Redis instead, for
//! counters ([`RedisCounters`]) and for the rest of the state ([`RedisState`]).

pub mod admin;
pub mod approvals;
pub mod audit;
mod audit_memory;
mod audit_pg;
mod audit_sqlite;
pub mod connections;
pub mod counter_store;
pub mod counters;
pub mod grants;
pub mod memory;
pub mod policy_versions;
pub mod redis_counters;
pub mod redis_state;
pub mod sqlite;
pub mod state;

pub use admin::{AdminToken, Role};
pub use approvals::{Approval, ApprovalStatus, DecideError, NewApproval};
pub use audit::{AuditFilter, AuditLog, Durability, Stats, Verified, DEFAULT_FLUSH_MS};
pub use connections::{Connection, PendingConnection};
pub use counter_store::{CounterStore, Settle};
pub use counters::PersistentCounters;
pub use grants::{Grant, GrantStatus, NewGrant};
pub use memory::{MemoryState, Outage};
pub use policy_versions::PolicyVersion;
pub use redis_counters::RedisCounters;
pub use redis_state::RedisState;
pub use sqlite::{Observed, Pin, SqliteStore};
pub use state::{
    open_state, AdminStore, ApprovalStore, ConnectionStore, GrantStore, PinStore, PolicyHistory,
    StateStore,
};

/// A store URL fit for messages and logs (from `toolgate-config`, where the config
/// names it).
pub use toolgate_config::redact_url;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store URL is not understood.
    #[error("unsupported store `{0}`: expected sqlite://PATH or redis://HOST:PORT/DB")]
    BadUrl(String),
    /// No such record.
    #[error("not found: `{0}`")]
    NotFound(String),
    /// Redis could not be reached or failed.
    #[error("redis: {0}")]
    Redis(String),
    /// The audit log could not be written or read.
    #[error("audit log: {0}")]
    Audit(String),
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// A store call run off the async runtime did not finish (its thread panicked or the
    /// runtime is shutting down).
    #[error("the store call did not finish: {0}")]
    Interrupted(String),
}
