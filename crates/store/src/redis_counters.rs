//! Counters in Redis, shared by gateway replicas: exact sliding windows kept by Lua
//! scripts, which Redis runs one at a time, so a call's reservations across all its limits
//! are made all together or not at all, whichever replica asks.
//!
//! Per counter key three Redis keys: a sorted set of entry ids scored by time, a hash of
//! entry id → amount, and the running total. Time is Redis's own clock (`TIME`), so
//! replicas with skewed clocks still share one window. Keys expire a second after their
//! window, so idle counters cost nothing.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toolgate_policy::{CounterError, CounterKey, Counters, Exceeded, Reservation, Ticket};

use crate::counter_store::{CounterStore, Settle};

use crate::StoreError;

/// Reserve: KEYS = (zset, amounts, total) per reservation; ARGV = per reservation
/// (window ms, max, amount, entry id). Returns {1, now} or {0, index (1-based), retry ms}.
const RESERVE: &str = include_str!("lua/reserve.lua");

/// Give back: KEYS = (zset, amounts, total) per entry; ARGV = entry ids.
const GIVE_BACK: &str = include_str!("lua/give-back.lua");

/// How many connections (and worker threads) talk to Redis.
const WORKERS: usize = 4;

enum Job {
    Reserve(Vec<Reservation>, Settle),
    GiveBack(Ticket),
}

/// Counters in Redis (`counters = "redis://HOST:PORT/DB"`).
pub struct RedisCounters {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    url: String,
    client: redis::Client,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("url", &crate::redact_url(&self.url))
            .finish()
    }
}

/// The three Redis keys of a counter key.
fn keys(k: &CounterKey) -> [String; 3] {
    let mut h = Sha256::new();
    for part in [k.counter.as_str(), k.scope.as_str(), k.scope_value.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let id: String = hex::encode(h.finalize()).chars().take(32).collect();
    [
        format!("toolgate:ctr:{id}:z"),
        format!("toolgate:ctr:{id}:a"),
        format!("toolgate:ctr:{id}:t"),
    ]
}

fn unavailable(e: impl std::fmt::Display) -> CounterError {
    CounterError::Unavailable(format!("redis: {e}"))
}

/// Jobs one worker takes from the queue at once and sends to Redis in one pipeline (one
/// write and one read for all of them: under load, calls share round trips).
const BATCH: usize = 64;

struct Worker {
    client: redis::Client,
    conn: Option<redis::Connection>,
    reserve: redis::Script,
    give_back: redis::Script,
}

/// One job's script call in a batch, and how its reply is used.
enum Pending {
    Reserve(Vec<Reservation>, Vec<u64>, Settle),
    GiveBack(Ticket),
}

impl Worker {
    fn conn(&mut self) -> Result<&mut redis::Connection, CounterError> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))
                .map_err(unavailable)?;
            c.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(unavailable)?;
            c.set_write_timeout(Some(Duration::from_secs(2)))
                .map_err(unavailable)?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| unavailable("no connection"))
    }

    /// Runs a batch of jobs in one pipeline of `EVALSHA`s (scripts loaded first when
    /// Redis does not know them). A broken connection fails every job of the batch and is
    /// dropped (the next batch reconnects).
    fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut pending: Vec<Pending> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Reserve(res, done) if res.is_empty() => done(Ok(Ticket::default())),
                Job::Reserve(res, done) => {
                    let ids: Result<Vec<u64>, String> = res.iter().map(|_| random_id()).collect();
                    match ids {
                        Ok(ids) => pending.push(Pending::Reserve(res, ids, done)),
                        Err(e) => done(Err(unavailable(e))),
                    }
                }
                Job::GiveBack(t) if t.entries.is_empty() => {}
                Job::GiveBack(t) => pending.push(Pending::GiveBack(t)),
            }
        }
        if pending.is_empty() {
            return;
        }
        let replies = self.pipeline(&pending).and_then(|mut replies| {
            // Redis lost the scripts (restarted, SCRIPT FLUSH): load them and run again
            // only the jobs whose script did not run (the others must not count twice).
            if replies.iter().any(is_noscript) {
                let (reserve, give_back) = (self.reserve.clone(), self.give_back.clone());
                let conn = self.conn()?;
                reserve.load(conn).map_err(unavailable)?;
                give_back.load(conn).map_err(unavailable)?;
                let again: Vec<usize> = (0..replies.len())
                    .filter(|i| replies.get(*i).is_some_and(is_noscript))
                    .collect();
                let retried: Vec<Pending> = again
                    .iter()
                    .rev()
                    .map(|i| pending.remove(*i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let retried_replies = self.pipeline(&retried)?;
                // Put the retried jobs and their replies back in their places.
                for ((i, p), r) in again.into_iter().zip(retried).zip(retried_replies) {
                    pending.insert(i, p);
                    replies[i] = r;
                }
                Ok(replies)
            } else {
                Ok(replies)
            }
        });
        match replies {
            Ok(replies) => {
                for (p, reply) in pending.into_iter().zip(replies) {
                    match p {
                        Pending::Reserve(res, ids, done) => done(settle(&res, ids, reply)),
                        Pending::GiveBack(_) => {
                            if let redis::Value::ServerError(e) = reply {
                                // The entries expire with their window; the count is only
                                // higher than it should be until then.
                                tracing::error!("give-back failed: {e:?}");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                for p in pending {
                    match p {
                        Pending::Reserve(_, _, done) => done(Err(e.clone())),
                        Pending::GiveBack(_) => tracing::error!("give-back failed: {e}"),
                    }
                }
            }
        }
    }

    /// Sends one `EVALSHA` per pending job in one pipeline; a reply per job (errors as
    /// values).
    fn pipeline(&mut self, pending: &[Pending]) -> Result<Vec<redis::Value>, CounterError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for p in pending {
            match p {
                Pending::Reserve(res, ids, _) => {
                    let cmd = pipe
                        .cmd("EVALSHA")
                        .arg(self.reserve.get_hash())
                        .arg(res.len() * 3);
                    for r in res {
                        for k in keys(&r.key) {
                            cmd.arg(k);
                        }
                    }
                    for (r, id) in res.iter().zip(ids) {
                        cmd.arg(r.window_secs.saturating_mul(1000))
                            .arg(r.max)
                            .arg(r.amount)
                            .arg(id.to_string());
                    }
                }
                Pending::GiveBack(t) => {
                    let cmd = pipe
                        .cmd("EVALSHA")
                        .arg(self.give_back.get_hash())
                        .arg(t.entries.len() * 3);
                    for (key, _) in &t.entries {
                        for k in keys(key) {
                            cmd.arg(k);
                        }
                    }
                    for (_, id) in &t.entries {
                        cmd.arg(id.to_string());
                    }
                }
            }
        }
        let conn = self.conn()?;
        match pipe.query::<Vec<redis::Value>>(conn) {
            Ok(v) if v.len() == pending.len() => Ok(v),
            Ok(v) => Err(unavailable(format!(
                "{} replies to {} scripts",
                v.len(),
                pending.len()
            ))),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.conn = None;
                }
                Err(unavailable(e))
            }
        }
    }
}

/// True for Redis's answer to a script it does not know.
fn is_noscript(v: &redis::Value) -> bool {
    matches!(v, redis::Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A reservation's outcome from its script's reply.
fn settle(res: &[Reservation], ids: Vec<u64>, reply: redis::Value) -> Result<Ticket, CounterError> {
    if let redis::Value::ServerError(e) = &reply {
        return Err(unavailable(format!("{e:?}")));
    }
    let answer: Vec<i64> = redis::from_redis_value(reply).map_err(unavailable)?;
    match answer.as_slice() {
        [1, ..] => Ok(Ticket {
            entries: res
                .iter()
                .zip(ids)
                .map(|(r, id)| (r.key.clone(), id))
                .collect(),
        }),
        [0, index, retry_ms] => Err(CounterError::Exceeded(Exceeded {
            index: usize::try_from(*index - 1).unwrap_or(0),
            retry_after_ms: u64::try_from(*retry_ms).unwrap_or(1000),
        })),
        other => Err(unavailable(format!("unexpected script answer {other:?}"))),
    }
}

fn random_id() -> Result<u64, String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok(u64::from_le_bytes(b) >> 1)
}

impl RedisCounters {
    /// Connects to `url` (`redis://HOST:PORT/DB`, `rediss://` for TLS is not built in) and
    /// checks it answers. Errors name the URL without its password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Redis(format!("{}: {e}", crate::redact_url(url))))?;
        let mut probe = client
            .get_connection_with_timeout(Duration::from_secs(3))
            .map_err(|e| StoreError::Redis(format!("{}: {e}", crate::redact_url(url))))?;
        let _: String = redis::cmd("PING")
            .query(&mut probe)
            .map_err(|e| StoreError::Redis(format!("{}: {e}", crate::redact_url(url))))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..WORKERS {
            let rx = rx.clone();
            let mut w = Worker {
                client: client.clone(),
                conn: None,
                reserve: redis::Script::new(RESERVE),
                give_back: redis::Script::new(GIVE_BACK),
            };
            std::thread::Builder::new()
                .name(format!("toolgate-redis-{n}"))
                .spawn(move || loop {
                    // The first job waited for, then whatever else is queued (at most
                    // BATCH), taken while holding the queue.
                    let batch = {
                        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                        match rx.recv() {
                            Ok(first) => {
                                let mut batch = vec![first];
                                while batch.len() < BATCH {
                                    match rx.try_recv() {
                                        Ok(j) => batch.push(j),
                                        Err(_) => break,
                                    }
                                }
                                batch
                            }
                            Err(_) => break,
                        }
                    };
                    w.run_batch(batch);
                })
                .map_err(|e| StoreError::Redis(format!("cannot start a worker: {e}")))?;
        }
        Ok(RedisCounters {
            jobs: Mutex::new(Some(tx)),
            url: url.to_string(),
            client,
        })
    }

    fn send(&self, job: Job) -> Result<(), Job> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match jobs.as_ref() {
            Some(tx) => tx.send(job).map_err(|mpsc::SendError(j)| j),
            None => Err(job),
        }
    }
}

impl Drop for RedisCounters {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Counters for RedisCounters {
    fn reserve(&self, reservations: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError> {
        crate::counters::reserve_blocking(self, reservations, now_ms, "redis: the workers stopped")
    }

    /// Queues the give-back (it does not wait for Redis; a failure is logged).
    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        if ticket.entries.is_empty() {
            return Ok(());
        }
        self.send(Job::GiveBack(ticket.clone()))
            .map_err(|_| unavailable("the redis workers stopped"))
    }
}

impl CounterStore for RedisCounters {
    fn reserve_then(&self, reservations: &[Reservation], _now_ms: u64, done: Settle) {
        if reservations.is_empty() {
            return done(Ok(Ticket::default()));
        }
        if let Err(Job::Reserve(_, done)) = self.send(Job::Reserve(reservations.to_vec(), done)) {
            done(Err(unavailable("the redis workers stopped")));
        }
    }

    /// A PING on a fresh connection (a second to connect, a second each way).
    fn check(&self) -> Result<(), CounterError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(1))
            .map_err(|e| unavailable(format!("{}: {e}", crate::redact_url(&self.url))))?;
        for set in [
            redis::Connection::set_read_timeout,
            redis::Connection::set_write_timeout,
        ] {
            set(&conn, Some(Duration::from_secs(1)))
                .map_err(|e| unavailable(format!("{}: {e}", crate::redact_url(&self.url))))?;
        }
        let _: String = redis::cmd("PING")
            .query(&mut conn)
            .map_err(|e| unavailable(format!("{}: {e}", crate::redact_url(&self.url))))?;
        Ok(())
    }
}
