//! The bundled demo MCP server that toolgate's quickstart runs as its upstream.
//!
//! It plays "Bright Smile Dental", a small dental practice, and exposes its
//! records as MCP tools: patients, scheduling, treatment plans, clinical notes,
//! billing, patient messaging and reporting. Everything is fictional and held
//! in memory; each server starts from the same seed data and mutations
//! (booking, refunds, deletions, ...) change that state until the process
//! ends. Over HTTP all sessions share one practice.
//!
//! The tool set is meant to exercise a policy gateway: read-only look-ups,
//! reversible and destructive mutations, tools that reach the outside world
//! (email, payments), a SQL-ish reporting tool and a long-running tool that
//! sends progress notifications. Every tool carries honest MCP annotations.
//!
//! Serve it with [`serve_stdio`] (a child process speaking MCP over
//! stdin/stdout) or [`serve_http`] (Streamable HTTP at `/mcp`).

mod billing;
mod calendar;
mod data;
mod ops;
mod params;
mod reports;
mod seed;
#[cfg(test)]
mod tests;
mod tools;

use std::future::Future;
use std::sync::{Arc, Mutex};

use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::ServiceExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::data::Practice;
use crate::tools::DentalPractice;

/// The HTTP path the Streamable HTTP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// Why serving stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The MCP handshake with the client failed (stdio).
    #[error("MCP initialization failed: {0}")]
    Initialize(#[from] Box<rmcp::service::ServerInitializeError>),
    /// The task running the MCP session ended abnormally (stdio).
    #[error("MCP session task failed: {0}")]
    Session(#[from] tokio::task::JoinError),
    /// Accepting or serving HTTP connections failed.
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How [`serve_http_with`] runs the Streamable HTTP endpoint.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Serve statelessly: no `initialize` session and no `Mcp-Session-Id`,
    /// each POST is answered on its own. Default `false` (legacy sessions).
    pub stateless: bool,
    /// In stateless mode, answer simple requests with `application/json`
    /// instead of an SSE stream. Ignored with sessions.
    pub json_response: bool,
    /// Accepted `Host` header values (host names or `host:port`). `None`
    /// keeps rmcp's default of loopback names only (DNS-rebinding
    /// protection); `Some(vec![])` accepts any host.
    pub allowed_hosts: Option<Vec<String>>,
}

impl HttpOptions {
    /// Options with sessions, SSE responses and loopback-only `Host` checking.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve statelessly (`true`) or with `Mcp-Session-Id` sessions (`false`).
    pub fn stateless(mut self, stateless: bool) -> Self {
        self.stateless = stateless;
        self
    }

    /// Prefer plain JSON responses in stateless mode.
    pub fn json_response(mut self, json_response: bool) -> Self {
        self.json_response = json_response;
        self
    }

    /// Accept these `Host` header values; an empty list accepts any host.
    pub fn allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }
}

/// The names of every tool the demo server offers, sorted by name.
pub fn tool_names() -> Vec<String> {
    DentalPractice::seeded().tool_names()
}

/// Serve one MCP session over stdin/stdout until the client closes stdin.
///
/// The practice starts from the seed data; it is dropped when the session ends.
pub async fn serve_stdio() -> Result<(), ServeError> {
    let running = DentalPractice::seeded()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(Box::new)?;
    running.waiting().await?;
    Ok(())
}

/// Serve Streamable HTTP at [`MCP_PATH`] on an already bound listener, with
/// `Mcp-Session-Id` sessions, until `shutdown` completes.
///
/// Same as [`serve_http_with`] with [`HttpOptions::default`].
pub async fn serve_http(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_http_with(listener, shutdown, HttpOptions::default()).await
}

/// Serve Streamable HTTP at [`MCP_PATH`] on an already bound listener until
/// `shutdown` completes, configured by `options`.
///
/// All sessions share one seeded practice. When `shutdown` completes, open
/// sessions are closed and the function returns once connections drain.
pub async fn serve_http_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: HttpOptions,
) -> Result<(), ServeError> {
    let cancel = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel.child_token())
        .with_legacy_session_mode(!options.stateless)
        .with_json_response(options.json_response);
    config = match options.allowed_hosts {
        None => config,
        Some(hosts) if hosts.is_empty() => config.disable_allowed_hosts(),
        Some(hosts) => config.with_allowed_hosts(hosts),
    };
    let practice = Arc::new(Mutex::new(Practice::seeded()));
    let service = StreamableHttpService::new(
        move || Ok(DentalPractice::new(Arc::clone(&practice))),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service(MCP_PATH, service);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await?;
    Ok(())
}
