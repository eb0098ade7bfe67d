//! Upstream clients. Streamable HTTP upstreams are reached with a shared `reqwest`
//! client from [`crate::front`]; stdio and legacy HTTP+SSE upstreams are message
//! [`channel`]s, one per agent session.

pub mod channel;

pub use toolgate_protocol::upstream::id_key;
