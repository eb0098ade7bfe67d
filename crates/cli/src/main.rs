//! The `toolgate` binary: argument parsing, one module per subcommand, errors to exit codes.
//!
//! Exit codes: 0 success, 1 a check failed (invalid policy, failed test, broken chain),
//! 2 usage or runtime error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

const EXAMPLES: &str = "\
Examples:
  toolgate policy check policies/*.json
  toolgate policy test policies/demo.json
  toolgate policy explain policies/demo.json --tool refund_payment --args '{\"amount\": 5000}'
  toolgate policy explain policies/demo.json --tool create_agent_checkout_session --calls 31

Exit codes: 0 success, 1 a check failed, 2 usage or runtime error.
Docs: README.md and docs/ in the repository.";

/// toolgate: a policy gateway for the Model Context Protocol.
///
/// toolgate stands between AI agents and MCP servers and checks every tool call against
/// a JSON policy before it runs: allow or deny, argument rules, rate limits, approvals.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, test and explain policy documents, without calling anything.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(c) => cmd::policy::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
