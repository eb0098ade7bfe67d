//! [`CounterStore`]: what the gateway needs from a counter store beyond the engine's
//! [`Counters`] contract (exact, all-or-nothing reservations and give-backs, defined in the
//! pure policy crate): a reservation that reports when it is settled, so an async caller
//! never blocks a thread on IO, and a readiness check. Both are about IO, so they live here
//! with the stores that do it.

use toolgate_policy::{CounterError, Counters, MemoryCounters, Reservation, Ticket};

/// Receives the outcome of [`CounterStore::reserve_then`], possibly on another thread.
pub type Settle = Box<dyn FnOnce(Result<Ticket, CounterError>) + Send>;

/// A store of sliding-window counters as the gateway uses it.
pub trait CounterStore: Counters {
    /// Like [`Counters::reserve`], but reports through `done` once the reservation is
    /// settled (for a store over the network: once its answer came), so async callers need
    /// not block a thread. The default settles at once.
    fn reserve_then(&self, reservations: &[Reservation], now_ms: u64, done: Settle) {
        done(self.reserve(reservations, now_ms));
    }

    /// Whether the store answers now (for `/readyz`); may wait for IO. The default: always.
    fn check(&self) -> Result<(), CounterError> {
        Ok(())
    }
}

/// The engine's exact in-memory counters (tests, and `policy test`).
impl CounterStore for MemoryCounters {}
