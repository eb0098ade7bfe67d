//! JSON-RPC 2.0 and MCP envelope views for toolgate.
//!
//! The gateway is a transparent relay: it parses only the parts of a message it must
//! judge (`jsonrpc`, `id`, `method`, `params.name`, `params.arguments`, the `_meta`
//! protocol version) and forwards everything else unchanged. This crate holds those
//! views and the few messages toolgate writes itself (errors and denial results).
//!
//! # Layout
//! - [`envelope`]: [`Envelope`], a borrowed view of one incoming JSON-RPC message.
//! - [`reply`]: JSON-RPC error responses and MCP tool results that toolgate writes.
//! - [`sse`]: an incremental Server-Sent Events parser that keeps raw bytes.
//! - [`canonical`]: canonical JSON, the one encoding toolgate hashes.
//! - [`upstream`]: reading an upstream's messages as clients do (lone surrogates repaired).
//! - [`number`]: exact JSON numbers ([`Decimal`]): compared and hashed as written, never
//!   rounded through `f64`.
//! - [`text`]: escaping agent- and upstream-chosen text for terminals and log lines.
//!
//! No IO and no async runtime here: serde only.

pub mod canonical;
pub mod envelope;
pub mod number;
pub mod reply;
pub mod sse;
pub mod text;
pub mod upstream;

pub use canonical::canonical;
pub use envelope::{Envelope, EnvelopeError, Era, Kind, META_PROTOCOL_VERSION};
pub use number::Decimal;
pub use reply::{error_codes, error_response, tool_error_result};
pub use text::{escape, Escaped};
