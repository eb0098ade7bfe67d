//! Upstream connections in Redis: one hash of connections and one of registrations (field:
//! the JSON pair of names), and each consent flow its own key that expires with it
//! (`GETDEL` takes it once).

use super::*;
use crate::connections::{Connection, PendingConnection, PENDING_TTL_MS};

const CONNECTIONS: &str = "toolgate:oauth:connections";
const REGISTRATIONS: &str = "toolgate:oauth:registrations";

fn field(a: &str, b: &str) -> String {
    serde_json::json!([a, b]).to_string()
}

fn pending_key(state: &str) -> String {
    format!("toolgate:oauth:pending:{state}")
}

fn lock_key(server: &str, identity: &str) -> String {
    format!("toolgate:oauth:refreshing:{}", field(server, identity))
}

fn pending_of(server: &str, identity: &str) -> String {
    format!("toolgate:oauth:pending-of:{}", field(server, identity))
}

impl ConnectionStore for RedisState {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let doc = serde_json::to_string(c).map_err(|e| self.err(e))?;
        // The write and the new state version in one step (gateways cache connections).
        self.with_change(|r| {
            redis::pipe()
                .atomic()
                .hset(CONNECTIONS, field(&c.server, &c.identity), &doc)
                .ignore()
                .incr(VERSION, 1)
                .ignore()
                .publish(VERSION_CHANGED, 1)
                .ignore()
                .query::<()>(r)
        })?;
        Ok(())
    }

    fn connection(&self, server: &str, identity: &str) -> Result<Option<Connection>, StoreError> {
        let doc: Option<String> = self.read(|r| {
            redis::cmd("HGET")
                .arg(CONNECTIONS)
                .arg(field(server, identity))
                .query(r)
        })?;
        doc.map(|d| serde_json::from_str(&d).map_err(|e| self.err(e)))
            .transpose()
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let all: HashMap<String, String> =
            self.read(|r| redis::cmd("HGETALL").arg(CONNECTIONS).query(r))?;
        let mut out: Vec<Connection> = all
            .values()
            .map(|d| serde_json::from_str(d).map_err(|e| self.err(e)))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (&a.server, &a.identity).cmp(&(&b.server, &b.identity)));
        Ok(out)
    }

    fn delete_connection(&self, server: &str, identity: &str) -> Result<bool, StoreError> {
        // The identity's consent flow in progress goes with it.
        let flow: Option<String> = self.with(|r| {
            redis::cmd("GETDEL")
                .arg(pending_of(server, identity))
                .query(r)
        })?;
        let (n,): (i64,) = self.with_change(|r| {
            let mut p = redis::pipe();
            p.atomic();
            if let Some(state) = &flow {
                p.cmd("DEL").arg(pending_key(state)).ignore();
            }
            p.hdel(CONNECTIONS, field(server, identity))
                .incr(VERSION, 1)
                .ignore()
                .publish(VERSION_CHANGED, 1)
                .ignore()
                .query(r)
        })?;
        Ok(n > 0)
    }

    fn swap_connection(
        &self,
        expected: &Connection,
        next: Option<&Connection>,
    ) -> Result<bool, StoreError> {
        let f = field(&expected.server, &expected.identity);
        let doc = next
            .map(|c| serde_json::to_string(c).map_err(|e| self.err(e)))
            .transpose()?;
        // Optimistic: WATCH the hash, compare, write in MULTI; a write to it meanwhile
        // (any identity's) makes EXEC fail and the comparison is made again.
        self.with_change(|r| {
            redis::transaction(r, &[CONNECTIONS], |r, pipe| {
                let current: Option<String> =
                    redis::cmd("HGET").arg(CONNECTIONS).arg(&f).query(r)?;
                let same = current
                    .and_then(|d| serde_json::from_str::<Connection>(&d).ok())
                    .is_some_and(|c| c.sealed == expected.sealed);
                if !same {
                    return Ok(Some(false));
                }
                match &doc {
                    Some(d) => pipe.hset(CONNECTIONS, &f, d).ignore(),
                    None => pipe.hdel(CONNECTIONS, &f).ignore(),
                };
                pipe.incr(VERSION, 1)
                    .ignore()
                    .publish(VERSION_CHANGED, 1)
                    .ignore()
                    .query::<Option<()>>(r)
                    .map(|done| done.map(|()| true))
            })
        })
    }

    fn begin_connection(&self, p: &PendingConnection) -> Result<(), StoreError> {
        let doc = serde_json::to_string(p).map_err(|e| self.err(e))?;
        let ttl = PENDING_TTL_MS;
        // The flow, and which flow is the identity's: the one it replaces is deleted.
        let previous: Option<String> = self.with(|r| {
            redis::cmd("SET")
                .arg(pending_of(&p.server, &p.identity))
                .arg(&p.state)
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .query(r)
        })?;
        let _: () = self.with(|r| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let Some(old) = previous.as_deref().filter(|o| *o != p.state) {
                pipe.cmd("DEL").arg(pending_key(old)).ignore();
            }
            pipe.cmd("SET")
                .arg(pending_key(&p.state))
                .arg(&doc)
                .arg("PX")
                .arg(ttl)
                .ignore();
            pipe.query(r)
        })?;
        Ok(())
    }

    fn take_pending(
        &self,
        state: &str,
        now_ms: u64,
    ) -> Result<Option<PendingConnection>, StoreError> {
        let doc: Option<String> =
            self.with(|r| redis::cmd("GETDEL").arg(pending_key(state)).query(r))?;
        let p: Option<PendingConnection> = doc
            .map(|d| serde_json::from_str(&d).map_err(|e| self.err(e)))
            .transpose()?;
        Ok(p.filter(|p| now_ms < p.created_at_ms.saturating_add(PENDING_TTL_MS)))
    }

    fn put_registration(
        &self,
        server: &str,
        issuer: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let _: i64 = self.with(|r| {
            redis::cmd("HSET")
                .arg(REGISTRATIONS)
                .arg(field(server, issuer))
                .arg(hex::encode(sealed))
                .query(r)
        })?;
        Ok(())
    }

    fn lock_refresh(
        &self,
        server: &str,
        identity: &str,
        holder: &str,
        _now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        // Redis's own clock expires the lock (PX), so replicas need not agree on the time.
        let key = lock_key(server, identity);
        let taken: Option<String> = self.with(|r| {
            redis::cmd("SET")
                .arg(&key)
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query(r)
        })?;
        if taken.is_some() {
            return Ok(true);
        }
        let current: Option<String> = self.with(|r| redis::cmd("GET").arg(&key).query(r))?;
        Ok(current.as_deref() == Some(holder))
    }

    fn unlock_refresh(&self, server: &str, identity: &str, holder: &str) -> Result<(), StoreError> {
        // Deleted only if still ours (a lock that expired may be another replica's now).
        let _: i64 = self.with(|r| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
            .key(lock_key(server, identity))
            .arg(holder)
            .invoke(r)
        })?;
        Ok(())
    }

    fn registration(&self, server: &str, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let v: Option<String> = self.read(|r| {
            redis::cmd("HGET")
                .arg(REGISTRATIONS)
                .arg(field(server, issuer))
                .query(r)
        })?;
        v.map(|h| hex::decode(h).map_err(|e| self.err(e)))
            .transpose()
    }
}
