//! The SQLite store: one file in WAL mode.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use toolgate_policy::{CounterKey, Scope};

use crate::grants::{constant_time_eq, hash_token, new_token, Grant, NewGrant};
use crate::state::{GrantStore, PinStore};
use crate::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    server TEXT NOT NULL,
    policy TEXT,
    identity TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS counter_entries (
    id INTEGER PRIMARY KEY,
    counter TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    amount INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS counter_entries_at ON counter_entries(at_ms);
CREATE TABLE IF NOT EXISTS pins (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    hash TEXT,
    definition TEXT,
    pinned_at_ms INTEGER,
    pending_hash TEXT,
    pending_definition TEXT,
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (server, tool)
);
CREATE TABLE IF NOT EXISTS pin_capabilities (
    server TEXT NOT NULL,
    caps TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (server, caps)
);
-- The version of what gateways cache (grants by token, held pins, upstream connections):
-- every change to a grant, an admin token, a connection or a pin's definitions moves it, whoever makes the change (this process, the
-- CLI, another gateway on the same file). Counter entries, written every few milliseconds,
-- do not.
CREATE TABLE IF NOT EXISTS state_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    v INTEGER NOT NULL
);
INSERT OR IGNORE INTO state_version (id, v) VALUES (1, 0);
";

const VERSION_SQL: &str = "SELECT v FROM state_version WHERE id = 1";

/// How long a statement waits for a file another connection has locked.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The triggers that move the state version: every insert, update and delete of a grant,
/// an admin token or an upstream connection, and of a pin's definitions (not of its
/// `seen_at_ms`).
fn version_triggers() -> String {
    let bump = "BEGIN UPDATE state_version SET v = v + 1 WHERE id = 1; END;";
    let mut sql = String::new();
    for (table, update_of) in [
        ("grants", ""),
        ("admin_tokens", ""),
        ("oauth_connections", ""),
        (
            "pins",
            " OF hash, definition, pending_hash, pending_definition",
        ),
    ] {
        for (name, event) in [
            ("inserted", "INSERT"),
            ("updated", "UPDATE"),
            ("deleted", "DELETE"),
        ] {
            let of = if event == "UPDATE" { update_of } else { "" };
            sql.push_str(&format!(
                "CREATE TRIGGER IF NOT EXISTS {table}_{name} AFTER {event}{of} ON {table} {bump}\n"
            ));
        }
    }
    sql
}

/// A pinned tool definition, and a changed one waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The server.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// The approved definition's hash (`None` for a tool that appeared after pinning).
    pub hash: Option<String>,
    /// The approved definition (canonical JSON).
    pub definition: Option<String>,
    /// When it was approved.
    pub pinned_at_ms: Option<u64>,
    /// A changed (or new) definition waiting for `toolgate tools approve`.
    pub pending_hash: Option<String>,
    /// Its definition.
    pub pending_definition: Option<String>,
}

impl Pin {
    /// True while a change waits for approval: the tool is held.
    pub fn is_held(&self) -> bool {
        self.pending_hash.is_some()
    }
}

/// What one `tools/list` observation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The pins of the listed tools.
    pub pins: Vec<Pin>,
    /// Tools that became held by this observation, with what happened.
    pub changed: Vec<(String, String)>,
}

const PIN_COLS: &str =
    "server, tool, hash, definition, pinned_at_ms, pending_hash, pending_definition";

fn row_pin(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pin> {
    Ok(Pin {
        server: r.get(0)?,
        tool: r.get(1)?,
        hash: r.get(2)?,
        definition: r.get(3)?,
        pinned_at_ms: r.get::<_, Option<i64>>(4)?.map(|v| v.max(0) as u64),
        pending_hash: r.get(5)?,
        pending_definition: r.get(6)?,
    })
}

/// The SQLite store. Cheap to share behind an `Arc`; calls are short and serialised.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// A connection that only reads the state version (the `state_version` row, moved by
    /// triggers on every change to grants and pins, whoever commits it).
    version: Mutex<Connection>,
}

fn scope_from(s: &str) -> Option<Scope> {
    Some(match s {
        "grant" => Scope::Grant,
        "identity" => Scope::Identity,
        "session" => Scope::Session,
        "server" => Scope::Server,
        "global" => Scope::Global,
        _ => return None,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_grant(row: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(0)?,
        label: row.get(1)?,
        server: row.get(2)?,
        policy: row.get(3)?,
        identity: row.get(4)?,
        token_prefix: row.get(5)?,
        created_at_ms: row.get::<_, i64>(6)?.max(0) as u64,
        expires_at_ms: row.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
        revoked_at_ms: row.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
    })
}

const GRANT_COLS: &str =
    "id, label, server, policy, identity, token_prefix, created_at_ms, expires_at_ms, revoked_at_ms";

impl SqliteStore {
    /// Opens (creating if needed) the store named by a URL: `sqlite://PATH`, relative
    /// paths taken from `base`.
    pub fn open_url(url: &str, base: &Path) -> Result<Self, StoreError> {
        let Some(rest) = url.strip_prefix("sqlite://") else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        if rest.is_empty() {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        let p = Path::new(rest);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        Self::open(&path)
    }

    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::approvals::SCHEMA)?;
        conn.execute_batch(crate::admin::SCHEMA)?;
        conn.execute_batch(crate::policy_versions::SCHEMA)?;
        conn.execute_batch(crate::connections::SCHEMA)?;
        conn.execute_batch(&version_triggers())?;
        let version = Connection::open(path)?;
        // Never waits: a busy file is reported at once (see `data_version_now`).
        version.busy_timeout(Duration::ZERO)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            version: Mutex::new(version),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GrantStore for SqliteStore {
    /// Creates a grant; returns it and its token (the only time the token exists in clear).
    fn create_grant(&self, new: &NewGrant, now_ms: u64) -> Result<(Grant, String), StoreError> {
        let (grant, token) = new.mint(now_ms)?;
        self.conn().execute(
            "INSERT INTO grants (id, label, server, policy, identity, token_hash, token_prefix, created_at_ms, expires_at_ms, revoked_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)",
            params![
                grant.id,
                grant.label,
                grant.server,
                grant.policy,
                grant.identity,
                hash_token(&token),
                grant.token_prefix,
                to_i64(now_ms),
                grant.expires_at_ms.map(to_i64)
            ],
        )?;
        Ok((grant, token))
    }

    /// Every grant, oldest first.
    fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {GRANT_COLS} FROM grants ORDER BY created_at_ms, id"
        ))?;
        let rows = stmt.query_map([], row_grant)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many grants exist (any status).
    fn grant_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM grants", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// One grant by id.
    fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {GRANT_COLS} FROM grants WHERE id = ?1"),
                [id],
                row_grant,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Gives a grant a new token (the old one stops working at once); returns the new token.
    fn rotate_grant(&self, id: &str) -> Result<(Grant, String), StoreError> {
        let token = new_token()?;
        let prefix: String = token.chars().take(9).collect();
        let n = self.conn().execute(
            "UPDATE grants SET token_hash = ?1, token_prefix = ?2 WHERE id = ?3",
            params![hash_token(&token), prefix, id],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok((self.grant(id)?, token))
    }

    /// Revokes a grant (idempotent: the first revocation time is kept).
    fn revoke_grant(&self, id: &str, now_ms: u64) -> Result<Grant, StoreError> {
        let n = self.conn().execute(
            "UPDATE grants SET revoked_at_ms = COALESCE(revoked_at_ms, ?1) WHERE id = ?2",
            params![to_i64(now_ms), id],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.grant(id)
    }

    /// The grant a bearer token opens, if any (whatever its status: the caller checks).
    fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        let hash = hash_token(token);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLS}, token_hash FROM grants WHERE token_hash = ?1"
        ))?;
        let found = stmt
            .query_row([&hash], |r| Ok((row_grant(r)?, r.get::<_, String>(9)?)))
            .optional()?;
        Ok(found.and_then(|(g, stored)| {
            constant_time_eq(stored.as_bytes(), hash.as_bytes()).then_some(g)
        }))
    }

    /// The newest active grant for `server` bound to `identity` (JWT identities).
    fn grant_for_identity(
        &self,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Grant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLS} FROM grants WHERE server = ?1 AND identity = ?2 AND revoked_at_ms IS NULL
             AND (expires_at_ms IS NULL OR expires_at_ms > ?3) ORDER BY created_at_ms DESC LIMIT 1"
        ))?;
        Ok(stmt
            .query_row(params![server, identity, to_i64(now_ms)], row_grant)
            .optional()?)
    }
}

impl SqliteStore {
    /// The state version, read on a connection of its own: it changes whenever a grant or
    /// a pin's definitions changed, whoever committed it (another process, such as
    /// `toolgate grants revoke`, or this store; triggers keep it). Caches of grants and
    /// pins use it to know they are stale. Blocks while the file is busy (at most a few
    /// milliseconds at a time); see [`SqliteStore::data_version_now`].
    pub fn data_version(&self) -> Result<i64, StoreError> {
        // Its connection never waits by itself (see `data_version_now`); here a busy file
        // (rare in WAL mode: recovery after a crash) is waited for as long as the store's
        // own connection would, then reported.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let version = loop {
            match self.read_version() {
                Ok(v) => break v,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(version)
    }

    /// [`SqliteStore::data_version`] without waiting: a one-row read in WAL mode (readers
    /// never wait for writers) with non-blocking file locks. `None` when the file is busy (recovery
    /// after a crash): then ask [`SqliteStore::data_version`] off the async threads.
    pub fn data_version_now(&self) -> Option<i64> {
        let v = {
            // Held for the few microseconds of one PRAGMA by whoever reads it: a lock as
            // short as any in-memory cache's.
            let conn = self.version.lock().unwrap_or_else(|e| e.into_inner());
            let mut stmt = conn.prepare_cached(VERSION_SQL).ok()?;
            stmt.query_row([], |r| r.get(0)).ok()?
        };
        Some(v)
    }

    fn read_version(&self) -> rusqlite::Result<i64> {
        let conn = self.version.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached(VERSION_SQL)?;
        stmt.query_row([], |r| r.get(0))
    }
}

impl PinStore for SqliteStore {
    /// Every pin of a server, by tool name.
    fn pins(&self, server: &str) -> Result<Vec<Pin>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PIN_COLS} FROM pins WHERE server = ?1 ORDER BY tool"
        ))?;
        let rows = stmt.query_map([server], row_pin)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the definitions an upstream just listed. The first time a server is seen every
    /// tool is pinned as it is; after that a changed definition, or a tool that was not
    /// there, is recorded as pending (held). Returns the pins of the listed tools.
    fn observe_tools(
        &self,
        server: &str,
        tools: &[(String, String, String)],
        now_ms: u64,
    ) -> Result<Observed, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changed = vec![];
        let known: i64 = tx.query_row(
            "SELECT COUNT(*) FROM pins WHERE server = ?1",
            [server],
            |r| r.get(0),
        )?;
        let first_sight = known == 0;
        let mut out = vec![];
        for (tool, hash, definition) in tools {
            let existing = tx
                .query_row(
                    &format!("SELECT {PIN_COLS} FROM pins WHERE server = ?1 AND tool = ?2"),
                    params![server, tool],
                    row_pin,
                )
                .optional()?;
            match existing {
                None if first_sight => {
                    tx.execute(
                        "INSERT INTO pins (server, tool, hash, definition, pinned_at_ms, seen_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![server, tool, hash, definition, to_i64(now_ms)],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO pins (server, tool, pending_hash, pending_definition, seen_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![server, tool, hash, definition, to_i64(now_ms)],
                    )?;
                    changed.push((tool.clone(), "new since pinning".to_string()));
                }
                Some(p) if p.hash.as_deref() == Some(hash.as_str()) => {
                    // Back to the approved definition: nothing pending any more.
                    if p.pending_hash.is_some() {
                        tx.execute("UPDATE pins SET pending_hash = NULL, pending_definition = NULL WHERE server = ?1 AND tool = ?2", params![server, tool])?;
                    }
                }
                Some(p) if p.pending_hash.as_deref() == Some(hash.as_str()) => {}
                Some(p) => {
                    tx.execute(
                        "UPDATE pins SET pending_hash = ?3, pending_definition = ?4, seen_at_ms = ?5 WHERE server = ?1 AND tool = ?2",
                        params![server, tool, hash, definition, to_i64(now_ms)],
                    )?;
                    let was = p.hash.as_deref().unwrap_or("none");
                    changed.push((
                        tool.clone(),
                        format!("definition changed: pinned {was}, now {hash}"),
                    ));
                }
            }
            if let Some(p) = tx
                .query_row(
                    &format!("SELECT {PIN_COLS} FROM pins WHERE server = ?1 AND tool = ?2"),
                    params![server, tool],
                    row_pin,
                )
                .optional()?
            {
                out.push(p);
            }
        }
        tx.commit()?;
        Ok(Observed { pins: out, changed })
    }

    fn observe_capabilities(
        &self,
        server: &str,
        caps: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO pin_capabilities (server, caps, first_seen_ms) VALUES (?1, ?2, ?3)",
            params![server, caps, to_i64(now_ms)],
        )?;
        Ok(n == 1)
    }

    /// True when the tool's definition is held (changed or new since pinning).
    fn is_held(&self, server: &str, tool: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT pending_hash IS NOT NULL FROM pins WHERE server = ?1 AND tool = ?2",
        )?;
        Ok(stmt
            .query_row(params![server, tool], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }

    /// Approves a held definition: it becomes the pin. Errors when nothing is pending.
    fn approve_pin(&self, server: &str, tool: &str, now_ms: u64) -> Result<Pin, StoreError> {
        let n = self.conn().execute(
            "UPDATE pins SET hash = pending_hash, definition = pending_definition, pinned_at_ms = ?3, pending_hash = NULL, pending_definition = NULL
             WHERE server = ?1 AND tool = ?2 AND pending_hash IS NOT NULL",
            params![server, tool, to_i64(now_ms)],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "{server}/{tool} (no change is waiting for approval)"
            )));
        }
        let conn = self.conn();
        Ok(conn.query_row(
            &format!("SELECT {PIN_COLS} FROM pins WHERE server = ?1 AND tool = ?2"),
            params![server, tool],
            row_pin,
        )?)
    }
}

impl SqliteStore {
    /// Writes counter entries.
    pub fn insert_counter_entries(
        &self,
        entries: &[(CounterKey, u64, u64, u64)],
    ) -> Result<(), StoreError> {
        self.apply_counter_batch(entries, &[])
    }

    /// Writes a batch of counter entries and deletes others, in one transaction (one
    /// commit for many calls: group commit).
    pub fn apply_counter_batch(
        &self,
        inserts: &[(CounterKey, u64, u64, u64)],
        deletes: &[u64],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO counter_entries (id, counter, scope, scope_value, at_ms, amount) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (key, at_ms, amount, id) in inserts {
                ins.execute(params![
                    to_i64(*id),
                    key.counter,
                    key.scope.as_str(),
                    key.scope_value,
                    to_i64(*at_ms),
                    to_i64(*amount)
                ])?;
            }
            let mut del = tx.prepare_cached("DELETE FROM counter_entries WHERE id = ?1")?;
            for id in deletes {
                del.execute([to_i64(*id)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes counter entries by id (a give-back).
    pub fn delete_counter_entries(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.apply_counter_batch(&[], ids)
    }

    /// Counter entries at or after `since_ms`: (key, at, amount, id).
    pub fn counter_entries_since(
        &self,
        since_ms: u64,
    ) -> Result<Vec<(CounterKey, u64, u64, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT counter, scope, scope_value, at_ms, amount, id FROM counter_entries WHERE at_ms >= ?1 ORDER BY at_ms, id",
        )?;
        let rows = stmt.query_map([to_i64(since_ms)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (counter, scope, value, at, amount, id) = row?;
            if let Some(scope) = scope_from(&scope) {
                out.push((
                    CounterKey {
                        counter,
                        scope,
                        scope_value: value,
                    },
                    at.max(0) as u64,
                    amount.max(0) as u64,
                    id.max(0) as u64,
                ));
            }
        }
        Ok(out)
    }

    /// Deletes counter entries older than `before_ms`.
    pub fn prune_counter_entries(&self, before_ms: u64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM counter_entries WHERE at_ms < ?1",
            [to_i64(before_ms)],
        )?)
    }
}
