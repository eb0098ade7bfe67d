//! Upstream connections (issue 23, the store's side): each identity's token set at a server
//! toolgate reaches as an OAuth client, the consent flows begun and not yet finished, and
//! toolgate's client registrations. Everything secret arrives here sealed (see
//! `toolgate-oauth`'s `seal`): the store never holds a token it could read.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::SqliteStore;
use crate::state::ConnectionStore;
use crate::StoreError;

/// How long a consent flow may take, from its start to its callback.
pub const PENDING_TTL_MS: u64 = 10 * 60 * 1000;

/// The tables (created with the store's schema).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_connections (
    server TEXT NOT NULL,
    identity TEXT NOT NULL,
    sealed BLOB NOT NULL,
    subject TEXT,
    client_id TEXT NOT NULL,
    expires_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (server, identity)
);
CREATE TABLE IF NOT EXISTS oauth_pending (
    state TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    identity TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oauth_pending_who ON oauth_pending(server, identity);
CREATE TABLE IF NOT EXISTS oauth_locks (
    server TEXT NOT NULL,
    identity TEXT NOT NULL,
    holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (server, identity)
);
CREATE TABLE IF NOT EXISTS oauth_registrations (
    server TEXT NOT NULL,
    issuer TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (server, issuer)
);
";

/// One identity's connection to a server toolgate reaches as an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// The server (config name).
    pub server: String,
    /// The identity (a grant's identity, or a JWT subject).
    pub identity: String,
    /// The token set, sealed: unreadable without toolgate's token key.
    #[serde(with = "hex_bytes")]
    pub sealed: Vec<u8>,
    /// Who the server knows the identity as (the token's subject), when known.
    pub subject: Option<String>,
    /// toolgate's client id at the server's authorization server.
    pub client_id: String,
    /// When the access token expires.
    pub expires_at_ms: Option<u64>,
    /// When it was connected or last refreshed.
    pub updated_at_ms: u64,
}

/// A consent flow begun and not finished: found once, by its `state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingConnection {
    /// The unguessable `state` of the authorization request.
    pub state: String,
    /// The server.
    pub server: String,
    /// The identity being connected.
    pub identity: String,
    /// What the callback needs (the PKCE verifier, the client, the endpoints), sealed.
    #[serde(with = "hex_bytes")]
    pub sealed: Vec<u8>,
    /// When it began.
    pub created_at_ms: u64,
}

/// Bytes as hex in JSON documents (the Redis and memory backends).
mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn connection_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Connection> {
    Ok(Connection {
        server: r.get(0)?,
        identity: r.get(1)?,
        sealed: r.get(2)?,
        subject: r.get(3)?,
        client_id: r.get(4)?,
        expires_at_ms: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        updated_at_ms: r.get::<_, i64>(6)?.max(0) as u64,
    })
}

const CONNECTION_COLUMNS: &str =
    "server, identity, sealed, subject, client_id, expires_at_ms, updated_at_ms";

impl ConnectionStore for SqliteStore {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO oauth_connections (server, identity, sealed, subject, client_id, expires_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![c.server, c.identity, c.sealed, c.subject, c.client_id, c.expires_at_ms.map(ms), ms(c.updated_at_ms)],
        )?;
        Ok(())
    }

    fn connection(&self, server: &str, identity: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {CONNECTION_COLUMNS} FROM oauth_connections WHERE server = ?1 AND identity = ?2"),
                params![server, identity],
                connection_row,
            )
            .optional()?)
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM oauth_connections ORDER BY server, identity"
        ))?;
        let rows = stmt.query_map([], connection_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_connection(&self, server: &str, identity: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM oauth_connections WHERE server = ?1 AND identity = ?2",
            params![server, identity],
        )?;
        tx.execute(
            "DELETE FROM oauth_pending WHERE server = ?1 AND identity = ?2",
            params![server, identity],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn swap_connection(
        &self,
        expected: &Connection,
        next: Option<&Connection>,
    ) -> Result<bool, StoreError> {
        let n = match next {
            Some(c) => self.conn().execute(
                "UPDATE oauth_connections SET sealed = ?3, subject = ?4, client_id = ?5, expires_at_ms = ?6, updated_at_ms = ?7 WHERE server = ?1 AND identity = ?2 AND sealed = ?8",
                params![expected.server, expected.identity, c.sealed, c.subject, c.client_id, c.expires_at_ms.map(ms), ms(c.updated_at_ms), expected.sealed],
            )?,
            None => self.conn().execute(
                "DELETE FROM oauth_connections WHERE server = ?1 AND identity = ?2 AND sealed = ?3",
                params![expected.server, expected.identity, expected.sealed],
            )?,
        };
        Ok(n > 0)
    }

    fn begin_connection(&self, p: &PendingConnection) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // One flow per server and identity; flows past their time are dropped.
        tx.execute(
            "DELETE FROM oauth_pending WHERE (server = ?1 AND identity = ?2) OR created_at_ms < ?3",
            params![
                p.server,
                p.identity,
                ms(p.created_at_ms.saturating_sub(PENDING_TTL_MS))
            ],
        )?;
        tx.execute(
            "INSERT INTO oauth_pending (state, server, identity, sealed, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![p.state, p.server, p.identity, p.sealed, ms(p.created_at_ms)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn take_pending(
        &self,
        state: &str,
        now_ms: u64,
    ) -> Result<Option<PendingConnection>, StoreError> {
        let p = self
            .conn()
            .query_row(
                "DELETE FROM oauth_pending WHERE state = ?1 RETURNING state, server, identity, sealed, created_at_ms",
                params![state],
                |r| {
                    Ok(PendingConnection {
                        state: r.get(0)?,
                        server: r.get(1)?,
                        identity: r.get(2)?,
                        sealed: r.get(3)?,
                        created_at_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                },
            )
            .optional()?;
        Ok(p.filter(|p| now_ms < p.created_at_ms.saturating_add(PENDING_TTL_MS)))
    }

    fn put_registration(
        &self,
        server: &str,
        issuer: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO oauth_registrations (server, issuer, sealed) VALUES (?1, ?2, ?3)",
            params![server, issuer, sealed],
        )?;
        Ok(())
    }

    fn lock_refresh(
        &self,
        server: &str,
        identity: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO oauth_locks (server, identity, holder, until_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (server, identity) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE oauth_locks.until_ms <= ?5 OR oauth_locks.holder = excluded.holder",
            params![server, identity, holder, ms(now_ms.saturating_add(ttl_ms)), ms(now_ms)],
        )?;
        Ok(n > 0)
    }

    fn unlock_refresh(&self, server: &str, identity: &str, holder: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM oauth_locks WHERE server = ?1 AND identity = ?2 AND holder = ?3",
            params![server, identity, holder],
        )?;
        Ok(())
    }

    fn registration(&self, server: &str, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT sealed FROM oauth_registrations WHERE server = ?1 AND issuer = ?2",
                params![server, issuer],
                |r| r.get(0),
            )
            .optional()?)
    }
}
