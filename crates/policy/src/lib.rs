//! The toolgate policy language: validate, compile and evaluate.
//!
//! Pure and synchronous: no IO and no clock. The caller passes `now` (milliseconds since
//! the Unix epoch) and the facts it gathered; counting lives behind the [`Counters`]
//! trait, whose in-memory implementation is here and whose persistent ones are in the
//! store crate.
//!
//! # Layout
//! - [`load`]: raw JSON → validated [`Policy`], every error with its JSON Pointer.
//! - [`model`]: the compiled policy.
//! - [`eval`]: [`evaluate`] → [`Decision`] (the `secret` and `pii` ops use
//!   `toolgate-detect`).
//! - [`schema`]: `validate_arguments`: [`validate_args`] and the compiled [`ArgsSchema`].
//! - [`inspect`]: `results` rules on one tool result: [`inspect_result`] → [`Inspection`].
//! - [`counters`]: sliding-window [`Counters`] and [`MemoryCounters`].
//! - [`testing`]: runs a document's inline `tests`.
//! - [`duration`]: `minute`, `10m`, `7d`.
//!
//! ```
//! use toolgate_policy::{evaluate, load_str, Call, Effect, Facts};
//! let policy = load_str(r#"{"version":"1","default":"deny","tools":{"echo":{}}}"#).unwrap().policy;
//! let args = serde_json::json!({});
//! let call = Call { tool: "delete_repo", args: &args, grant: "g1", identity: "alice", session: "", server: "demo" };
//! let d = evaluate(&call, &policy, &Facts::default(), 0);
//! assert_eq!(d.effect, Effect::Deny);
//! assert_eq!(d.rule, "(default deny)");
//! ```

pub mod counters;
pub mod duration;
pub mod edit;
pub mod eval;
pub mod inspect;
pub mod load;
pub mod model;
pub mod schema;
pub mod testing;

pub use counters::{CounterError, CounterKey, Counters, Exceeded, MemoryCounters, Ticket};
pub use eval::{evaluate, labels, Call, Decision, Effect, Facts, Reservation};
pub use inspect::{inspect_result, Applied, Fired, Inspection, ResultDenial};
pub use load::{load_str, load_value, Diagnostic, LoadError, Loaded, Severity};
pub use model::{
    Action, ApprovalSpec, Ask, DefaultAction, Expect, OnInjection, Policy, ResultDeny, ResultRules,
    Scope,
};
pub use schema::{validate_args, ArgsSchema, Violation};
pub use toolgate_detect::{Class, KindSet};
