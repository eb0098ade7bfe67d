//! `toolgate run`: the config of stdio mode, one server under one policy file, built
//! through the same checks as a `toolgate.toml` (the policy read through [`Files`] and
//! validated as a `[policies]` entry is).

use std::path::PathBuf;

use crate::files::Files;
use crate::model::{valid_name, Config, FailMode, ServerConfig, Transport};
use crate::validate::{read_policy, stdio_command, PolicyFault};

/// The server `toolgate run` starts: a command, its policy, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunServer {
    /// The server's name (in the audit log, for `toolgate tools` and approvals).
    pub name: String,
    /// The policy file enforced on its tools.
    pub policy_file: PathBuf,
    /// The program (`toolgate` means this binary; a relative path is taken from `cwd`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where it runs.
    pub cwd: PathBuf,
}

/// Why `toolgate run` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The name is not a server name.
    #[error("--name: use letters, digits, '-' and '_' (got {0:?})")]
    Name(String),
    /// The policy file could not be read.
    #[error("cannot read the policy `{}`", file.display())]
    Unreadable {
        /// The policy file.
        file: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The policy does not validate.
    #[error("the policy `{}` is invalid; toolgate does not start without a valid policy", file.display())]
    Invalid {
        /// The policy file.
        file: PathBuf,
        /// Each diagnostic, with its JSON Pointer.
        errors: Vec<String>,
    },
}

impl Config {
    /// This config serving `run` alone: its one server, enforcing the policy `run-NAME`
    /// read from `run.policy_file`. A `[[servers]]` entry of the same name lends its
    /// `pinning`, `sanitize_descriptions`, `audit_arguments` and `redact` settings; the
    /// store, audit log and limits are this config's.
    pub fn for_run(mut self, run: RunServer, files: &dyn Files) -> Result<Config, RunError> {
        let (policy, version) = match read_policy(&run.policy_file, files) {
            Ok(p) => p,
            Err(PolicyFault::Unreadable(error)) => {
                return Err(RunError::Unreadable {
                    file: run.policy_file,
                    error,
                })
            }
            Err(PolicyFault::Invalid(errors)) => {
                return Err(RunError::Invalid {
                    file: run.policy_file,
                    errors,
                })
            }
        };
        if !valid_name(&run.name) {
            return Err(RunError::Name(run.name));
        }
        let policy_name = format!("run-{}", run.name);
        let like = self.server(&run.name).cloned();
        let server = ServerConfig {
            era: crate::EraSetting::Legacy,
            oauth: None,
            transport: Transport::Stdio {
                command: stdio_command(&run.command, &run.cwd),
                args: run.args,
                env: vec![],
                cwd: run.cwd,
            },
            name: run.name,
            policy: Some(policy_name.clone()),
            pinning: like.as_ref().map(|s| s.pinning).unwrap_or_default(),
            // The local SQLite store only: nothing shared to be unreachable.
            state_fail_mode: FailMode::Closed,
            sanitize_descriptions: like.as_ref().is_some_and(|s| s.sanitize_descriptions),
            audit_arguments: like.as_ref().map(|s| s.audit_arguments).unwrap_or_default(),
            redactor: like.map(|s| s.redactor).unwrap_or_default(),
        };
        self.policy_versions.insert(policy_name.clone(), version);
        self.policies.insert(policy_name, policy);
        self.servers = vec![server];
        Ok(self)
    }
}
