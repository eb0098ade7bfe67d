//! The one clock the gateway reads: wall time in milliseconds since the Unix epoch. The
//! policy engine never reads it: the time comes in as a value (`now`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one clock the gateway reads.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
