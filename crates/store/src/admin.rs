//! Admin tokens: bearer tokens for the admin API (`/api/v1`), each with a role. Shown once,
//! stored as SHA-256 hashes, compared in constant time, revocable.

use rusqlite::{params, OptionalExtension};

use crate::grants::{constant_time_eq, hash_token, random_hex};
use crate::sqlite::SqliteStore;
use crate::state::AdminStore;
use crate::StoreError;

/// The admin token table (created with the store's schema).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
";

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read: status, audit, approvals, policies (no tokens, no credentials).
    Viewer,
    /// Viewer, plus approve and deny held calls and change policies.
    PolicyManager,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::PolicyManager => "policy_manager",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "policy_manager" => Role::PolicyManager,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// An admin token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// `at_…`.
    pub id: String,
    /// Who holds it (the approver name for decisions made with it).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub token_prefix: String,
    /// When it was made.
    pub created_at_ms: u64,
    /// When it was revoked.
    pub revoked_at_ms: Option<u64>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminToken> {
    let role: String = r.get(2)?;
    Ok(AdminToken {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        token_prefix: r.get(3)?,
        created_at_ms: r.get::<_, i64>(4)?.max(0) as u64,
        revoked_at_ms: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
    })
}

const COLS: &str = "id, name, role, token_prefix, created_at_ms, revoked_at_ms";

impl AdminToken {
    /// A new admin token named `name` with `role`, created at `now_ms`, and its secret (shown
    /// once); every backend stores these.
    pub fn mint(name: &str, role: Role, now_ms: u64) -> Result<(AdminToken, String), StoreError> {
        let token = format!("tga_{}", random_hex(24)?);
        let t = AdminToken {
            id: format!("at_{}", random_hex(6)?),
            name: name.to_string(),
            role,
            token_prefix: token.chars().take(10).collect(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        };
        Ok((t, token))
    }
}

impl AdminStore for SqliteStore {
    /// Creates an admin token; returns it and the token (the only time it exists in clear).
    fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(AdminToken, String), StoreError> {
        let (t, token) = AdminToken::mint(name, role, now_ms)?;
        self.conn().execute(
            "INSERT INTO admin_tokens (id, name, role, token_hash, token_prefix, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.id, t.name, role.as_str(), hash_token(&token), t.token_prefix, i64::try_from(now_ms).unwrap_or(i64::MAX)],
        )?;
        Ok((t, token))
    }

    /// Every admin token, oldest first.
    fn admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM admin_tokens ORDER BY created_at_ms, id"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes an admin token (idempotent).
    fn revoke_admin_token(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE admin_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?1) WHERE id = ?2",
            params![i64::try_from(now_ms).unwrap_or(i64::MAX), id],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    /// The live (not revoked) admin token a bearer token opens.
    fn admin_by_token(&self, token: &str) -> Result<Option<AdminToken>, StoreError> {
        let hash = hash_token(token);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLS}, token_hash FROM admin_tokens WHERE token_hash = ?1"
        ))?;
        let found = stmt
            .query_row([&hash], |r| Ok((row(r)?, r.get::<_, String>(6)?)))
            .optional()?;
        Ok(found.and_then(|(t, stored)| {
            (constant_time_eq(stored.as_bytes(), hash.as_bytes()) && t.revoked_at_ms.is_none())
                .then_some(t)
        }))
    }
}
