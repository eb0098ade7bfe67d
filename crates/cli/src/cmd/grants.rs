//! `toolgate grants create|list|rotate|revoke`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use toolgate_store::Grant;

use super::{load_config, now_ms, open_store, ConfigArg, Escaped};

/// Grant subcommands.
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Create a grant: a bearer token for one server with one policy. Prints the token once.
    Create {
        /// The server it opens (a `[[servers]]` name).
        #[arg(long)]
        server: String,
        /// A label naming who or what holds it (`alice-laptop`, `ci-runner`).
        #[arg(long)]
        label: String,
        /// The policy attached (a `[policies]` name); default: the server's `policy`.
        /// A grant with no policy denies every call.
        #[arg(long)]
        policy: Option<String>,
        /// Bind the grant to this identity (default: the label). With `[auth.jwt]`, a JWT
        /// whose identity claim equals it opens this grant.
        #[arg(long)]
        identity: Option<String>,
        /// Expire after this long (`30d`, `12h`, `90m`).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Print JSON: {"id", "label", "server", "policy", "token", "expires_at"}.
        #[arg(long)]
        json: bool,
    },
    /// List grants (never their tokens).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a grant a new token; the old one stops working at once. Prints the token once.
    Rotate {
        /// The grant id (`g_…`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: its token stops working at once.
    Revoke {
        /// The grant id (`g_…`).
        id: String,
    },
}

fn grant_json(g: &Grant, token: Option<&str>) -> serde_json::Value {
    toolgate_gateway::manage::grant_json(g, token, now_ms())
}

fn print_token(g: &Grant, token: &str, json_out: bool) {
    if json_out {
        say!("{}", grant_json(g, Some(token)));
    } else {
        say!(
            "grant {} (`{}`) for server `{}`, policy {}",
            g.id,
            Escaped(&g.label),
            Escaped(&g.server),
            g.policy
                .as_deref()
                .map_or("(none: every call denied)".to_string(), |p| format!(
                    "`{}`",
                    Escaped(p)
                ))
        );
        say!("token: {token}");
        say!("this token is shown once; the agent sends it as `Authorization: Bearer TOKEN`");
    }
}

/// Runs a grants subcommand.
pub fn run(cmd: GrantsCommand, arg: &ConfigArg) -> Result<ExitCode> {
    let cfg = load_config(arg)?;
    let store = open_store(&cfg)?;
    match cmd {
        GrantsCommand::Create {
            server,
            label,
            policy,
            identity,
            expires,
            json,
        } => {
            let req = toolgate_gateway::manage::GrantRequest {
                server,
                label,
                policy,
                identity,
                expires,
            };
            let (g, token) =
                toolgate_gateway::manage::create_grant(&cfg, store.as_ref(), req, now_ms())?;
            print_token(&g, &token, json);
        }
        GrantsCommand::List { json } => {
            let grants = store.list_grants()?;
            if json {
                say!(
                    "{}",
                    serde_json::Value::Array(grants.iter().map(|g| grant_json(g, None)).collect())
                );
            } else if grants.is_empty() {
                say!("no grants; create one with `toolgate grants create --server S --label L`");
            } else {
                say!(
                    "{:<16} {:<20} {:<12} {:<12} {:<9} {:<12}",
                    "ID",
                    "LABEL",
                    "SERVER",
                    "POLICY",
                    "STATUS",
                    "TOKEN"
                );
                for g in &grants {
                    say!(
                        "{:<16} {:<20} {:<12} {:<12} {:<9} {}…",
                        g.id,
                        Escaped(&g.label),
                        Escaped(&g.server),
                        Escaped(g.policy.as_deref().unwrap_or("(none)")),
                        g.status(now_ms()).as_str(),
                        g.token_prefix
                    );
                }
            }
        }
        GrantsCommand::Rotate { id, json } => {
            let (g, token) = store.rotate_grant(&id)?;
            print_token(&g, &token, json);
        }
        GrantsCommand::Revoke { id } => {
            let g = store.revoke_grant(&id, now_ms())?;
            say!(
                "revoked grant {} (`{}`); its token no longer works",
                g.id,
                Escaped(&g.label)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
