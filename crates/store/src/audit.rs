//! The audit log on SQLite: its own file (`…-audit.db`), WAL with `synchronous=FULL`, and
//! one writer thread that chains and commits many records per fsync (group commit). A
//! record is durable when its callback reports its `seq`.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use toolgate_audit::{Record, StoredRecord, Verifier};

use crate::audit_sqlite::SqliteBackend;
use crate::StoreError;

/// Where records are kept: SQLite (`audit_sqlite`) or PostgreSQL (`audit_pg`). The writer
/// thread owns one; reads use another.
pub(crate) trait Backend: Send {
    /// Chains and commits `records` in one transaction (setting their `seq` and
    /// `prev_hash` from the head inside it).
    fn commit(&mut self, records: &mut [Box<Record>]) -> Result<(), String>;
    /// Retention: deletes records older than `before_ms`, keeping the chain verifiable.
    fn prune(&mut self, before_ms: u64, now_ms: u64) -> Result<u64, String>;
    /// Streams matching records.
    fn query(
        &mut self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError>;
    /// The last seq (0 when empty).
    fn last_seq(&mut self) -> Result<u64, StoreError>;
    /// Checks the chain.
    fn verify(&mut self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError>;
    /// Counts for `status`.
    fn stats(&mut self, since_ms: u64) -> Result<Stats, StoreError>;
}

/// The query columns, in table order after `seq`; each is checked against the sealed body.
pub(crate) const COLUMNS: [&str; 11] = [
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

/// A query parameter.
pub(crate) enum Param {
    /// A text column.
    Text(String),
    /// An integer column.
    Int(i64),
}

/// The WHERE/ORDER/LIMIT of a query, with `placeholder(n)` writing the n-th parameter.
pub(crate) fn filter_sql(
    filter: &AuditFilter,
    newest_first: bool,
    limit: Option<u64>,
    placeholder: fn(usize) -> String,
) -> (String, Vec<Param>) {
    let mut sql = String::from("SELECT body FROM audit WHERE 1=1");
    let mut values: Vec<Param> = vec![];
    for (col, v) in [
        ("identity", &filter.identity),
        ("server", &filter.server),
        ("tool", &filter.tool),
        ("decision", &filter.decision),
        ("rule", &filter.rule),
        ("kind", &filter.kind),
        ("method", &filter.method),
    ] {
        if let Some(v) = v {
            values.push(Param::Text(v.clone()));
            sql.push_str(&format!(" AND {col} = {}", placeholder(values.len())));
        }
    }
    if let Some(g) = &filter.grant {
        values.push(Param::Text(g.clone()));
        let p = placeholder(values.len());
        values.push(Param::Text(g.clone()));
        let q = placeholder(values.len());
        sql.push_str(&format!(" AND (grant_id = {p} OR grant_label = {q})"));
    }
    for (cond, v) in [
        ("at_ms >=", filter.since_ms),
        ("at_ms <", filter.until_ms),
        ("seq >", filter.after_seq),
    ] {
        if let Some(v) = v {
            values.push(Param::Int(to_i64(v)));
            sql.push_str(&format!(" AND {cond} {}", placeholder(values.len())));
        }
    }
    sql.push_str(if newest_first {
        " ORDER BY seq DESC"
    } else {
        " ORDER BY seq"
    });
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {}", to_i64(l)));
    }
    (sql, values)
}

/// Parses a stored body for a reader.
pub(crate) fn readable(body: &str) -> Result<Record, StoreError> {
    Record::from_body(body).map_err(|e| {
        StoreError::Audit(format!(
            "a record is not readable ({e}); run `toolgate audit verify`"
        ))
    })
}

/// Walks stored records through a [`Verifier`] that starts at (`first`, `prev`).
pub(crate) fn verify_rows(
    first: u64,
    prev: &str,
    rows: impl Iterator<Item = Result<StoredRecord, StoreError>>,
) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
    let mut v = Verifier::new(first, prev);
    let mut first_seq = None;
    let mut last_seq = None;
    for row in rows {
        let stored = row?;
        if let Err(b) = v.push(&stored) {
            return Ok(Err(b));
        }
        first_seq.get_or_insert(stored.seq);
        last_seq = Some(stored.seq);
    }
    Ok(Ok(Verified {
        records: v.checked(),
        first_seq,
        last_seq,
        head: v.head().to_string(),
    }))
}

/// The message of a `prune` record.
pub(crate) fn prune_message(first: i64, last: i64, before_ms: u64, hash: &str) -> String {
    format!(
        "retention: deleted records #{first} to #{last} (older than {before_ms} ms); the chain continues from #{} after hash {hash}",
        last + 1
    )
}

/// Told when a record is durable: its `seq`, or why it could not be written.
pub type Appended = Box<dyn FnOnce(Result<u64, String>) + Send>;

/// The most records one commit takes.
const BATCH: usize = 4096;

/// The writer's queue. Queuing costs a lock; the writer is woken only when somebody waits
/// (a decision record, a prune), when the queue was empty (to start the [`LAZY_MS`]
/// clock), or when a batch is full: a record nobody waits for costs no wake-up.
#[derive(Default)]
struct Queue {
    state: Mutex<Queued>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Queued {
    jobs: Vec<Job>,
    /// Somebody waits for a job in `jobs`.
    urgent: bool,
    /// When the oldest job in `jobs` was queued.
    since: Option<std::time::Instant>,
    /// The log is being dropped: commit what is queued and stop.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`; gives it back when the writer has stopped.
    fn push(&self, job: Job) -> Result<(), Job> {
        let urgent = match &job {
            Job::Append(_, done) => done.is_some(),
            Job::Prune { .. } => true,
        };
        let mut q = self.lock();
        if q.closed {
            return Err(job);
        }
        q.jobs.push(job);
        let first = q.since.is_none();
        if first {
            q.since = Some(std::time::Instant::now());
        }
        let wake = (urgent && !q.urgent) || first || q.jobs.len() == BATCH;
        q.urgent |= urgent;
        drop(q);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

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
    /// Record kind (`call`, `outcome`, `pin`, `approval`, `admin`, `prune`).
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
    /// Used from a thread of its own (see [`AuditLog::read`]): the PostgreSQL client runs
    /// its own runtime, which must not be driven from inside the gateway's.
    reader: Mutex<Option<Box<dyn Backend>>>,
    queue: Arc<Queue>,
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
    /// Flushes: the writer commits what is queued, then stops. The reader is dropped on a
    /// plain thread too (a PostgreSQL client may not be dropped inside an async runtime).
    fn drop(&mut self) {
        self.queue.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = std::thread::spawn(move || drop(reader)).join();
    }
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub use toolgate_config::{Durability, DEFAULT_FLUSH_MS};

impl AuditLog {
    /// The audit file that goes with a store file: `toolgate.db` → `toolgate-audit.db`.
    pub fn path_beside(store_file: &Path) -> PathBuf {
        toolgate_config::audit_path_beside(store_file)
    }

    /// Opens (creating if needed) the audit log at `path`, with [`Durability::Full`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the audit log at `path` and starts its writer.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let writer = SqliteBackend::open(path, durability, true)?;
        let reader = SqliteBackend::open(path, durability, false)?;
        Self::start(path.to_path_buf(), Box::new(writer), Box::new(reader))
    }

    /// An audit log in this process's memory, for tests (the same writer thread, chain and
    /// verification; no pruning), and the switch that makes every write and read fail
    /// while it is on.
    pub fn in_memory() -> Result<(Self, crate::Outage), StoreError> {
        let outage = crate::Outage::default();
        let backend = crate::audit_memory::MemoryBackend::new(outage.clone());
        let log = Self::start(
            PathBuf::from("(memory)"),
            Box::new(backend.clone()),
            Box::new(backend),
        )?;
        Ok((log, outage))
    }

    /// Opens the audit log in PostgreSQL (`postgres://…`), creating its tables if needed.
    /// Several gateways may share it: each commit takes a transaction-scoped advisory
    /// lock, so all their records form one chain.
    pub fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let owned = url.to_string();
        let (writer, reader) = std::thread::spawn(move || {
            Ok::<_, StoreError>((
                crate::audit_pg::PgBackend::connect(&owned, true)?,
                crate::audit_pg::PgBackend::connect(&owned, false)?,
            ))
        })
        .join()
        .map_err(|_| StoreError::Audit("the PostgreSQL connection thread failed".into()))??;
        Self::start(
            PathBuf::from(crate::redact_url(url)),
            Box::new(writer),
            Box::new(reader),
        )
    }

    fn start(
        path: PathBuf,
        writer_backend: Box<dyn Backend>,
        reader: Box<dyn Backend>,
    ) -> Result<Self, StoreError> {
        let queue = Arc::new(Queue::default());
        let theirs = queue.clone();
        let handle = std::thread::Builder::new()
            .name("toolgate-audit".into())
            .spawn(move || writer(writer_backend, &theirs))
            .map_err(|e| StoreError::Random(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog {
            path,
            reader: Mutex::new(Some(reader)),
            queue,
            writer: Some(handle),
        })
    }

    /// Where it is: the file, or the PostgreSQL URL without its password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a record; `done` is told its seq once it is durable (or why it failed).
    pub fn append_then(&self, record: Record, done: Appended) {
        let failed = match self.queue.push(Job::Append(Box::new(record), Some(done))) {
            Ok(()) => None,
            Err(Job::Append(_, done)) => done,
            Err(_) => None,
        };
        if let Some(done) = failed {
            done(Err("the audit writer stopped".into()));
        }
    }

    /// Queues a record without waiting (it is committed with the next batch).
    pub fn append(&self, record: Record) {
        if self
            .queue
            .push(Job::Append(Box::new(record), None))
            .is_err()
        {
            tracing::error!("the audit writer stopped; a record was not written");
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
        self.queue
            .push(job)
            .map_err(|_| StoreError::Audit("the audit writer stopped".into()))?;
        rx.recv()
            .unwrap_or_else(|_| Err("the audit writer stopped".into()))
            .map_err(StoreError::Audit)
    }

    /// Runs a read on a thread of its own (safe from inside an async runtime).
    fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut guard = self.reader.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_mut() {
                    Some(b) => f(b.as_mut()),
                    None => Err(StoreError::Audit("the audit log is closed".into())),
                }
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Audit("an audit read failed".into())))
        })
    }

    /// Streams the records matching `filter` in seq order (or newest first), at most
    /// `limit`, to `each`; stops early when `each` returns false. Constant memory.
    pub fn query(
        &self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        mut each: impl FnMut(Record) -> bool + Send,
    ) -> Result<(), StoreError> {
        self.read(|b| b.query(filter, newest_first, limit, &mut each))
    }

    /// Whether the log answers now (readiness): a read of its head.
    pub fn check(&self) -> Result<(), StoreError> {
        self.last_seq().map(|_| ())
    }

    /// The last record's seq (0 when the log is empty).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.read(|b| b.last_seq())
    }

    /// Checks the whole chain from the retention anchor (or the first record) to the head.
    /// `Ok(Err(b))` names the first bad record.
    pub fn verify(&self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
        self.read(|b| b.verify())
    }

    /// Call counts since `since_ms` for `toolgate status`.
    pub fn stats(&self, since_ms: u64) -> Result<Stats, StoreError> {
        self.read(|b| b.stats(since_ms))
    }
}

/// How long a record nobody waits for (an outcome, a denial) may stay queued before it is
/// committed on its own; it usually goes sooner, with the next record somebody waits for.
const LAZY_MS: u64 = 10;

/// Takes every job waiting and commits the appends in one transaction (one fsync), then
/// tells each waiter. Records nobody waits for are held back up to [`LAZY_MS`] to share
/// the next commit, so a forwarded call costs one commit, not two (decision and outcome).
fn writer(mut backend: Box<dyn Backend>, queue: &Queue) {
    loop {
        let (jobs, closed) = {
            let mut q = queue.lock();
            loop {
                if q.closed || q.urgent || q.jobs.len() >= BATCH {
                    break;
                }
                match q.since {
                    None => q = queue.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                    Some(t) => {
                        let left =
                            std::time::Duration::from_millis(LAZY_MS).saturating_sub(t.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        q = queue
                            .wake
                            .wait_timeout(q, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            q.urgent = false;
            q.since = None;
            (std::mem::take(&mut q.jobs), q.closed)
        };
        let mut pending = Vec::with_capacity(jobs.len());
        let mut prunes = vec![];
        for j in jobs {
            match j {
                Job::Append(r, done) => pending.push((r, done)),
                Job::Prune {
                    before_ms,
                    now_ms,
                    done,
                } => prunes.push((before_ms, now_ms, done)),
            }
        }
        if !pending.is_empty() {
            let (mut records, waiters): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
            let result = backend.commit(&mut records);
            if let Err(e) = &result {
                tracing::error!("audit write failed: {e}");
            }
            for (r, done) in records.iter().zip(waiters) {
                if let Some(done) = done {
                    done(result.as_ref().map(|_| r.seq).map_err(Clone::clone));
                }
            }
        }
        for (before_ms, now_ms, done) in prunes {
            let _ = done.send(backend.prune(before_ms, now_ms));
        }
        if closed && queue.lock().jobs.is_empty() {
            break;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rusqlite::Connection;
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
