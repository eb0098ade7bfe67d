//! One module per subcommand.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod demo;
pub mod fetch_tools;
pub mod grants;
pub mod policy;
pub mod run;
pub mod scan;
pub mod serve;
pub mod tools;

use std::path::PathBuf;

/// Agent- and upstream-chosen text (tool names, labels, messages, descriptions) shown
/// with control and bidi characters escaped: every human-readable line prints such text
/// through it, so a name cannot forge a row or drive the terminal. JSON output stays exact.
pub use toolgate_protocol::text::{escape, Escaped};

/// The config file used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "toolgate.toml";

/// The `--config` flag shared by commands that read the gateway's config.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The gateway config file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    pub config: PathBuf,
}

/// Loads the config, with a hint when the default file is missing.
pub fn load_config(arg: &ConfigArg) -> anyhow::Result<toolgate_gateway::Config> {
    if !arg.config.exists() {
        anyhow::bail!(
            "no config file at `{}`: pass --config FILE, or run from the folder holding toolgate.toml (the repository has one that fronts the demo server)",
            arg.config.display()
        );
    }
    Ok(toolgate_gateway::Config::load(&arg.config)?)
}

/// The folder of the user's own store, used when there is no `toolgate.toml`:
/// `$XDG_DATA_HOME/toolgate`, else `~/.local/share/toolgate`.
pub fn user_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("toolgate"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/toolgate")),
        None => anyhow::bail!("no toolgate.toml here, and neither $XDG_DATA_HOME nor $HOME is set to find the user store: pass --config FILE"),
    }
}

/// The config for commands that also work without one (`run`, `approvals`, `audit`, `tools`,
/// `status`, `policy replay`): `--config FILE`, else `./toolgate.toml`, else the user's
/// own store in [`user_data_dir`] (where `toolgate run` keeps its state by default).
pub fn load_config_or_user(arg: &ConfigArg) -> anyhow::Result<toolgate_gateway::Config> {
    if arg.config.exists() || arg.config != std::path::Path::new(DEFAULT_CONFIG) {
        return load_config(arg);
    }
    let dir = user_data_dir()?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    let text = format!(
        "store = {:?}\n",
        format!("sqlite://{}", dir.join("toolgate.db").display())
    );
    Ok(toolgate_gateway::Config::parse(
        &text,
        &dir.join("(defaults: no toolgate.toml)"),
        &dir,
    )?)
}

/// The config's rate-limit counters: Redis when `counters` names it or the store is Redis,
/// else persistent counters in the SQLite store.
pub fn open_counters(
    cfg: &toolgate_gateway::Config,
    store: &std::sync::Arc<dyn toolgate_store::StateStore>,
) -> anyhow::Result<std::sync::Arc<dyn toolgate_store::CounterStore>> {
    use anyhow::Context as _;
    let redis = cfg.counters.as_deref().or_else(|| {
        (cfg.store.starts_with("redis://") || cfg.store.starts_with("redis+unix://"))
            .then_some(cfg.store.as_str())
    });
    if let Some(url) = redis {
        return Ok(std::sync::Arc::new(
            toolgate_store::RedisCounters::open(url).context("cannot reach the counters' Redis")?,
        ));
    }
    let sqlite = store
        .clone()
        .as_sqlite()
        .context("the store keeps no counters and no Redis is named for them")?;
    Ok(std::sync::Arc::new(
        toolgate_store::PersistentCounters::open(sqlite, now_ms())
            .context("cannot restore rate-limit counters")?,
    ))
}

/// Opens the config's store: SQLite or Redis, by its URL.
pub fn open_store(
    cfg: &toolgate_gateway::Config,
) -> anyhow::Result<std::sync::Arc<dyn toolgate_store::StateStore>> {
    toolgate_store::open_state(&cfg.store, &cfg.base).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the store `{}`: {e}",
            toolgate_store::redact_url(&cfg.store)
        )
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    toolgate_gateway::clock::now_ms()
}

/// Who runs this command, for audit records: `$TOOLGATE_OPERATOR`, else `$USER`.
pub fn operator() -> String {
    std::env::var("TOOLGATE_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
