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

struct Worker {
    client: redis::Client,
    conn: Option<redis::Connection>,
    reserve: redis::Script,
    give_back: redis::Script,
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

    /// Runs a job's script once; a broken connection is dropped (the next job reconnects).
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection, &redis::Script, &redis::Script) -> redis::RedisResult<T>,
    ) -> Result<T, CounterError> {
        let (reserve, give_back) = (self.reserve.clone(), self.give_back.clone());
        let conn = self.conn()?;
        match f(conn, &reserve, &give_back) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.conn = None;
                }
                Err(unavailable(e))
            }
        }
    }

    fn reserve(&mut self, reservations: &[Reservation]) -> Result<Ticket, CounterError> {
        let mut ids = Vec::with_capacity(reservations.len());
        for _ in reservations {
            ids.push(random_id().map_err(unavailable)?);
        }
        let answer: Vec<i64> = self.run(|conn, script, _| {
            let mut inv = script.prepare_invoke();
            for (r, id) in reservations.iter().zip(&ids) {
                for k in keys(&r.key) {
                    inv.key(k);
                }
                inv.arg(r.window_secs.saturating_mul(1000))
                    .arg(r.max)
                    .arg(r.amount)
                    .arg(id.to_string());
            }
            inv.invoke(conn)
        })?;
        match answer.as_slice() {
            [1, ..] => Ok(Ticket {
                entries: reservations
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

    fn give_back(&mut self, ticket: &Ticket) -> Result<(), CounterError> {
        if ticket.entries.is_empty() {
            return Ok(());
        }
        let _: i64 = self.run(|conn, _, script| {
            let mut inv = script.prepare_invoke();
            for (key, id) in &ticket.entries {
                for k in keys(key) {
                    inv.key(k);
                }
                inv.arg(id.to_string());
            }
            inv.invoke(conn)
        })?;
        Ok(())
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
                    let job = {
                        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                        rx.recv()
                    };
                    match job {
                        Ok(Job::Reserve(res, done)) => done(w.reserve(&res)),
                        Ok(Job::GiveBack(t)) => {
                            if let Err(e) = w.give_back(&t) {
                                // The entries expire with their window; the count is only
                                // higher than it should be until then.
                                tracing::error!("give-back failed: {e}");
                            }
                        }
                        Err(_) => break,
                    }
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
