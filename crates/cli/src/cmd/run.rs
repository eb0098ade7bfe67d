//! `toolgate run --policy FILE -- CMD ARGS…`: stdio mode for desktop clients.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use toolgate_gateway::config::{DiskFiles, RunError, RunServer};
use toolgate_gateway::stdio_mode;
use toolgate_gateway::AppState;
use toolgate_store::Grant;

use super::{load_config_or_user, now_ms, operator, ConfigArg};

mod name;

/// Arguments of `toolgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy enforced on the server's tools (JSON). An invalid policy stops toolgate.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The server's name in the audit log and for `toolgate tools` and approvals. Default:
    /// what the command runs: the package of `npx`, `uvx`, `bunx`…
    /// (`npx -y @scope/server-x` → `server-x`), the module of `python -m`, the image of
    /// `docker run`, the script's package folder for `node`, `python`, `deno`, `sh`…
    /// (`node /a/server-memory/dist/index.js` → `server-memory`), else the command's file
    /// name. A `[[servers]]` entry of that name in the config lends its `pinning`,
    /// `audit_arguments` and `redact` settings.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
    /// The MCP server to run, after the options: `toolgate run --policy p.json -- npx -y
    /// @scope/server`. The `--` is optional: everything from CMD on is the server's.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        num_args = 1..,
        value_name = "CMD ARGS"
    )]
    command: Vec<String>,
}

/// Runs stdio mode; exits with the server's exit code.
pub fn run(a: &RunArgs) -> Result<ExitCode> {
    let cfg = load_config_or_user(&a.config)?;
    let Some((program, args)) = a.command.split_first() else {
        bail!(
            "give the server's command after the options: toolgate run --policy p.json -- CMD ARGS"
        );
    };
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => {
            let n = name::derive(&a.command, &cwd);
            tracing::info!(server = %n, "toolgate run: server name `{n}` (from the command; --name NAME overrides it)");
            n
        }
    };
    let run = RunServer {
        name: name.clone(),
        policy_file: a.policy.clone(),
        command: program.clone(),
        args: args.to_vec(),
        cwd,
    };
    let cfg = match cfg.for_run(run, &DiskFiles) {
        Ok(cfg) => cfg,
        Err(e) => {
            if let RunError::Invalid { file, errors } = &e {
                for d in errors {
                    eprintln!("{}: {}", file.display(), super::Escaped(d));
                }
            }
            return Err(e.into());
        }
    };
    let backends = toolgate_gateway::bootstrap::open(&cfg, now_ms())?;
    let (store, counters, audit) = (backends.store, backends.counters, backends.audit);
    let who = operator();
    let grant = Grant {
        id: format!("stdio-{name}"),
        label: "stdio".into(),
        server: name.clone(),
        policy: Some(format!("run-{name}")),
        identity: who,
        token_prefix: String::new(),
        created_at_ms: now_ms(),
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    tracing::info!(server = %name, store = %store.describe(), audit = %cfg.audit.location(), "toolgate run: enforcing {} on `{}`", a.policy.display(), super::Escaped(&a.command.join(" ")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(toolgate_gateway::bridge::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        // The same state `serve` builds, admitting the one local grant.
        let mut state = AppState::new(cfg, store, counters)
            .context("cannot build the HTTP client")?
            .with_local_grant(grant);
        if let Some(log) = audit {
            state = state.with_audit(log);
        }
        stdio_mode::run(Arc::new(state))
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
