//! The `toolgate` binary: argument parsing, one module per subcommand, errors to exit codes.
//!
//! Exit codes: 0 success, 1 a check failed (invalid policy, failed test, broken chain),
//! 2 usage or runtime error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that ends the process quietly (exit 2) when stdout is closed, as when the
/// output is piped into `head`, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(2);
        }
    }};
}

mod cmd;

const EXAMPLES: &str = "\
Examples:
  toolgate serve                                  run the gateway with ./toolgate.toml
  toolgate run --policy p.json -- npx -y @modelcontextprotocol/server-everything
                                                  stdio mode, for desktop MCP clients
  toolgate grants create --server demo --label alice-laptop
  toolgate policy check policies/*.json
  toolgate policy test policies/demo.json
  toolgate policy explain policies/demo.json --tool refund_payment --args '{\"amount\": 5000}'
  toolgate policy explain policies/demo.json --tool create_agent_checkout_session --calls 31
  toolgate audit tail -f                          watch calls and decisions as they happen
  toolgate audit verify                           check the audit log's hash chain
  toolgate approvals list                         calls waiting for a person
  toolgate approvals approve ap_1234              let a held call run (once)
  toolgate policy replay draft.json --since 7d    what a draft would change, on recorded calls

Exit codes: 0 success, 1 a check failed, 2 usage or runtime error.
Docs: README.md and docs/ in the repository.";

/// toolgate: a policy gateway for the Model Context Protocol.
///
/// toolgate stands between AI agents and MCP servers and checks every tool call against
/// a JSON policy before it runs: allow or deny, argument rules, rate limits, approvals.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    /// Log lines on stderr as `text` (default) or `json` (one object per line, with the
    /// request's id in `span.id`; for log shippers). `RUST_LOG` sets the level.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TOOLGATE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: agents connect to http://LISTEN/mcp/SERVER with a grant's token.
    ///
    /// On first start with an empty store it creates one `quickstart` grant per server and
    /// prints each token once. Config and policy files are reloaded when they change.
    ///
    /// Also served on LISTEN: the dashboard at `/` and the admin API at `/api/v1` (admin
    /// tokens: `toolgate admin-tokens create`), `/metrics` (Prometheus), `/healthz`
    /// (liveness) and `/readyz` (503 while the store, Redis or the audit log is
    /// unreachable). Keep LISTEN on a private address. Replicas: `store = "redis://…"` and
    /// `[audit] store = "postgres://…"` in the config (docs/DEPLOY.md).
    Serve {
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Stdio mode for desktop clients: toolgate is the stdio server the client starts; it
    /// starts CMD as the real server and enforces the policy on it.
    ///
    /// Same enforcement, audit log and approvals as `serve`. State goes to the store of
    /// `--config` (default ./toolgate.toml), else to ~/.local/share/toolgate/. Logs go to
    /// stderr; stdout carries only MCP messages.
    Run(cmd::run::RunArgs),
    /// Manage grants: bearer tokens for one server, each with a policy.
    Grants {
        #[command(subcommand)]
        command: cmd::grants::GrantsCommand,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Pinned tool definitions: list them (and what changed), approve a changed one.
    Tools {
        #[command(subcommand)]
        command: cmd::tools::ToolsCommand,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// The approval queue: calls held by `require_approval`, approved or denied here.
    Approvals {
        #[command(subcommand)]
        command: cmd::approvals::ApprovalsCommand,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Tokens for the admin API (`/api/v1`), each with a role.
    AdminTokens {
        #[command(subcommand)]
        command: cmd::admin::AdminCommand,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Connect an identity to a server with `auth = "oauth"`: prints (and opens) the URL a
    /// person visits once to consent; the gateway's `/oauth/callback` stores the tokens.
    ///
    /// From then on, every call that identity makes to the server goes with its own
    /// token, refreshed before it expires; agents never see it. docs/OAUTH.md.
    Connect(cmd::connect::ConnectArgs),
    /// Disconnect an identity from a server with `auth = "oauth"`: its tokens are revoked
    /// at the authorization server (where it offers revocation) and forgotten. Its calls
    /// are then denied with rule `(not connected)`.
    Disconnect(cmd::connect::ConnectArgs),
    /// List each identity's connections to servers with `auth = "oauth"` (never a token).
    Connections {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Read the audit log: tail, query, verify the hash chain, export.
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Calls per minute, deny %, top deny rules and the last denials, from the audit log.
    Status {
        /// The span to summarise: a duration back from now (`60m`, `24h`) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN", default_value = "60m")]
        since: String,
        #[command(flatten)]
        config: cmd::ConfigArg,
    },
    /// Validate, test, explain and replay policy documents, without calling anything.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Risk-classify a server's tools and optionally write a starter policy.
    ///
    /// Connects to a server (`URL`, or `-- CMD ARGS…` for stdio) or reads saved `tools/list`
    /// results (`--file`, many at once). Each tool gets a category
    /// (Read, Write, Execute, Financial, Destructive), a severity, a confidence and the
    /// signals behind them; each server a grade A to F. Exit 1 if any tool carries an attack
    /// signal.
    Scan(cmd::scan::ScanArgs),
    /// Run the bundled demo MCP server (a dental-planning practice), over stdio by default.
    Demo {
        /// Serve over stdio (the default).
        #[arg(long, conflicts_with = "http")]
        stdio: bool,
        /// Serve Streamable HTTP on this address instead (path /mcp).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// With --http: serve statelessly with JSON answers (no sessions), as the benchmark's upstream.
        #[arg(long, requires = "http")]
        stateless: bool,
    },
}

/// Logs to stderr; `RUST_LOG` filters (default `info`, `warn` for the demo server).
fn init_logging(quiet: bool, format: LogFormat) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Policy(_) | Command::Audit { .. } | Command::Status { .. }
    ) {
        init_logging(matches!(cli.command, Command::Demo { .. }), cli.log_format);
    }
    let result = match cli.command {
        Command::Serve { config } => cmd::serve::run(&config),
        Command::Run(a) => cmd::run::run(&a),
        Command::Grants { command, config } => cmd::grants::run(command, &config),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Audit { command, config } => cmd::audit::run(command, &config),
        Command::Approvals { command, config } => cmd::approvals::run(command, &config),
        Command::AdminTokens { command, config } => cmd::admin::run(command, &config),
        Command::Status { since, config } => cmd::audit::status(&config, &since),
        Command::Tools { command, config } => cmd::tools::run(command, &config),
        Command::Scan(a) => cmd::scan::run(&a),
        Command::Connect(a) => cmd::connect::connect(&a),
        Command::Disconnect(a) => cmd::connect::disconnect(&a),
        Command::Connections { json, config } => cmd::connect::list(&config, json),
        Command::Demo {
            stdio: _,
            http,
            stateless,
        } => cmd::demo::run(http, stateless),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Line by line: a message of several lines (every error of a config) keeps its
            // line breaks; each line is still escaped.
            let text = e.to_string();
            for (i, line) in text.lines().enumerate() {
                let lead = if i == 0 { "error: " } else { "" };
                eprintln!("{lead}{}", cmd::Escaped(line));
            }
            for cause in e.chain().skip(1) {
                for (i, line) in cause.to_string().lines().enumerate() {
                    let lead = if i == 0 { "  caused by: " } else { "" };
                    eprintln!("{lead}{}", cmd::Escaped(line));
                }
            }
            ExitCode::from(2)
        }
    }
}
