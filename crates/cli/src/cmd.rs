//! One module per subcommand.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod connect;
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

/// Opens the config's store (for commands that keep no counters), as `serve` does.
pub use toolgate_gateway::bootstrap::open_store;

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
