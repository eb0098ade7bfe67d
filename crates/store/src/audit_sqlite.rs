//! The audit log's SQLite backend: its own file (`…-audit.db`), WAL with
//! `synchronous=FULL` (or NORMAL), a write transaction per batch.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use toolgate_audit::{Record, StoredRecord, GENESIS};

use crate::audit::{
    filter_sql, prune_message, readable, to_i64, verify_rows, AuditFilter, Backend, Durability,
    Param, Stats, Verified, COLUMNS,
};
use crate::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    grant_id TEXT,
    grant_label TEXT,
    identity TEXT,
    server TEXT,
    method TEXT,
    tool TEXT,
    decision TEXT,
    rule TEXT,
    call_seq INTEGER,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at_ms);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    first_seq INTEGER NOT NULL,
    prev_hash TEXT NOT NULL
);
";

fn open_conn(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // With FULL, every commit reaches the disk before its records are reported durable.
    // With Batched, the flusher (below) takes the fsync off the commit.
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Batched { .. } | Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    Ok(conn)
}

/// One connection to the audit file.
pub(crate) struct SqliteBackend {
    conn: Connection,
    /// With [`Durability::Batched`], on the writer's connection: fsyncs what it committed.
    flusher: Option<Flusher>,
}

/// The state the writer and the flusher thread share.
#[derive(Default)]
struct FlushState {
    /// Commits not yet fsynced.
    dirty: bool,
    /// The backend is closing: flush once more and stop.
    stop: bool,
}

/// Fsyncs the log's WAL file at most `flush_ms` after a commit, on its own thread: the
/// bounded window of [`Durability::Batched`]. SQLite (`synchronous=NORMAL`) writes each
/// commit to the WAL file before the commit returns, so a record is in the operating
/// system before its call is forwarded; this thread puts it on the disk soon after.
struct Flusher {
    shared: std::sync::Arc<(std::sync::Mutex<FlushState>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(db: &Path, flush_ms: u64) -> Result<Self, StoreError> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let shared = std::sync::Arc::new((
            std::sync::Mutex::new(FlushState::default()),
            std::sync::Condvar::new(),
        ));
        let theirs = shared.clone();
        let every = Duration::from_millis(flush_ms.max(1));
        let thread = std::thread::Builder::new()
            .name("toolgate-audit-flush".into())
            .spawn(move || flush_loop(&wal, &theirs, every))
            .map_err(|e| StoreError::Audit(format!("cannot start the audit flusher: {e}")))?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// Says that a commit wants flushing.
    fn committed(&self) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !s.dirty {
            s.dirty = true;
            cv.notify_one();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flush_loop(
    wal: &Path,
    shared: &(std::sync::Mutex<FlushState>, std::sync::Condvar),
    every: Duration,
) {
    let (lock, cv) = shared;
    let mut file: Option<std::fs::File> = None;
    let mut last = std::time::Instant::now();
    loop {
        let stop = {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !s.dirty && !s.stop {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.stop
        };
        if !stop {
            // At most one fsync per interval: commits meanwhile share it.
            std::thread::sleep(every.saturating_sub(last.elapsed()));
        }
        lock.lock().unwrap_or_else(|e| e.into_inner()).dirty = false;
        last = std::time::Instant::now();
        if file.is_none() {
            file = std::fs::OpenOptions::new().read(true).open(wal).ok();
        }
        if let Some(f) = &file {
            if let Err(e) = f.sync_data() {
                tracing::error!("audit log: fsync of {} failed: {e}", wal.display());
                file = None;
            }
        }
        if stop {
            return;
        }
    }
}

impl SqliteBackend {
    /// Opens the file; `create` makes the tables.
    pub(crate) fn open(
        path: &Path,
        durability: Durability,
        create: bool,
    ) -> Result<Self, StoreError> {
        let conn = open_conn(path, durability)?;
        if create {
            conn.execute_batch(SCHEMA)?;
        }
        let flusher = match durability {
            Durability::Batched { flush_ms } if create => Some(Flusher::start(path, flush_ms)?),
            _ => None,
        };
        Ok(SqliteBackend { conn, flusher })
    }
}

impl Backend for SqliteBackend {
    fn commit(&mut self, records: &mut [Box<Record>]) -> Result<(), String> {
        commit_batch(&mut self.conn, records).map_err(|e| e.to_string())?;
        if let Some(f) = &self.flusher {
            f.committed();
        }
        Ok(())
    }

    fn prune(&mut self, before_ms: u64, now_ms: u64) -> Result<u64, String> {
        prune(&mut self.conn, before_ms, now_ms).map_err(|e| e.to_string())
    }

    fn query(
        &mut self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let (sql, values) = filter_sql(filter, newest_first, limit, |n| format!("?{n}"));
        let values: Vec<rusqlite::types::Value> = values
            .into_iter()
            .map(|p| match p {
                Param::Text(t) => t.into(),
                Param::Int(i) => i.into(),
            })
            .collect();
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let body: String = row.get(0)?;
            if !each(readable(&body)?) {
                break;
            }
        }
        Ok(())
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    fn verify(&mut self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
        let anchor: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT first_seq, prev_hash FROM audit_anchor WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (first, prev) = anchor
            .map(|(s, h)| (s.max(1) as u64, h))
            .unwrap_or((1, GENESIS.to_string()));
        let mut stmt = self.conn.prepare(&format!(
            "SELECT seq, body, hash, {} FROM audit ORDER BY seq",
            COLUMNS.join(", ")
        ))?;
        let mut rows = stmt.query([])?;
        let iter = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(stored(row)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        });
        verify_rows(first, &prev, iter)
    }

    fn stats(&mut self, since_ms: u64) -> Result<Stats, StoreError> {
        let since = to_i64(since_ms);
        let (calls, denied): (i64, i64) = self.conn.query_row(
            // A held call has two records (held, then its verdict): count the verdict.
            "SELECT COUNT(*), COALESCE(SUM(decision = 'deny'), 0) FROM audit
             WHERE kind = 'call' AND method = 'tools/call' AND at_ms >= ?1
               AND COALESCE(decision, '') <> 'require_approval'",
            [since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut stmt = self.conn.prepare(
            "SELECT rule, COUNT(*) AS n FROM audit
             WHERE kind = 'call' AND method = 'tools/call' AND decision = 'deny' AND at_ms >= ?1
             GROUP BY rule ORDER BY n DESC, rule LIMIT 5",
        )?;
        let top = stmt
            .query_map([since], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stats {
            calls: calls.max(0) as u64,
            denied: denied.max(0) as u64,
            top_deny_rules: top,
        })
    }
}

fn stored(row: &rusqlite::Row<'_>) -> Result<StoredRecord, StoreError> {
    let seq = row.get::<_, i64>(0)?.max(0) as u64;
    let mut columns = Vec::with_capacity(COLUMNS.len());
    for (i, name) in COLUMNS.iter().enumerate() {
        let v: rusqlite::types::Value = row.get(i + 3)?;
        let text = match v {
            rusqlite::types::Value::Null => None,
            rusqlite::types::Value::Integer(n) => Some(n.to_string()),
            rusqlite::types::Value::Real(f) => Some(f.to_string()),
            rusqlite::types::Value::Text(t) => Some(t),
            rusqlite::types::Value::Blob(b) => Some(String::from_utf8_lossy(&b).into()),
        };
        columns.push((*name, text));
    }
    Ok(StoredRecord {
        seq,
        body: row.get(1)?,
        hash: row.get(2)?,
        columns,
    })
}

/// The chain's head: the last seq and hash, or the anchor, or the genesis.
fn head(conn: &Connection) -> rusqlite::Result<(u64, String)> {
    if let Some((seq, hash)) = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()?
    {
        return Ok((seq.max(0) as u64, hash));
    }
    let anchor = conn
        .query_row(
            "SELECT first_seq, prev_hash FROM audit_anchor WHERE id = 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?;
    Ok(match anchor {
        Some((first, hash)) => ((first.max(1) - 1) as u64, hash),
        None => (0, GENESIS.to_string()),
    })
}

fn insert(tx: &Connection, record: &mut Record, head: &mut (u64, String)) -> rusqlite::Result<()> {
    record.seq = head.0 + 1;
    record.prev_hash = head.1.clone();
    let body = record.canonical();
    let hash = toolgate_audit::record::hash_body(&body);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit (seq, at_ms, kind, grant_id, grant_label, identity, server, method, tool, decision, rule, call_seq, body, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    stmt.execute(params![
        to_i64(record.seq),
        to_i64(record.at_ms),
        record.kind.as_str(),
        record.grant_id,
        record.grant_label,
        record.identity,
        record.server,
        record.method,
        record.tool,
        record.decision,
        record.rule,
        record.call_seq.map(to_i64),
        body,
        hash
    ])?;
    *head = (record.seq, hash);
    Ok(())
}

/// Commits one batch of appends; returns each record's seq.
/// One write transaction for a batch; its statements are prepared once per connection
/// (this runs for every group commit).
fn commit_batch(conn: &mut Connection, records: &mut [Box<Record>]) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let done = (|| {
        let mut h = head(conn)?;
        for r in records.iter_mut() {
            insert(conn, r, &mut h)?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

fn prune(conn: &mut Connection, before_ms: u64, now_ms: u64) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last_old: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit WHERE seq = (SELECT MAX(seq) FROM audit WHERE at_ms < ?1)",
            [to_i64(before_ms)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((last, hash)) = last_old else {
        return Ok(0);
    };
    let first: i64 = tx.query_row("SELECT MIN(seq) FROM audit", [], |r| r.get(0))?;
    let n = tx.execute("DELETE FROM audit WHERE seq <= ?1", [last])?;
    tx.execute(
        "INSERT INTO audit_anchor (id, first_seq, prev_hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET first_seq = excluded.first_seq, prev_hash = excluded.prev_hash",
        params![last + 1, hash],
    )?;
    let mut h = head(&tx)?;
    let mut record = Record {
        at_ms: now_ms,
        kind: toolgate_audit::Kind::Prune,
        message: Some(prune_message(first, last, before_ms, &hash)),
        ..Record::default()
    };
    insert(&tx, &mut record, &mut h)?;
    tx.commit()?;
    Ok(n as u64)
}
