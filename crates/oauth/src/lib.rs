//! toolgate as the OAuth 2.1 client of protected MCP servers (the MCP authorization spec):
//! the pure parts. Reading a server's `401` challenge ([`challenge`]), its protected
//! resource metadata (RFC 9728) and its authorization server's metadata (RFC 8414), each
//! checked against the URL it was fetched for ([`metadata`]); PKCE ([`pkce`]); the
//! authorization URL and the token, refresh and revocation requests, with the RFC 8707
//! `resource` ([`flow`]); token sets and when to refresh them ([`tokens`]); and token sets
//! sealed at rest with ChaCha20-Poly1305, bound to their server and identity ([`seal`]).
//!
//! No IO, no clock and no randomness here: the gateway fetches, passes the time in as a
//! value and the random bytes in as arguments.

pub mod challenge;
pub mod flow;
pub mod metadata;
pub mod pkce;
pub mod seal;
pub mod tokens;

/// Why an OAuth step cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// A document or answer that is not what the spec says it must be.
    #[error("{what}: {why}")]
    Invalid {
        /// What was read (`protected resource metadata of URL`, ...).
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// A sealed token set that does not open (a wrong key, or a row moved or edited).
    #[error("the stored tokens do not open with this key (a different `token_key`, or the stored row was altered)")]
    Sealed,
}

impl OAuthError {
    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        OAuthError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
}
