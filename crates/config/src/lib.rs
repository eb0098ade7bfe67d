//! `toolgate.toml`: parsed and validated, every error reported at once with its path.
//! Pure: no network, no database, no async runtime; the policy files the config names are
//! read through an injected [`Files`] ([`DiskFiles`] by default), so tests use a map.
//!
//! # Layout
//! - [`model`]: the validated [`Config`] and its parts (servers, transports, audit,
//!   approvals, sessions, JWT, tracing) and their defaults.
//! - [`validate`]: the raw serde shape (`deny_unknown_fields`) and the checks that turn it
//!   into a [`Config`] ([`Config::load`], [`Config::parse_with`]).
//! - [`backend`]: where state lives ([`StoreUrl`], [`AuditStore`], [`Durability`]) and
//!   [`redact_url`] for messages.
//! - [`run`]: `toolgate run`'s config ([`Config::for_run`]): one stdio server under one
//!   policy file, through the same checks.
//! - [`files`]: the [`Files`] reader, [`DiskFiles`] and [`MemFiles`].
//! - [`virtual_server`]: `[[virtual_servers]]`: which tools of which servers one endpoint
//!   exposes, and the name mapping both ways ([`Include`]).

pub mod backend;
pub mod files;
pub mod model;
pub mod run;
pub mod validate;
pub mod virtual_server;

use std::path::PathBuf;

pub use backend::{
    audit_path_beside, redact_url, AuditStore, Durability, StoreUrl, DEFAULT_FLUSH_MS,
};
pub use files::{DiskFiles, Files, MemFiles};
pub use model::*;
pub use run::{RunError, RunServer};
pub use virtual_server::Include;

/// A config that could not be used: every problem, one line each.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid config `{}`:\n  {}", file.display(), errors.join("\n  "))]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Each error, prefixed with its path (`servers[0].url: ...`).
    pub errors: Vec<String>,
}
