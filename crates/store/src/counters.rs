//! Counters that survive a restart: exact in memory, written behind to SQLite by one
//! writer thread that commits many calls' entries together (group commit), off the calls'
//! path.
//!
//! A reservation is decided in memory (exact, atomic across a call's limits) and settles
//! at once; its entries reach the store within [`WRITE_BEHIND_MS`] (a clean stop or a
//! reload writes everything queued first). A crash of the process forgets at most the
//! entries of those last milliseconds. While the store refuses writes, new reservations
//! are refused (fail closed) and the entries not yet written are kept and retried.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use toolgate_policy::{CounterError, CounterKey, Counters, MemoryCounters, Reservation, Ticket};

use crate::counter_store::{CounterStore, Settle};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// The longest window kept across restarts: entries older than this are pruned.
pub const MAX_KEPT_MS: u64 = 32 * 86_400 * 1000;
/// How long the writer gathers entries before it commits them: the window a crash can
/// forget.
pub const WRITE_BEHIND_MS: u64 = 5;
/// The most entries kept for a retry while the store refuses writes; beyond it the oldest
/// are dropped from the store's copy (never from the in-memory counts) and logged.
const MAX_RETRY_ROWS: usize = 100_000;

type Row = (CounterKey, u64, u64, u64);

/// What waits for the writer. Pushing costs a lock; the writer is woken only when the
/// queue was empty (once per commit at most), not per call.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Waiting>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Waiting {
    inserts: Vec<Row>,
    deletes: Vec<u64>,
    /// The counters are being dropped: write what is queued and stop.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues; false when the writer has stopped.
    fn push(&self, inserts: Vec<Row>, deletes: Vec<u64>) -> bool {
        let mut w = self.lock();
        if w.closed {
            return false;
        }
        let was_empty = w.inserts.is_empty() && w.deletes.is_empty();
        w.inserts.extend(inserts);
        w.deletes.extend(deletes);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }
}

/// In-memory sliding windows (exact, atomic across a call's limits) whose entries are
/// written behind to the store and restored by [`Self::open`].
#[derive(Debug)]
pub struct PersistentCounters {
    mem: Arc<MemoryCounters>,
    queue: Arc<Queue>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The store's last write error, until a write succeeds again.
    broken: Arc<Mutex<Option<String>>>,
}

impl Drop for PersistentCounters {
    /// Flushes: the writer commits what is queued, then stops.
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl PersistentCounters {
    /// Loads the entries of the last [`MAX_KEPT_MS`], prunes older ones, and starts the writer.
    pub fn open(store: Arc<SqliteStore>, now_ms: u64) -> Result<Self, StoreError> {
        let since = now_ms.saturating_sub(MAX_KEPT_MS);
        store.prune_counter_entries(since)?;
        let mem = Arc::new(MemoryCounters::new());
        for (key, at, amount, id) in store.counter_entries_since(since)? {
            mem.restore(key, at, amount, id);
        }
        let queue = Arc::new(Queue::default());
        let writer_queue = queue.clone();
        let broken = Arc::new(Mutex::new(None));
        let writer_broken = broken.clone();
        let handle = std::thread::Builder::new()
            .name("toolgate-counters".into())
            .spawn(move || writer(store, &writer_queue, &writer_broken))
            .map_err(|e| StoreError::Random(format!("cannot start the counter writer: {e}")))?;
        Ok(PersistentCounters {
            mem,
            queue,
            writer: Some(handle),
            broken,
        })
    }

    /// The in-memory view (for status and tests).
    pub fn memory(&self) -> &MemoryCounters {
        &self.mem
    }
}

/// Waits for entries, lets [`WRITE_BEHIND_MS`] of them gather, and commits them in one
/// transaction. A failed commit is kept for the next one and marks the store broken
/// (reservations are refused) until a commit succeeds.
fn writer(store: Arc<SqliteStore>, queue: &Queue, broken: &Mutex<Option<String>>) {
    let mut inserts: Vec<Row> = vec![];
    let mut deletes: Vec<u64> = vec![];
    loop {
        let closed = {
            let mut w = queue.lock();
            let retrying = !inserts.is_empty() || !deletes.is_empty();
            while w.inserts.is_empty() && w.deletes.is_empty() && !w.closed && !retrying {
                w = queue.wake.wait(w).unwrap_or_else(|e| e.into_inner());
            }
            w.closed
        };
        if !closed {
            // Let the calls of the next few milliseconds join this commit (a retry waits
            // longer, so a broken store is not hammered).
            let retrying = !inserts.is_empty() || !deletes.is_empty();
            std::thread::sleep(Duration::from_millis(if retrying {
                100
            } else {
                WRITE_BEHIND_MS
            }));
        }
        {
            let mut w = queue.lock();
            inserts.append(&mut w.inserts);
            deletes.append(&mut w.deletes);
        }
        if inserts.is_empty() && deletes.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        match store.apply_counter_batch(&inserts, &deletes) {
            Ok(()) => {
                inserts.clear();
                deletes.clear();
                if broken
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .is_some()
                {
                    tracing::warn!("counter store: writing again; reservations resume");
                }
            }
            Err(e) => {
                let e = e.to_string();
                let mut b = broken.lock().unwrap_or_else(|e| e.into_inner());
                // Said once per outage, not at every retry.
                if b.is_none() {
                    tracing::error!("counter store: writing {} entries failed: {e}; new reservations are refused until it recovers (retrying every 100 ms)", inserts.len());
                }
                *b = Some(e);
                drop(b);
                if inserts.len() > MAX_RETRY_ROWS {
                    let drop = inserts.len() - MAX_RETRY_ROWS;
                    tracing::error!("counter store: {drop} entries will not reach the store (they still count in memory)");
                    inserts.drain(..drop);
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// `reserve` for a store whose reservations settle later (`reserve_then`): waits for the
/// settlement on this thread. `stopped` says why when the store's workers are gone.
pub(crate) fn reserve_blocking(
    counters: &(impl CounterStore + ?Sized),
    reservations: &[Reservation],
    now_ms: u64,
    stopped: &str,
) -> Result<Ticket, CounterError> {
    let (tx, rx) = mpsc::channel();
    counters.reserve_then(
        reservations,
        now_ms,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv()
        .unwrap_or_else(|_| Err(CounterError::Unavailable(stopped.into())))
}

impl Counters for PersistentCounters {
    fn reserve(&self, reservations: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError> {
        reserve_blocking(self, reservations, now_ms, "the counter writer stopped")
    }

    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        self.mem.give_back(ticket)?;
        let ids: Vec<u64> = ticket.entries.iter().map(|(_, id)| *id).collect();
        if self.queue.push(vec![], ids) {
            Ok(())
        } else {
            Err(CounterError::Unavailable(
                "the counter writer stopped".into(),
            ))
        }
    }
}

impl CounterStore for PersistentCounters {
    fn reserve_then(&self, reservations: &[Reservation], now_ms: u64, done: Settle) {
        if reservations.is_empty() {
            return done(Ok(Ticket::default()));
        }
        if let Some(e) = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return done(Err(CounterError::Unavailable(format!(
                "the counter store cannot write: {e}"
            ))));
        }
        let ticket = match self.mem.reserve(reservations, now_ms) {
            Ok(t) => t,
            Err(e) => return done(Err(e)),
        };
        let rows: Vec<Row> = ticket
            .entries
            .iter()
            .zip(reservations)
            .map(|((key, id), r)| (key.clone(), now_ms, r.amount, *id))
            .collect();
        if !self.queue.push(rows, vec![]) {
            let _ = self.mem.give_back(&ticket);
            return done(Err(CounterError::Unavailable(
                "the counter writer stopped".into(),
            )));
        }
        done(Ok(ticket));
    }

    fn check(&self) -> Result<(), CounterError> {
        match self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(e) => Err(CounterError::Unavailable(format!(
                "the counter store cannot write: {e}"
            ))),
            None => Ok(()),
        }
    }
}
