//! Risk classification and attack signals over MCP tool definitions.
//!
//! Pure, deterministic and offline: the same tools give the same report, and every
//! conclusion is explained by its [`Signal`]s.
//!
//! # Layout
//! - [`tool`]: [`ToolDef`], read from a `tools/list` result.
//! - [`words`]: splitting names (snake, camel, kebab, dotted) into words; the verbs the
//!   classifier knows and the nouns that change their meaning.
//! - [`classify`]: category, confidence and signals for one tool; `severity` (private):
//!   severity from what the tool touches.
//! - [`attack`]: poisoning signals (hidden instructions, invisible characters, ANSI, …).
//! - [`lookalike`]: names that copy a well-known tool's name (typos, homoglyphs).
//! - [`report`]: a server's report (counts, grade A to F) and the starter policy.

pub mod attack;
pub mod classify;
pub mod lookalike;
pub mod report;
mod severity;
pub mod tool;
pub mod words;

pub use classify::{classify, Assessment, Category, Severity, Signal};
pub use report::{report, starter_policy, ServerReport, ToolReport};
pub use tool::{tools_from_list_result, ToolDef};
