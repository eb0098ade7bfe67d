//! toolgate's network service: the MCP front, upstream clients, sessions, enforcement.
//!
//! # Layout
//! - [`config`]: `toolgate.toml` (the `toolgate-config` crate, re-exported): raw serde,
//!   then validation collecting every error with its path, and the policies it names.
//! - [`bootstrap`]: the composition root: the store, counters and audit log a config
//!   names, opened the same way for `serve`, `run` and the CLI.
//! - [`front`]: the axum [`router`]: `/mcp/{server}` (POST, GET, DELETE), `/healthz`, `/readyz`.
//! - [`host`]: the `Host` allow-list (DNS rebinding) and encoded-path refusal.
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
//! - [`oauth`]: toolgate as the OAuth client of `auth = "oauth"` servers: consent,
//!   sealed token sets per identity, refresh, revocation.
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
pub mod ask;
pub mod bootstrap;
pub mod bridge;
pub mod cache;
pub mod call;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod decisions;
pub mod deliver;
pub mod enforce;
pub mod era;
pub mod error;
pub mod front;
pub mod host;
pub mod input;
pub mod jwt;
pub mod manage;
pub mod metrics;
pub mod oauth;
pub mod otlp;
pub mod param_headers;
pub mod parked;
pub mod pin;
pub mod pipeline;
pub mod relay;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod session;
pub mod state;
pub mod stdio_mode;
pub mod trail;
pub mod upstream;
pub mod virtual_server;
pub mod wakeups;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, ConfigError};
pub use front::router;
pub use state::AppState;
/// Escapes agent- and upstream-chosen text for log lines and terminals.
pub use toolgate_protocol::escape;

/// File descriptors kept for everything but client connections (stdio children, the
/// store, upstream connections), at least this many.
const FD_RESERVE: u64 = 256;

/// Raises the file-descriptor soft limit to the hard limit and returns the client
/// connection cap: `max_connections`, lowered to leave a reserve of descriptors (a
/// quarter of the limit, at least 256) for everything else.
pub fn connection_cap(max_connections: usize) -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|e| {
        tracing::warn!("cannot raise the open-file limit: {e}");
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024)
    });
    let reserve = (soft / 4).max(FD_RESERVE);
    let room = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX);
    let cap = max_connections.min(room.max(1));
    if cap < max_connections {
        tracing::warn!(
            "max_connections lowered from {max_connections} to {cap}: the open-file limit is {soft}"
        );
    }
    cap
}

/// Serves until `shutdown` completes; also runs hot reload and the idle-session reaper.
///
/// Each connection must send its request headers within `header_timeout` (slowloris);
/// at most [`connection_cap`]`(max_connections)` connections are open at once, and one
/// over the cap is closed at once (counted in `/metrics`), so the gateway never runs out
/// of descriptors and `/healthz` keeps answering.
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
            let limits = reaper_state.config().sessions;
            let n = reaper_state.sessions.reap(
                Duration::from_secs(limits.idle_secs),
                Duration::from_secs(limits.idle_brief_secs),
            );
            if n > 0 {
                tracing::info!("closed {n} idle session(s)");
            }
        }
    });
    let sweep_state = state.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(approval::SWEEP_EVERY);
        loop {
            tick.tick().await;
            let (audit, now) = (sweep_state.audit.clone(), sweep_state.now_ms());
            let swept = bridge::blocking(&sweep_state.store, move |s| {
                approval::sweep_expired(s, audit.as_deref(), now)
            })
            .await;
            if let Err(e) = swept {
                tracing::warn!("approval expiry sweep: {e}");
            }
        }
    });
    let cfg = state.config();
    let permits = Arc::new(tokio::sync::Semaphore::new(connection_cap(
        cfg.max_connections,
    )));
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_timeout_secs));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(cfg.header_timeout_secs));
    drop(cfg);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let app = router(state.clone());
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: wait a moment rather than spin.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            state.metrics.connection_refused();
            tracing::warn!("connection refused: max_connections are open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let metrics = state.metrics.clone();
        metrics.connection(1);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            metrics.connection(-1);
            drop(permit);
        });
    }
    drop(listener);
    // Connections finish their requests; streams that never end are cut after 10 s.
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    watcher.abort();
    reaper.abort();
    sweeper.abort();
    Ok(())
}
