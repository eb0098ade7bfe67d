//! The audit log's PostgreSQL backend (`[audit] store = "postgres://…"`), shared by gateway
//! replicas: each batch is one transaction that first takes a transaction-scoped advisory
//! lock, reads the chain's head, and appends; so the records of every replica form one
//! chain and `audit verify` checks them all. Commits wait for the WAL flush (PostgreSQL's
//! default `synchronous_commit = on`).

use postgres::{Client, NoTls};
use toolgate_audit::{Kind, Record, StoredRecord, GENESIS};

use crate::audit::{
    filter_sql, prune_message, readable, to_i64, verify_rows, AuditFilter, Backend, Param, Stats,
    Verified, COLUMNS,
};
use crate::StoreError;

/// The advisory lock key every writer takes around an append (`'tgaudit'` in ASCII).
const LOCK: i64 = 0x0074_6761_7564_6974;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    grant_id TEXT,
    grant_label TEXT,
    identity TEXT,
    server TEXT,
    method TEXT,
    tool TEXT,
    decision TEXT,
    rule TEXT,
    call_seq BIGINT,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at_ms);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INT PRIMARY KEY CHECK (id = 1),
    first_seq BIGINT NOT NULL,
    prev_hash TEXT NOT NULL
);
";

fn pg(e: postgres::Error) -> StoreError {
    StoreError::Audit(format!("postgres: {e}"))
}

/// A connection that cannot hang: connecting gives up after 5 s, a dead peer is noticed
/// within about 20 s (TCP keepalives and `tcp_user_timeout`), and a statement runs at most
/// 15 s. A call waiting on the audit log is refused rather than held for minutes.
fn open(url: &str) -> Result<Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config
        .connect_timeout(std::time::Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .tcp_user_timeout(std::time::Duration::from_secs(20))
        .options("-c statement_timeout=15000");
    config.connect(NoTls)
}

/// One connection, made again when it was lost (PostgreSQL restarted, the connection
/// was killed): the operation that found it dead fails (the call is refused), the next one
/// reconnects.
pub(crate) struct PgBackend {
    client: Client,
    url: String,
}

impl PgBackend {
    /// Connects; `create` makes the tables (under the advisory lock, so replicas starting
    /// together do not race).
    pub(crate) fn connect(url: &str, create: bool) -> Result<Self, StoreError> {
        let mut client = open(url).map_err(|e| {
            StoreError::Audit(format!("cannot connect to {}: {e}", crate::redact_url(url)))
        })?;
        if create {
            let mut tx = client.transaction().map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .map_err(pg)?;
            tx.batch_execute(SCHEMA).map_err(pg)?;
            tx.commit().map_err(pg)?;
        }
        Ok(PgBackend {
            client,
            url: url.to_string(),
        })
    }

    /// The connection, made again if it was closed.
    fn live(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            self.client = open(&self.url).map_err(|e| {
                StoreError::Audit(format!(
                    "cannot reconnect to {}: {e}",
                    crate::redact_url(&self.url)
                ))
            })?;
            tracing::warn!("audit log: reconnected to {}", crate::redact_url(&self.url));
        }
        Ok(&mut self.client)
    }
}

fn head(tx: &mut postgres::Transaction<'_>) -> Result<(u64, String), postgres::Error> {
    if let Some(row) = tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
        return Ok((row.get::<_, i64>(0).max(0) as u64, row.get(1)));
    }
    Ok(
        match tx.query_opt(
            "SELECT first_seq, prev_hash FROM audit_anchor WHERE id = 1",
            &[],
        )? {
            Some(row) => ((row.get::<_, i64>(0).max(1) - 1) as u64, row.get(1)),
            None => (0, GENESIS.to_string()),
        },
    )
}

fn insert(
    tx: &mut postgres::Transaction<'_>,
    stmt: &postgres::Statement,
    record: &mut Record,
    head: &mut (u64, String),
) -> Result<(), postgres::Error> {
    record.seq = head.0 + 1;
    record.prev_hash = head.1.clone();
    let body = record.canonical();
    let hash = toolgate_audit::record::hash_body(&body);
    tx.execute(
        stmt,
        &[
            &to_i64(record.seq),
            &to_i64(record.at_ms),
            &record.kind.as_str(),
            &record.grant_id,
            &record.grant_label,
            &record.identity,
            &record.server,
            &record.method,
            &record.tool,
            &record.decision,
            &record.rule,
            &record.call_seq.map(to_i64),
            &body,
            &hash,
        ],
    )?;
    *head = (record.seq, hash);
    Ok(())
}

const INSERT: &str = "INSERT INTO audit (seq, at_ms, kind, grant_id, grant_label, identity, server, method, tool, decision, rule, call_seq, body, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

impl Backend for PgBackend {
    fn commit(&mut self, records: &mut [Box<Record>]) -> Result<(), String> {
        let run =
            |client: &mut Client, records: &mut [Box<Record>]| -> Result<(), postgres::Error> {
                let mut tx = client.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
                let mut h = head(&mut tx)?;
                let stmt = tx.prepare(INSERT)?;
                for r in records.iter_mut() {
                    insert(&mut tx, &stmt, r, &mut h)?;
                }
                tx.commit()
            };
        let client = self.live().map_err(|e| e.to_string())?;
        run(client, records).map_err(|e| format!("postgres: {e}"))
    }

    fn prune(&mut self, before_ms: u64, now_ms: u64) -> Result<u64, String> {
        let run = |client: &mut Client| -> Result<u64, postgres::Error> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
            let Some(last) = tx.query_opt(
                "SELECT seq, hash FROM audit WHERE seq = (SELECT MAX(seq) FROM audit WHERE at_ms < $1)",
                &[&to_i64(before_ms)],
            )?
            else {
                return Ok(0);
            };
            let (last, hash): (i64, String) = (last.get(0), last.get(1));
            let first: i64 = tx.query_one("SELECT MIN(seq) FROM audit", &[])?.get(0);
            let n = tx.execute("DELETE FROM audit WHERE seq <= $1", &[&last])?;
            tx.execute(
                "INSERT INTO audit_anchor (id, first_seq, prev_hash) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET first_seq = excluded.first_seq, prev_hash = excluded.prev_hash",
                &[&(last + 1), &hash],
            )?;
            let mut h = head(&mut tx)?;
            let mut record = Record {
                at_ms: now_ms,
                kind: Kind::Prune,
                message: Some(prune_message(first, last, before_ms, &hash)),
                ..Record::default()
            };
            let stmt = tx.prepare(INSERT)?;
            insert(&mut tx, &stmt, &mut record, &mut h)?;
            tx.commit()?;
            Ok(n)
        };
        let client = self.live().map_err(|e| e.to_string())?;
        run(client).map_err(|e| format!("postgres: {e}"))
    }

    fn query(
        &mut self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let (sql, values) = filter_sql(filter, newest_first, limit, |n| format!("${n}"));
        let params: Vec<Box<dyn postgres::types::ToSql + Sync>> = values
            .into_iter()
            .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
                match p {
                    Param::Text(t) => Box::new(t),
                    Param::Int(i) => Box::new(i),
                }
            })
            .collect();
        let mut rows = self
            .live()?
            .query_raw(&sql, params.iter().map(|p| p.as_ref()))
            .map_err(pg)?;
        use postgres::fallible_iterator::FallibleIterator as _;
        while let Some(row) = rows.next().map_err(pg)? {
            let body: String = row.get(0);
            if !each(readable(&body)?) {
                break;
            }
        }
        Ok(())
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .live()?
            .query_one("SELECT MAX(seq) FROM audit", &[])
            .map_err(pg)?
            .get(0);
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    fn verify(&mut self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
        let anchor = self
            .live()?
            .query_opt(
                "SELECT first_seq, prev_hash FROM audit_anchor WHERE id = 1",
                &[],
            )
            .map_err(pg)?
            .map(|r| (r.get::<_, i64>(0).max(1) as u64, r.get::<_, String>(1)));
        let (first, prev) = anchor.unwrap_or((1, GENESIS.to_string()));
        let sql = format!(
            "SELECT seq, body, hash, {} FROM audit ORDER BY seq",
            COLUMNS
                .iter()
                .map(|c| format!("{c}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let no_params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
        let mut rows = self.live()?.query_raw(&sql, no_params).map_err(pg)?;
        use postgres::fallible_iterator::FallibleIterator as _;
        let iter = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(Ok(StoredRecord {
                seq: row.get::<_, i64>(0).max(0) as u64,
                body: row.get(1),
                hash: row.get(2),
                columns: COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (*name, row.get::<_, Option<String>>(i + 3)))
                    .collect(),
            })),
            Ok(None) => None,
            Err(e) => Some(Err(pg(e))),
        });
        verify_rows(first, &prev, iter)
    }

    fn stats(&mut self, since_ms: u64) -> Result<Stats, StoreError> {
        let since = to_i64(since_ms);
        let row = self
            .live()?
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE decision = 'deny') FROM audit
                 WHERE kind = 'call' AND method = 'tools/call' AND at_ms >= $1
                   AND COALESCE(decision, '') <> 'require_approval'",
                &[&since],
            )
            .map_err(pg)?;
        let (calls, denied): (i64, i64) = (row.get(0), row.get(1));
        let top = self
            .live()?
            .query(
                "SELECT COALESCE(rule, ''), COUNT(*) AS n FROM audit
                 WHERE kind = 'call' AND method = 'tools/call' AND decision = 'deny' AND at_ms >= $1
                 GROUP BY rule ORDER BY n DESC, 1 LIMIT 5",
                &[&since],
            )
            .map_err(pg)?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
            .collect();
        Ok(Stats {
            calls: calls.max(0) as u64,
            denied: denied.max(0) as u64,
            top_deny_rules: top,
        })
    }
}
