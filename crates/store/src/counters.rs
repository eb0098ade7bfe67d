//! Counters that survive a restart: exact in memory, written through to SQLite by one
//! writer thread that commits many calls' entries together (group commit).

use std::sync::mpsc;
use std::sync::Arc;

use toolgate_policy::{
    CounterError, CounterKey, Counters, MemoryCounters, Reservation, Settle, Ticket,
};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// The longest window kept across restarts: entries older than this are pruned.
pub const MAX_KEPT_MS: u64 = 32 * 86_400 * 1000;
/// The most jobs one commit takes.
const BATCH: usize = 1024;

type Row = (CounterKey, u64, u64, u64);

enum Job {
    Insert(Vec<Row>, Ticket, Settle),
    Delete(Vec<u64>),
}

/// In-memory sliding windows (exact, atomic across a call's limits) whose entries are
/// durable in the store before a reservation settles, and restored by [`Self::open`].
#[derive(Debug)]
pub struct PersistentCounters {
    mem: Arc<MemoryCounters>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PersistentCounters {
    /// Flushes: the writer commits what is queued, then stops.
    fn drop(&mut self) {
        self.jobs.take();
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
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_mem = mem.clone();
        let handle = std::thread::Builder::new()
            .name("toolgate-counters".into())
            .spawn(move || writer(store, writer_mem, rx))
            .map_err(|e| StoreError::Random(format!("cannot start the counter writer: {e}")))?;
        Ok(PersistentCounters {
            mem,
            jobs: Some(tx),
            writer: Some(handle),
        })
    }

    /// The in-memory view (for status and tests).
    pub fn memory(&self) -> &MemoryCounters {
        &self.mem
    }
}

/// Takes every job waiting, commits them in one transaction, then settles each.
fn writer(store: Arc<SqliteStore>, mem: Arc<MemoryCounters>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut inserts = vec![];
        let mut deletes = vec![];
        for j in &jobs {
            match j {
                Job::Insert(rows, _, _) => inserts.extend(rows.iter().cloned()),
                Job::Delete(ids) => deletes.extend_from_slice(ids),
            }
        }
        let result = store
            .apply_counter_batch(&inserts, &deletes)
            .map_err(|e| e.to_string());
        for j in jobs {
            if let Job::Insert(_, ticket, done) = j {
                match &result {
                    Ok(()) => done(Ok(ticket)),
                    Err(e) => {
                        // Fail closed: the count could not be made durable, so the call does not go.
                        let _ = mem.give_back(&ticket);
                        done(Err(CounterError::Unavailable(e.clone())));
                    }
                }
            }
        }
    }
}

/// `reserve` for a store whose reservations settle later (`reserve_then`): waits for the
/// settlement on this thread. `stopped` says why when the store's workers are gone.
pub(crate) fn reserve_blocking(
    counters: &(impl Counters + ?Sized),
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

    fn reserve_then(&self, reservations: &[Reservation], now_ms: u64, done: Settle) {
        if reservations.is_empty() {
            return done(Ok(Ticket::default()));
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
        let Some(jobs) = &self.jobs else {
            let _ = self.mem.give_back(&ticket);
            return done(Err(CounterError::Unavailable(
                "the counter writer stopped".into(),
            )));
        };
        if let Err(mpsc::SendError(Job::Insert(_, ticket, done))) =
            jobs.send(Job::Insert(rows, ticket, done))
        {
            let _ = self.mem.give_back(&ticket);
            done(Err(CounterError::Unavailable(
                "the counter writer stopped".into(),
            )));
        }
    }

    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        self.mem.give_back(ticket)?;
        let ids: Vec<u64> = ticket.entries.iter().map(|(_, id)| *id).collect();
        match &self.jobs {
            Some(jobs) => jobs
                .send(Job::Delete(ids))
                .map_err(|_| CounterError::Unavailable("the counter writer stopped".into())),
            None => Err(CounterError::Unavailable(
                "the counter writer stopped".into(),
            )),
        }
    }
}
