//! `toolgate run --policy FILE -- CMD ARGS…`: stdio mode for desktop clients.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use toolgate_gateway::config::{Pinning, ServerConfig, Transport};
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
    let mut cfg = load_config_or_user(&a.config)?;
    let Some((program, args)) = a.command.split_first() else {
        bail!(
            "give the server's command after the options: toolgate run --policy p.json -- CMD ARGS"
        );
    };
    let text = std::fs::read_to_string(&a.policy)
        .with_context(|| format!("cannot read the policy `{}`", a.policy.display()))?;
    let loaded = match toolgate_policy::load_str(&text) {
        Ok(l) => l,
        Err(e) => {
            for d in &e.errors {
                eprintln!("{}: {}", a.policy.display(), super::Escaped(&d.to_string()));
            }
            bail!(
                "the policy `{}` is invalid; toolgate does not start without a valid policy",
                a.policy.display()
            );
        }
    };
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let name = match &a.name {
        Some(n) => {
            if !toolgate_gateway::config::valid_name(n) {
                bail!("--name: use letters, digits, '-' and '_' (got {n:?})");
            }
            n.clone()
        }
        None => {
            let n = name::derive(&a.command, &cwd);
            tracing::info!(server = %n, "toolgate run: server name `{n}` (from the command; --name NAME overrides it)");
            n
        }
    };
    let policy_name = format!("run-{name}");
    let command = if program == "toolgate" {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from(program))
    } else {
        PathBuf::from(program)
    };
    let like = cfg.server(&name).cloned();
    let srv = ServerConfig {
        name: name.clone(),
        transport: Transport::Stdio {
            command,
            args: args.to_vec(),
            env: vec![],
            cwd,
        },
        policy: Some(policy_name.clone()),
        pinning: like.as_ref().map_or(Pinning::Enforce, |s| s.pinning),
        // The local SQLite store only: nothing shared to be unreachable.
        state_fail_mode: toolgate_gateway::config::FailMode::Closed,
        sanitize_descriptions: like.as_ref().is_some_and(|s| s.sanitize_descriptions),
        audit_arguments: like.as_ref().map(|s| s.audit_arguments).unwrap_or_default(),
        redactor: like.map(|s| s.redactor).unwrap_or_default(),
    };
    use sha2::Digest as _;
    let version: String = hex::encode(sha2::Sha256::digest(text.as_bytes()))
        .chars()
        .take(16)
        .collect();
    cfg.policy_versions.insert(policy_name.clone(), version);
    cfg.policies
        .insert(policy_name.clone(), Arc::new(loaded.policy));
    cfg.servers = vec![srv];
    let backends = toolgate_gateway::bootstrap::open(&cfg, now_ms())?;
    let (store, counters, audit) = (backends.store, backends.counters, backends.audit);
    let who = operator();
    let grant = Grant {
        id: format!("stdio-{name}"),
        label: "stdio".into(),
        server: name.clone(),
        policy: Some(policy_name),
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
