//! toolgate's network service: the MCP front, upstream clients, sessions, enforcement.
//!
//! # Layout
//! - [`config`]: `toolgate.toml` in two stages (raw serde, then validation collecting
//!   every error with its path) and the policies it names.
//! - [`front`]: the axum [`router`]: `/mcp/{server}` (POST, GET, DELETE), `/healthz`, `/readyz`.
//! - [`api`]: the admin API under `/api/v1` (admin tokens with roles).
//! - [`manage`]: changes shared by the API and the CLI (grants, policy puts with history).
//! - [`dashboard`]: the dashboard at `/`, its assets embedded.
//! - [`call`]: one `tools/call` from judgement to the relayed answer.
//! - [`approval`]: holding a call until a person approves or denies it.
//! - [`webhook`]: the signed approval webhook.
//! - [`enforce`]: judging `tools/call`, filtering `tools/list`, give-back on failure.
//! - [`trail`]: the audit record of a request and the outcome of a forwarded call.
//! - [`jwt`]: JWT identities (`[auth.jwt]`): signature, issuer, audience, identity claim.
//! - [`metrics`]: `/metrics` (Prometheus text).
//! - [`otlp`]: optional span export over OTLP/HTTP (JSON), continuing the agent's trace.
//! - [`pin`]: tool definitions hashed and pinned; changed ones held.
//! - [`session`]: toolgate's own `Mcp-Session-Id`s mapped to upstream sessions.
//! - [`upstream`]: stdio children ([`upstream::channel`]); HTTP upstreams use `reqwest`.
//! - [`reload`]: hot reload of config and policies.
//! - [`request_id`]: an id per HTTP request, in every log line and `X-Request-Id`.
//! - [`state`]: [`AppState`] shared by handlers.
//! - [`stdio_mode`]: `toolgate run`, the same enforcement for a desktop client over stdio.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests use port 0.

pub mod api;
pub mod approval;
pub mod call;
pub mod config;
pub mod dashboard;
pub mod enforce;
pub mod front;
pub mod jwt;
pub mod manage;
pub mod metrics;
pub mod otlp;
pub mod pin;
pub mod reload;
pub mod request_id;
pub mod session;
pub mod state;
pub mod stdio_mode;
pub mod trail;
pub mod upstream;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, ConfigError};
pub use front::router;
pub use state::AppState;

/// Serves until `shutdown` completes; also runs hot reload and the idle-session reaper.
pub async fn run(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    state: Arc<AppState>,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(reload::watch(state.clone()));
    let reaper_state = state.clone();
    let reaper = tokio::spawn(async move {
        // Every 10 s: `session_idle` (a config key, default 30 minutes) is honoured to
        // within 10 s, and a reload that shortens it applies at once.
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let idle = Duration::from_secs(reaper_state.config().sessions.idle_secs);
            let n = reaper_state.sessions.reap(idle);
            if n > 0 {
                tracing::info!("closed {n} idle session(s)");
            }
        }
    });
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();
    reaper.abort();
    result
}
