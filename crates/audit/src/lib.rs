//! toolgate's audit log, the pure part: what a record holds, how records are chained and
//! verified, how arguments are digested and redacted, and how recorded calls are judged
//! again under a draft policy. Storage lives in `toolgate-store`.
//!
//! # Layout
//! - [`record`]: [`Record`] (one judged request, its outcome, or an event such as a pin
//!   change), its canonical encoding and its chained hash.
//! - [`chain`]: [`Verifier`], which walks stored records in order and names the first one
//!   that was edited, deleted, inserted or moved.
//! - [`args`]: argument keys and hash, and redaction (configured paths, and values that
//!   look like secrets).
//! - [`replay`]: judges recorded calls again under a draft policy.
//!
//! No IO, no clock: times come in as values.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod args;
pub mod chain;
pub mod record;
pub mod replay;

pub use args::{arg_hash, arg_keys, ArgumentsMode, Redacted, Redaction, Redactor};
pub use chain::{Break, StoredRecord, Verifier};
pub use record::{Kind, Outcome, Record, GENESIS};
pub use replay::{replay, Change, ReplayReport};
