//! `toolgate serve`: runs the gateway.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use toolgate_gateway::AppState;
use toolgate_store::{AuditLog, NewGrant};

use super::{load_config, now_ms, ConfigArg};

/// Runs the gateway until Ctrl-C or SIGTERM.
pub fn run(arg: &ConfigArg) -> Result<ExitCode> {
    let cfg = load_config(arg)?;
    let backends = toolgate_gateway::bootstrap::open(&cfg, now_ms())?;
    let (store, counters) = (backends.store, backends.counters);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(toolgate_gateway::bridge::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Servers with `auth = "oauth"`: without the token key, toolgate does not start.
    let broker = toolgate_gateway::oauth::Broker::for_config(&cfg).map_err(anyhow::Error::msg)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        say!("toolgate: listening on http://{addr}");
        for s in &cfg.servers {
            say!("toolgate: server \"{}\" at http://{addr}/mcp/{}", s.name, s.name);
        }
        if broker.is_some() {
            say!("toolgate: OAuth callback at {}", toolgate_gateway::oauth::redirect_uri(&cfg));
        }
        say!("toolgate: dashboard at http://{addr}/ (sign in with a token from `toolgate admin-tokens create --name NAME --role admin`)");
        if store.grant_count()? == 0 {
            for s in &cfg.servers {
                let new = NewGrant { label: "quickstart".into(), server: s.name.clone(), policy: s.policy.clone(), identity: None, expires_at_ms: None };
                let (_, token) = store.create_grant(&new, now_ms())?;
                say!("toolgate: quickstart grant for server \"{}\": {token}", s.name);
            }
            say!("toolgate: these tokens are shown once; send them as `Authorization: Bearer TOKEN`. `toolgate grants create` makes more.");
        }
        let audit = match backends.audit {
            Some(log) => Some(audit_for_serve(&cfg, log)),
            None => {
                say!("toolgate: the audit log is off ([audit] enabled = false): calls are not recorded");
                None
            }
        };
        let jwt = match cfg.jwt.clone() {
            Some(j) => {
                let issuer = j.issuer.clone();
                let v = toolgate_gateway::jwt::JwtVerifier::new(j, reqwest::Client::new())
                    .await
                    .map_err(|e| anyhow::anyhow!("[auth.jwt]: {e}"))?;
                say!("toolgate: JWT identities from {issuer} accepted");
                Some(v)
            }
            None => None,
        };
        let tracing_cfg = cfg.tracing.clone();
        let mut state = AppState::new(cfg, store, counters)?.with_oauth(broker);
        if let Some(t) = &tracing_cfg {
            state = state.with_otlp(t);
            say!("toolgate: spans exported to {} (OTLP/HTTP)", t.otlp_endpoint);
        }
        if let Some(log) = audit {
            state = state.with_audit(log);
        }
        if let Some(v) = jwt {
            state = state.with_jwt(v);
        }
        let state = Arc::new(state);
        toolgate_gateway::run(listener, shutdown_signal(), state).await?;
        say!("toolgate: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Prunes the audit log by retention now and every hour after.
fn audit_for_serve(cfg: &toolgate_gateway::Config, log: Arc<AuditLog>) -> Arc<AuditLog> {
    say!("toolgate: audit log {}", cfg.audit.location());
    if let Some(keep) = cfg.audit.retention_ms {
        let pruner = log.clone();
        tokio::spawn(async move {
            loop {
                let now = now_ms();
                let p = pruner.clone();
                match tokio::task::spawn_blocking(move || {
                    p.prune_before(now.saturating_sub(keep), now)
                })
                .await
                {
                    Ok(Ok(n)) if n > 0 => tracing::info!("audit retention: {n} old records pruned"),
                    Ok(Err(e)) => tracing::error!("audit retention failed: {e}"),
                    _ => {}
                }
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        });
    }
    log
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
