//! `toolgate admin-tokens create|list|revoke`: tokens for the admin API.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use toolgate_store::Role;

use super::audit::show_time;
use super::{load_config, now_ms, open_store, ConfigArg, Escaped};

/// Admin token subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin token; prints it once.
    Create {
        /// Who holds it (shown as the approver of decisions made with it).
        #[arg(long)]
        name: String,
        /// `viewer` (read), `policy_manager` (also approve and deny), `admin` (all).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List admin tokens (never the tokens).
    List,
    /// Revoke an admin token (`at_…`): it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Runs an admin-tokens subcommand.
pub fn run(cmd: AdminCommand, arg: &ConfigArg) -> Result<ExitCode> {
    let cfg = load_config(arg)?;
    let store = open_store(&cfg)?;
    match cmd {
        AdminCommand::Create { name, role, json } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role: expected viewer, policy_manager or admin, got {role:?}");
            };
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let (t, token) = store.create_admin_token(&name, role, now_ms())?;
            if json {
                say!(
                    "{}",
                    json!({"id": t.id, "name": t.name, "role": role.as_str(), "token": token})
                );
            } else {
                say!(
                    "created admin token {} for {} (role {})",
                    t.id,
                    Escaped(&t.name),
                    role.as_str()
                );
                say!("token (shown once): {token}");
                say!("use it as `Authorization: Bearer {token}` on /api/v1/…");
            }
        }
        AdminCommand::List => {
            for t in store.admin_tokens()? {
                say!(
                    "{:<16} {:<20} {:<15} {}…  created {}{}",
                    t.id,
                    Escaped(&t.name),
                    t.role.as_str(),
                    t.token_prefix,
                    show_time(t.created_at_ms),
                    t.revoked_at_ms
                        .map(|r| format!(", revoked {}", show_time(r)))
                        .unwrap_or_default()
                );
            }
        }
        AdminCommand::Revoke { id } => {
            store.revoke_admin_token(&id, now_ms())?;
            say!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
