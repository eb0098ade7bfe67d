//! Counters that survive a restart: exact in memory, written through to SQLite.

use std::sync::Arc;

use toolgate_policy::{CounterError, Counters, MemoryCounters, Reservation, Ticket};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// The longest window kept across restarts: entries older than this are pruned.
pub const MAX_KEPT_MS: u64 = 32 * 86_400 * 1000;

/// In-memory sliding windows (exact, atomic across a call's limits) whose entries are
/// made durable in the store before `reserve` returns, and restored by [`Self::open`].
#[derive(Debug)]
pub struct PersistentCounters {
    mem: MemoryCounters,
    store: Arc<SqliteStore>,
}

impl PersistentCounters {
    /// Loads the entries of the last [`MAX_KEPT_MS`] and prunes older ones.
    pub fn open(store: Arc<SqliteStore>, now_ms: u64) -> Result<Self, StoreError> {
        let since = now_ms.saturating_sub(MAX_KEPT_MS);
        store.prune_counter_entries(since)?;
        let mem = MemoryCounters::new();
        for (key, at, amount, id) in store.counter_entries_since(since)? {
            mem.restore(key, at, amount, id);
        }
        Ok(PersistentCounters { mem, store })
    }

    /// The in-memory view (for status and tests).
    pub fn memory(&self) -> &MemoryCounters {
        &self.mem
    }
}

impl Counters for PersistentCounters {
    fn reserve(&self, reservations: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError> {
        if reservations.is_empty() {
            return Ok(Ticket::default());
        }
        let ticket = self.mem.reserve(reservations, now_ms)?;
        let rows: Vec<_> = ticket
            .entries
            .iter()
            .zip(reservations)
            .map(|((key, id), r)| (key.clone(), now_ms, r.amount, *id))
            .collect();
        if let Err(e) = self.store.insert_counter_entries(&rows) {
            // Fail closed: the count could not be made durable, so the call does not go.
            let _ = self.mem.give_back(&ticket);
            return Err(CounterError::Unavailable(e.to_string()));
        }
        Ok(ticket)
    }

    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        self.mem.give_back(ticket)?;
        let ids: Vec<u64> = ticket.entries.iter().map(|(_, id)| *id).collect();
        self.store
            .delete_counter_entries(&ids)
            .map_err(|e| CounterError::Unavailable(e.to_string()))
    }
}
