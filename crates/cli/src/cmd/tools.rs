//! `toolgate tools list SERVER [--changed]` and `toolgate tools approve SERVER TOOL`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::Value;

use super::{load_config_or_user as load_config, now_ms, open_store, ConfigArg, Escaped};

/// Tool-pinning subcommands.
#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// List a server's pinned tool definitions; held ones (changed or new) are marked.
    List {
        /// The server (a `[[servers]]` name).
        server: String,
        /// Only held tools, each with the difference to its pinned definition.
        #[arg(long)]
        changed: bool,
    },
    /// Approve a held definition: it becomes the pin and the tool is released.
    Approve {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
    },
}

fn pretty(def: Option<&str>) -> Vec<String> {
    match def.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
        Some(v) => serde_json::to_string_pretty(&v)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect(),
        None => vec![],
    }
}

/// Runs a tools subcommand.
pub fn run(cmd: ToolsCommand, arg: &ConfigArg) -> Result<ExitCode> {
    let cfg = load_config(arg)?;
    let store = open_store(&cfg)?;
    // A virtual server's tools are pinned on their real servers.
    let includes = cfg
        .server(match &cmd {
            ToolsCommand::List { server, .. } | ToolsCommand::Approve { server, .. } => server,
        })
        .and_then(|s| match &s.transport {
            toolgate_gateway::config::Transport::Virtual { includes } => Some(includes.clone()),
            _ => None,
        });
    let cmd = match (cmd, includes) {
        (ToolsCommand::List { server, changed }, Some(includes)) => {
            say!(
                "virtual server `{}`: its tools are pinned on the servers it includes",
                Escaped(&server)
            );
            say!("{:<40} {:<40} {}", "EXPOSED AS", "SERVER.TOOL", "STATE");
            for inc in &includes {
                let pins = store.pins(&inc.server)?;
                let mut shown = 0;
                for p in &pins {
                    let Some(exposed) = inc.expose(&p.tool) else {
                        continue;
                    };
                    if changed && !p.is_held() {
                        continue;
                    }
                    shown += 1;
                    let state = if p.is_held() {
                        "HELD (approve on its server)"
                    } else {
                        "pinned"
                    };
                    say!(
                        "{:<40} {:<40} {}",
                        Escaped(&exposed),
                        Escaped(&format!("{}.{}", inc.server, p.tool)),
                        state
                    );
                }
                let off = cfg
                    .server(&inc.server)
                    .is_some_and(|s| s.pinning == toolgate_gateway::config::Pinning::Off);
                if pins.is_empty() {
                    let why = if off {
                        "pinning is off on this server: nothing pinned"
                    } else {
                        "no tools pinned yet (pinned when first listed)"
                    };
                    say!(
                        "{:<40} {:<40} {}",
                        "-",
                        Escaped(&format!("{}.*", inc.server)),
                        why
                    );
                } else if shown == 0 && !changed {
                    say!(
                        "{:<40} {:<40} {}",
                        "-",
                        Escaped(&format!("{}.*", inc.server)),
                        "no pinned tool matches this include"
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        (ToolsCommand::Approve { server, tool }, Some(includes)) => {
            let Some((inc, original)) =
                toolgate_gateway::config::virtual_server::route(&includes, &tool)
            else {
                bail!(
                    "virtual server `{}` exposes no tool named `{}`",
                    Escaped(&server),
                    Escaped(&tool)
                );
            };
            say!(
                "`{}` of virtual server `{}` is `{}` on server `{}`",
                Escaped(&tool),
                Escaped(&server),
                Escaped(&original),
                Escaped(&inc.server)
            );
            ToolsCommand::Approve {
                server: inc.server.clone(),
                tool: original,
            }
        }
        (cmd, None) => cmd,
    };
    match cmd {
        ToolsCommand::List { server, changed } => {
            let pins = store.pins(&server)?;
            // `toolgate run` names its server on the command line: its pins are in the
            // store with no `[[servers]]` entry.
            if cfg.server(&server).is_none() && pins.is_empty() {
                bail!(
                    "no server named `{}` in `{}`, and no tools pinned under that name (by `toolgate run --name`)",
                    Escaped(&server),
                    cfg.file.display()
                );
            }
            if pins.is_empty() {
                say!("no tools pinned for `{}` yet: they are pinned the first time an agent lists them through the gateway", Escaped(&server));
                return Ok(ExitCode::SUCCESS);
            }
            let mut held = 0;
            for p in &pins {
                if p.is_held() {
                    held += 1;
                } else if changed {
                    continue;
                }
                let state = match (p.is_held(), p.hash.is_some()) {
                    (true, true) => "HELD: definition changed",
                    (true, false) => "HELD: new since pinning",
                    _ => "pinned",
                };
                let hash = p
                    .hash
                    .as_deref()
                    .or(p.pending_hash.as_deref())
                    .unwrap_or("");
                say!(
                    "{:<40} {:<26} {}",
                    Escaped(&p.tool),
                    state,
                    Escaped(hash.get(..12).unwrap_or(hash))
                );
                if changed && p.is_held() {
                    let old = pretty(p.definition.as_deref());
                    let new = pretty(p.pending_definition.as_deref());
                    for l in old.iter().filter(|l| !new.contains(l)) {
                        say!("    - {}", Escaped(l));
                    }
                    for l in new.iter().filter(|l| !old.contains(l)) {
                        say!("    + {}", Escaped(l));
                    }
                    say!(
                        "    approve with: toolgate tools approve {} {}",
                        Escaped(&server),
                        Escaped(&p.tool)
                    );
                }
            }
            if changed && held == 0 {
                say!("no held tools for `{}`", Escaped(&server));
            }
        }
        ToolsCommand::Approve { server, tool } => {
            let p = store.approve_pin(&server, &tool, now_ms())?;
            if let Some(log) = toolgate_gateway::bootstrap::open_audit(&cfg)? {
                let who = super::operator();
                log.append_sync(toolgate_audit::Record {
                    at_ms: now_ms(),
                    kind: toolgate_audit::Kind::Pin,
                    server: Some(server.clone()),
                    tool: Some(tool.clone()),
                    decision: Some("approved".into()),
                    approver: Some(who.clone()),
                    message: Some(format!(
                        "definition {} approved by {who}",
                        p.hash.as_deref().unwrap_or("")
                    )),
                    ..Default::default()
                })?;
            }
            say!(
                "approved `{}` on `{}`: pinned at {}; the tool is released",
                Escaped(&p.tool),
                Escaped(&p.server),
                p.hash.as_deref().unwrap_or("").get(..12).unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
