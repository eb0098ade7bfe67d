//! Policy history: every document put through the admin API (and the file it replaced),
//! so a change can be listed, read back and rolled back.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::SqliteStore;
use crate::state::PolicyHistory;
use crate::StoreError;

/// The history table (created with the store's schema).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policy_versions (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    document TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
";

/// One stored version of a named policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// The policy's name (`[policies]` key).
    pub name: String,
    /// The version: the first 16 hex digits of the SHA-256 of the file's text.
    pub version: String,
    /// The file's text.
    pub document: String,
    /// Who put it (an admin token's name, or `(file)` for a version found on disk).
    pub author: String,
    /// When it was first stored.
    pub created_at_ms: u64,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyVersion> {
    Ok(PolicyVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        document: r.get(2)?,
        author: r.get(3)?,
        created_at_ms: r.get::<_, i64>(4)?.max(0) as u64,
    })
}

impl PolicyHistory for SqliteStore {
    /// Stores a version; a version already stored keeps its first author and time.
    fn record_policy_version(&self, v: &PolicyVersion) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO policy_versions (name, version, document, author, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![v.name, v.version, v.document, v.author, i64::try_from(v.created_at_ms).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// The stored versions of a policy, newest first.
    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, version, document, author, created_at_ms FROM policy_versions WHERE name = ?1 ORDER BY created_at_ms DESC, rowid DESC",
        )?;
        let rows = stmt.query_map([name], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored version.
    fn policy_version(&self, name: &str, version: &str) -> Result<PolicyVersion, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, version, document, author, created_at_ms FROM policy_versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("policy `{name}` version `{version}`")))
    }
}
