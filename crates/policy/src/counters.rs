//! Sliding-window counters: the trait every store implements, and an in-memory one.
//!
//! Guarantee: a counter never holds more than `max` in any half-open span of
//! `window` length, `(t - window, t]`. A call's reservations are made all together or
//! not at all, and can be given back (a call that never reached the tool).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::eval::Reservation;
use crate::model::Scope;

/// Which count: a counter name within a scope and its value (grant id, identity, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// The counter's name.
    pub counter: String,
    /// Its scope.
    pub scope: Scope,
    /// The scope's value for this call (empty for global).
    pub scope_value: String,
}

impl CounterKey {
    /// Builds a key.
    pub fn new(counter: &str, scope: Scope, scope_value: &str) -> Self {
        CounterKey {
            counter: counter.to_string(),
            scope,
            scope_value: scope_value.to_string(),
        }
    }
}

impl fmt::Display for CounterKey {
    /// `scope:value:counter`, the storage key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.scope.as_str(),
            self.scope_value,
            self.counter
        )
    }
}

/// A reservation was refused: which one, and when it could succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("limit {index} is full; retry in {retry_after_ms} ms")]
pub struct Exceeded {
    /// Index into the reservations that was refused (the first full one).
    pub index: usize,
    /// Milliseconds until enough of the window has passed.
    pub retry_after_ms: u64,
}

impl Exceeded {
    /// Whole seconds to wait, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// Proof of a set of reservations, to give them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticket {
    /// The entries made: key and entry id.
    pub entries: Vec<(CounterKey, u64)>,
}

/// Errors of a counter store (never from the in-memory one).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CounterError {
    /// The limit is full.
    #[error(transparent)]
    Exceeded(#[from] Exceeded),
    /// The store could not be reached or failed: the caller must fail closed.
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

/// A store of sliding-window counters.
pub trait Counters: Send + Sync {
    /// Makes every reservation at `now_ms`, or none: returns the first that does not fit.
    fn reserve(&self, reservations: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError>;
    /// Gives reservations back, as if the call had never been made. Takes effect for the
    /// next reservation at once and never waits for IO (a store that writes elsewhere
    /// queues the write): callers on an async runtime call it in place.
    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError>;
}

#[derive(Debug, Default)]
struct Window {
    /// (time in ms, amount, entry id), sorted by time.
    entries: VecDeque<(u64, u64, u64)>,
    /// The sum of amounts in `entries`.
    sum: u64,
}

impl Window {
    fn prune(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(t, a, _)) = self.entries.front() {
            if t.saturating_add(window_ms) <= now_ms {
                self.entries.pop_front();
                self.sum -= a;
            } else {
                break;
            }
        }
    }

    /// Milliseconds until `amount` more would fit, given the current entries.
    fn retry_after(&self, now_ms: u64, window_ms: u64, max: u64, amount: u64) -> u64 {
        let mut sum = self.sum;
        for &(t, a, _) in &self.entries {
            sum -= a;
            if sum + amount <= max {
                return (t + window_ms).saturating_sub(now_ms);
            }
        }
        window_ms
    }

    fn insert(&mut self, now_ms: u64, amount: u64, id: u64) {
        let pos = self.entries.partition_point(|&(t, _, _)| t <= now_ms);
        self.entries.insert(pos, (now_ms, amount, id));
        self.sum += amount;
    }
}

/// Exact in-memory counters: one lock makes a call's reservations atomic.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    windows: Mutex<HashMap<CounterKey, Window>>,
    next_id: AtomicU64,
}

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores one entry (for stores that persist entries and rebuild memory at start).
    pub fn restore(&self, key: CounterKey, at_ms: u64, amount: u64, id: u64) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().insert(at_ms, amount, id);
        self.next_id.fetch_max(id + 1, Ordering::Relaxed);
    }

    /// The current sum of a counter at `now_ms` over `window_secs`.
    pub fn current(&self, key: &CounterKey, window_secs: u64, now_ms: u64) -> u64 {
        let map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).map_or(0, |w| {
            w.entries
                .iter()
                .filter(|(t, _, _)| t + window_secs * 1000 > now_ms && *t <= now_ms)
                .map(|(_, a, _)| a)
                .sum()
        })
    }

    /// The entry id the next reservation will get.
    pub fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }
}

impl Counters for MemoryCounters {
    fn reserve(&self, reservations: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError> {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (index, r) in reservations.iter().enumerate() {
            let window_ms = r.window_secs.saturating_mul(1000);
            let w = map.entry(r.key.clone()).or_default();
            w.prune(now_ms, window_ms);
            if w.sum.saturating_add(r.amount) > r.max {
                let retry_after_ms = w.retry_after(now_ms, window_ms, r.max, r.amount);
                return Err(Exceeded {
                    index,
                    retry_after_ms,
                }
                .into());
            }
        }
        let mut ticket = Ticket {
            entries: Vec::with_capacity(reservations.len()),
        };
        for r in reservations {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            map.entry(r.key.clone())
                .or_default()
                .insert(now_ms, r.amount, id);
            ticket.entries.push((r.key.clone(), id));
        }
        Ok(ticket)
    }

    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (key, id) in &ticket.entries {
            if let Some(w) = map.get_mut(key) {
                if let Some(pos) = w.entries.iter().position(|(_, _, e)| e == id) {
                    if let Some((_, a, _)) = w.entries.remove(pos) {
                        w.sum -= a;
                    }
                }
            }
        }
        Ok(())
    }
}
