//! `toolgate approvals list|show|approve|deny`: the approval queue, from any terminal.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use toolgate_store::{Approval, AuditLog, DecideError};

use super::audit::show_time;
use super::{load_config_or_user as load_config, now_ms, open_store, operator, ConfigArg, Escaped};

/// Approval subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Calls waiting for approval (newest first); `--all` shows decided ones too.
    List {
        /// Every approval, not only those waiting.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One approval with the exact arguments of the held call (redaction applied).
    Show {
        /// The approval id (`ap_…`).
        id: String,
    },
    /// Approve a held call; it runs (checked again against the policy) once enough
    /// distinct people have approved.
    Approve {
        /// The approval id (`ap_…`).
        id: String,
        /// Who approves (default: $TOOLGATE_OPERATOR, else $USER).
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
    },
    /// Deny a held call; the agent gets a denial carrying the reason.
    Deny {
        /// The approval id (`ap_…`).
        id: String,
        /// Why (the agent reads it).
        #[arg(long)]
        reason: String,
        /// Who denies (default: $TOOLGATE_OPERATOR, else $USER).
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
    },
}

use toolgate_gateway::api::approval_json;

/// The audit log, opened before a decision is stored so that its record follows at once.
fn audit_log(cfg: &toolgate_gateway::Config) -> Result<Option<AuditLog>> {
    Ok(toolgate_gateway::bootstrap::open_audit(cfg)?)
}

fn record(
    log: Option<&AuditLog>,
    a: &Approval,
    event: &str,
    who: &str,
    message: Option<String>,
) -> Result<()> {
    let Some(log) = log else {
        return Ok(());
    };
    log.append_sync(a.audit_record(event, Some(who.to_string()), message, now_ms()))?;
    Ok(())
}

fn refused(e: &DecideError) -> ExitCode {
    eprintln!("error: {}", Escaped(&e.to_string()));
    ExitCode::from(1)
}

/// Runs an approvals subcommand.
pub fn run(cmd: ApprovalsCommand, arg: &ConfigArg) -> Result<ExitCode> {
    let cfg = load_config(arg)?;
    let store = open_store(&cfg)?;
    let now = now_ms();
    match cmd {
        ApprovalsCommand::List { all, json } => {
            let list = store.approvals(!all, now)?;
            if json {
                let v: Vec<_> = list.iter().map(|a| approval_json(a, now)).collect();
                say!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                say!(
                    "{}",
                    if all {
                        "no approvals yet"
                    } else {
                        "no calls are waiting for approval"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            say!(
                "{:<20} {:<9} {:<10} {:<16} {:<28} {:>5}  {}",
                "id",
                "status",
                "server",
                "grant",
                "tool",
                "votes",
                "expires"
            );
            for a in &list {
                say!(
                    "{:<20} {:<9} {:<10} {:<16} {:<28} {:>2}/{:<2}  {}",
                    Escaped(&a.id),
                    a.status_at(now).as_str(),
                    Escaped(&a.server),
                    Escaped(&a.grant_label),
                    Escaped(&a.tool),
                    a.approvers.len(),
                    a.required,
                    show_time(a.expires_at_ms)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id } => {
            let a = store.approval(&id)?;
            say!("{}", serde_json::to_string_pretty(&approval_json(&a, now))?);
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, approver } => {
            let who = approver.unwrap_or_else(operator);
            let log = audit_log(&cfg)?;
            let a = match store.approve(&id, &who, now_ms())? {
                Ok(a) => a,
                Err(e) => return Ok(refused(&e)),
            };
            record(log.as_ref(), &a, "approved", &who, None)?;
            if a.status == toolgate_store::ApprovalStatus::Approved {
                store.announce_decided(&a.id);
            }
            if a.status_at(now) == toolgate_store::ApprovalStatus::Approved {
                say!(
                    "approved {}: `{}` for {} may run once (until {})",
                    Escaped(&a.id),
                    Escaped(&a.tool),
                    Escaped(&a.grant_label),
                    show_time(a.expires_at_ms)
                );
            } else {
                say!(
                    "approval by {} recorded for {}: {} of {} needed",
                    Escaped(&who),
                    Escaped(&a.id),
                    a.approvers.len(),
                    a.required
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Deny {
            id,
            reason,
            approver,
        } => {
            let who = approver.unwrap_or_else(operator);
            let log = audit_log(&cfg)?;
            let a = match store.deny_approval(&id, &who, &reason, now_ms())? {
                Ok(a) => a,
                Err(e) => return Ok(refused(&e)),
            };
            record(log.as_ref(), &a, "denied", &who, Some(reason))?;
            store.announce_decided(&a.id);
            say!("denied {}: the agent is told why", Escaped(&a.id));
            Ok(ExitCode::SUCCESS)
        }
    }
}
