//! The audit log on SQLite: its own file (`…-audit.db`), WAL with `synchronous=FULL`, and
//! one writer thread that chains and commits many records per fsync (group commit). A
//! record is durable when its callback reports its `seq`.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use toolgate_audit::{Record, StoredRecord, Verifier, GENESIS};

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

/// The query columns, in table order after `seq`; each is checked against the sealed body.
const COLUMNS: [&str; 11] = [
    "at_ms",
    "kind",
    "grant_id",
    "grant_label",
    "identity",
    "server",
    "method",
    "tool",
    "decision",
    "rule",
    "call_seq",
];

/// Told when a record is durable: its `seq`, or why it could not be written.
pub type Appended = Box<dyn FnOnce(Result<u64, String>) + Send>;

/// A queued prune: (before, now, where to report).
type PruneJob = (u64, u64, mpsc::Sender<Result<u64, String>>);

/// The most records one commit takes.
const BATCH: usize = 4096;

enum Job {
    Append(Box<Record>, Option<Appended>),
    Prune {
        before_ms: u64,
        now_ms: u64,
        done: mpsc::Sender<Result<u64, String>>,
    },
}

/// Which records to read. Every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Grant id or label.
    pub grant: Option<String>,
    /// Identity.
    pub identity: Option<String>,
    /// Server.
    pub server: Option<String>,
    /// Tool.
    pub tool: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// The rule, exactly.
    pub rule: Option<String>,
    /// Record kind (`call`, `outcome`, `pin`, `approval`, `prune`).
    pub kind: Option<String>,
    /// JSON-RPC method.
    pub method: Option<String>,
    /// At or after (ms).
    pub since_ms: Option<u64>,
    /// Before (ms).
    pub until_ms: Option<u64>,
    /// Only records after this seq.
    pub after_seq: Option<u64>,
}

/// What `verify` found on an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The first record's seq (after the retention anchor), if any.
    pub first_seq: Option<u64>,
    /// The last record's seq, if any.
    pub last_seq: Option<u64>,
    /// The chain's head hash.
    pub head: String,
}

/// Counts for `toolgate status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `tools/call` records since the start of the span.
    pub calls: u64,
    /// Of those, denied (hidden included).
    pub denied: u64,
    /// Deny rules by how often they fired, most first.
    pub top_deny_rules: Vec<(String, u64)>,
}

/// The audit log. Reads use their own connection; all writes go through the writer thread.
pub struct AuditLog {
    path: PathBuf,
    reader: Mutex<Connection>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for AuditLog {
    /// Flushes: the writer commits what is queued, then stops.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// When a commit counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On disk (fsync) before a record is reported written: survives a power loss.
    #[default]
    Full,
    /// Written to the operating system before it is reported: survives a crash or SIGKILL
    /// of the gateway, not of the machine. About half the added latency at low load.
    Normal,
}

fn open_conn(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // With FULL, every commit reaches the disk before its records are reported durable.
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    Ok(conn)
}

impl AuditLog {
    /// The audit file that goes with a store file: `toolgate.db` → `toolgate-audit.db`.
    pub fn path_beside(store_file: &Path) -> PathBuf {
        let stem = store_file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "toolgate".into());
        store_file.with_file_name(format!("{stem}-audit.db"))
    }

    /// Opens (creating if needed) the audit log at `path`, with [`Durability::Full`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the audit log at `path` and starts its writer.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let writer_conn = open_conn(path, durability)?;
        writer_conn.execute_batch(SCHEMA)?;
        let reader = open_conn(path, durability)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("toolgate-audit".into())
            .spawn(move || writer(writer_conn, rx))
            .map_err(|e| StoreError::Random(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            reader: Mutex::new(reader),
            jobs: Some(tx),
            writer: Some(handle),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a record; `done` is told its seq once it is durable (or why it failed).
    pub fn append_then(&self, record: Record, done: Appended) {
        let failed = match &self.jobs {
            Some(jobs) => match jobs.send(Job::Append(Box::new(record), Some(done))) {
                Ok(()) => None,
                Err(mpsc::SendError(Job::Append(_, done))) => done,
                Err(_) => None,
            },
            None => Some(done),
        };
        if let Some(done) = failed {
            done(Err("the audit writer stopped".into()));
        }
    }

    /// Queues a record without waiting (it is committed with the next batch).
    pub fn append(&self, record: Record) {
        match &self.jobs {
            Some(jobs) if jobs.send(Job::Append(Box::new(record), None)).is_ok() => {}
            _ => tracing::error!("the audit writer stopped; a record was not written"),
        }
    }

    /// Appends and waits until the record is durable; returns its seq.
    pub fn append_sync(&self, record: Record) -> Result<u64, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.append_then(
            record,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .unwrap_or_else(|_| Err("the audit writer stopped".into()))
            .map_err(StoreError::Audit)
    }

    /// Deletes records older than `before_ms` (retention) without breaking verification:
    /// the hash the first kept record follows becomes the anchor, and a `prune` record
    /// says what went. Returns how many were deleted.
    pub fn prune_before(&self, before_ms: u64, now_ms: u64) -> Result<u64, StoreError> {
        let (tx, rx) = mpsc::channel();
        let job = Job::Prune {
            before_ms,
            now_ms,
            done: tx,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Audit("the audit writer stopped".into()))?
            .send(job)
            .map_err(|_| StoreError::Audit("the audit writer stopped".into()))?;
        rx.recv()
            .unwrap_or_else(|_| Err("the audit writer stopped".into()))
            .map_err(StoreError::Audit)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams the records matching `filter` in seq order (or newest first), at most
    /// `limit`, to `each`; stops early when `each` returns false. Constant memory.
    pub fn query(
        &self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        mut each: impl FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let mut sql = String::from("SELECT body FROM audit WHERE 1=1");
        let mut values: Vec<rusqlite::types::Value> = vec![];
        let mut eq = |sql: &mut String, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                values.push(v.clone().into());
                sql.push_str(&format!(" AND {col} = ?{}", values.len()));
            }
        };
        eq(&mut sql, "identity", &filter.identity);
        eq(&mut sql, "server", &filter.server);
        eq(&mut sql, "tool", &filter.tool);
        eq(&mut sql, "decision", &filter.decision);
        eq(&mut sql, "rule", &filter.rule);
        eq(&mut sql, "kind", &filter.kind);
        eq(&mut sql, "method", &filter.method);
        if let Some(g) = &filter.grant {
            values.push(g.clone().into());
            let n = values.len();
            sql.push_str(&format!(" AND (grant_id = ?{n} OR grant_label = ?{n})"));
        }
        if let Some(s) = filter.since_ms {
            values.push(to_i64(s).into());
            sql.push_str(&format!(" AND at_ms >= ?{}", values.len()));
        }
        if let Some(u) = filter.until_ms {
            values.push(to_i64(u).into());
            sql.push_str(&format!(" AND at_ms < ?{}", values.len()));
        }
        if let Some(a) = filter.after_seq {
            values.push(to_i64(a).into());
            sql.push_str(&format!(" AND seq > ?{}", values.len()));
        }
        sql.push_str(if newest_first {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        if let Some(l) = limit {
            sql.push_str(&format!(" LIMIT {}", to_i64(l)));
        }
        let conn = self.reader();
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let body: String = row.get(0)?;
            let record = Record::from_body(&body).map_err(|e| {
                StoreError::Audit(format!(
                    "a record is not readable ({e}); run `toolgate audit verify`"
                ))
            })?;
            if !each(record) {
                break;
            }
        }
        Ok(())
    }

    /// The last record's seq (0 when the log is empty).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .reader()
            .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    /// Checks the whole chain from the retention anchor (or the first record) to the head.
    /// `Ok(Err(b))` names the first bad record.
    pub fn verify(&self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
        let conn = self.reader();
        let anchor: Option<(i64, String)> = conn
            .query_row(
                "SELECT first_seq, prev_hash FROM audit_anchor WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (first, prev) = anchor
            .map(|(s, h)| (s.max(1) as u64, h))
            .unwrap_or((1, GENESIS.to_string()));
        let mut v = Verifier::new(first, &prev);
        let mut stmt = conn.prepare(&format!(
            "SELECT seq, body, hash, {} FROM audit ORDER BY seq",
            COLUMNS.join(", ")
        ))?;
        let mut rows = stmt.query([])?;
        let mut first_seq = None;
        let mut last_seq = None;
        while let Some(row) = rows.next()? {
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
            let stored = StoredRecord {
                seq,
                body: row.get(1)?,
                hash: row.get(2)?,
                columns,
            };
            if let Err(b) = v.push(&stored) {
                return Ok(Err(b));
            }
            first_seq.get_or_insert(seq);
            last_seq = Some(seq);
        }
        Ok(Ok(Verified {
            records: v.checked(),
            first_seq,
            last_seq,
            head: v.head().to_string(),
        }))
    }

    /// Call counts since `since_ms` for `toolgate status`.
    pub fn stats(&self, since_ms: u64) -> Result<Stats, StoreError> {
        let conn = self.reader();
        let since = to_i64(since_ms);
        let (calls, denied): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(decision = 'deny'), 0) FROM audit
             WHERE kind = 'call' AND method = 'tools/call' AND at_ms >= ?1",
            [since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut stmt = conn.prepare(
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

/// The chain's head: the last seq and hash, or the anchor, or the genesis.
fn head(conn: &Connection) -> rusqlite::Result<(u64, String)> {
    if let Some((seq, hash)) = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
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

fn insert(
    tx: &rusqlite::Transaction<'_>,
    record: &mut Record,
    head: &mut (u64, String),
) -> rusqlite::Result<()> {
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
fn commit_batch(conn: &mut Connection, records: &mut [Box<Record>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut h = head(&tx)?;
    for r in records.iter_mut() {
        insert(&tx, r, &mut h)?;
    }
    tx.commit()
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
        message: Some(format!(
            "retention: deleted records #{first} to #{last} (older than {before_ms} ms); the chain continues from #{} after hash {hash}",
            last + 1
        )),
        ..Record::default()
    };
    insert(&tx, &mut record, &mut h)?;
    tx.commit()?;
    Ok(n as u64)
}

/// How long a record nobody waits for (an outcome, a denial) may stay queued before it is
/// committed on its own; it usually goes sooner, with the next record somebody waits for.
const LAZY_MS: u64 = 10;

/// Takes every job waiting and commits the appends in one transaction (one fsync), then
/// tells each waiter. Records nobody waits for are held back up to [`LAZY_MS`] to share
/// the next commit, so a forwarded call costs one fsync, not two (decision and outcome).
fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut pending: Vec<(Box<Record>, Option<Appended>)> = vec![];
    let mut prunes = vec![];
    loop {
        let next = if pending.is_empty() {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(std::time::Duration::from_millis(LAZY_MS))
        };
        let mut stop = false;
        match next {
            Ok(job) => {
                fn take(
                    j: Job,
                    pending: &mut Vec<(Box<Record>, Option<Appended>)>,
                    prunes: &mut Vec<PruneJob>,
                ) {
                    match j {
                        Job::Append(r, done) => pending.push((r, done)),
                        Job::Prune {
                            before_ms,
                            now_ms,
                            done,
                        } => prunes.push((before_ms, now_ms, done)),
                    }
                }
                take(job, &mut pending, &mut prunes);
                while pending.len() < BATCH {
                    match rx.try_recv() {
                        Ok(j) => take(j, &mut pending, &mut prunes),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            stop = true;
                            break;
                        }
                    }
                }
                let urgent = pending.iter().any(|(_, d)| d.is_some());
                if !urgent && prunes.is_empty() && pending.len() < BATCH && !stop {
                    continue;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
        }
        if !pending.is_empty() {
            let (mut records, waiters): (Vec<_>, Vec<_>) =
                std::mem::take(&mut pending).into_iter().unzip();
            let result = commit_batch(&mut conn, &mut records).map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!("audit write failed: {e}");
            }
            for (r, done) in records.iter().zip(waiters) {
                if let Some(done) = done {
                    done(result.as_ref().map(|_| r.seq).map_err(Clone::clone));
                }
            }
        }
        for (before_ms, now_ms, done) in prunes.drain(..) {
            let _ = done.send(prune(&mut conn, before_ms, now_ms).map_err(|e| e.to_string()));
        }
        if stop {
            break;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use toolgate_audit::Kind;

    fn rec(at_ms: u64, tool: &str) -> Record {
        Record {
            at_ms,
            kind: Kind::Call,
            method: Some("tools/call".into()),
            tool: Some(tool.into()),
            decision: Some("allow".into()),
            ..Record::default()
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tg-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("a.db")
    }

    #[test]
    fn appends_chain_and_verify() {
        let path = temp("chain");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..50 {
            log.append(rec(1000 + i, "t"));
        }
        let seq = log.append_sync(rec(2000, "last")).unwrap();
        assert_eq!(seq, 51);
        let v = log.verify().unwrap().unwrap();
        assert_eq!(
            (v.records, v.first_seq, v.last_seq),
            (51, Some(1), Some(51))
        );
        let mut seen = vec![];
        log.query(
            &AuditFilter {
                tool: Some("last".into()),
                ..AuditFilter::default()
            },
            false,
            None,
            |r| {
                seen.push(r.seq);
                true
            },
        )
        .unwrap();
        assert_eq!(seen, vec![51]);
    }

    #[test]
    fn two_logs_on_one_file_keep_one_chain() {
        let path = temp("two");
        let a = AuditLog::open(&path).unwrap();
        let b = AuditLog::open(&path).unwrap();
        for i in 0..20 {
            a.append(rec(i, "a"));
            b.append(rec(i, "b"));
        }
        a.append_sync(rec(99, "a")).unwrap();
        b.append_sync(rec(99, "b")).unwrap();
        assert_eq!(a.verify().unwrap().unwrap().records, 42);
    }

    #[test]
    fn prune_keeps_the_chain_verifiable() {
        let path = temp("prune");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..10 {
            log.append(rec(1000 * i, "t"));
        }
        log.append_sync(rec(20_000, "t")).unwrap();
        assert_eq!(log.prune_before(5000, 30_000).unwrap(), 5);
        let v = log.verify().unwrap().unwrap();
        assert_eq!((v.first_seq, v.last_seq, v.records), (Some(6), Some(12), 7));
        log.append_sync(rec(40_000, "t")).unwrap();
        assert!(log.verify().unwrap().is_ok());
        // Deleting the first kept record is still found.
        let conn = Connection::open(&path).unwrap();
        conn.execute("DELETE FROM audit WHERE seq = 6", []).unwrap();
        assert_eq!(log.verify().unwrap().unwrap_err().seq, 7);
    }
}
