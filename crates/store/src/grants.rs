//! Grants: a labelled bearer token for one server, with one policy attached.

use sha2::{Digest, Sha256};

use crate::StoreError;

/// A grant as stored (never with its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Stable id (`g_…`).
    pub id: String,
    /// Human label (`alice-laptop`).
    pub label: String,
    /// The one server it opens.
    pub server: String,
    /// The policy attached; `None` denies every call.
    pub policy: Option<String>,
    /// Who holds it (the label unless set).
    pub identity: String,
    /// The token's first characters, to recognise it.
    pub token_prefix: String,
    /// Created, ms since the epoch.
    pub created_at_ms: u64,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: Option<u64>,
    /// Revoked at, ms since the epoch.
    pub revoked_at_ms: Option<u64>,
}

/// Whether a grant may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    /// Usable.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl GrantStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
        }
    }
}

impl Grant {
    /// The grant's status at `now_ms`.
    pub fn status(&self, now_ms: u64) -> GrantStatus {
        if self.revoked_at_ms.is_some() {
            GrantStatus::Revoked
        } else if self.expires_at_ms.is_some_and(|e| e <= now_ms) {
            GrantStatus::Expired
        } else {
            GrantStatus::Active
        }
    }
}

/// What `grants create` asks for.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Label.
    pub label: String,
    /// Server.
    pub server: String,
    /// Policy name, if any.
    pub policy: Option<String>,
    /// Identity (defaults to the label).
    pub identity: Option<String>,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: Option<u64>,
}

impl NewGrant {
    /// The grant this asks for, created at `now_ms` with a fresh id, and its new token
    /// (the only time it exists in clear); every backend stores these.
    pub fn mint(&self, now_ms: u64) -> Result<(Grant, String), StoreError> {
        let token = new_token()?;
        let grant = Grant {
            id: format!("g_{}", random_hex(6)?),
            label: self.label.clone(),
            server: self.server.clone(),
            policy: self.policy.clone(),
            identity: self.identity.clone().unwrap_or_else(|| self.label.clone()),
            token_prefix: token.chars().take(9).collect(),
            created_at_ms: now_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: None,
        };
        Ok((grant, token))
    }
}

/// Random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// A new bearer token: `tg_` and 48 hex characters (192 bits).
pub fn new_token() -> Result<String, StoreError> {
    Ok(format!("tg_{}", random_hex(24)?))
}

/// The stored form of a token: SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
