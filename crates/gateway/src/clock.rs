//! The one clock the gateway reads: wall time in milliseconds since the Unix epoch. The
//! policy engine never reads it: the time comes in as a value (`now`).
//!
//! The call path's decisions (grant expiry, limit windows, approvals and their expiry, pin
//! observations) read time through [`Clock`], held by the gateway's state, so a test can
//! run the pipeline on a [`Clock::manual`] one and move it (an approval or a grant expiring)
//! without waiting. The timestamps of audit records are wall time ([`now_ms`]): they say
//! when a record was written, whatever clock decided.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the system's wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the gateway reads the time: the system's wall clock, or a manual one for tests.
/// Clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system's wall clock (the default).
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that stands at `start_ms` until [`Clock::advance`] moves it.
    pub fn manual(start_ms: u64) -> Self {
        Clock(Some(Arc::new(AtomicU64::new(start_ms))))
    }

    /// The time now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            None => now_ms(),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `ms` (the system clock cannot be moved: no effect).
    pub fn advance(&self, ms: u64) {
        if let Some(t) = &self.0 {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let other = c.clone();
        assert_eq!(c.now_ms(), 1_000);
        other.advance(500);
        assert_eq!(c.now_ms(), 1_500);
        assert!(Clock::system().now_ms() > 1_600_000_000_000);
    }
}
