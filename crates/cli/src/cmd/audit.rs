//! `toolgate audit tail|query|verify|export` and `toolgate status`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use toolgate_audit::{Kind, Record};
use toolgate_gateway::config::AuditStore;
use toolgate_policy::duration::parse_duration;
use toolgate_store::{AuditFilter, AuditLog};

use super::{load_config_or_user as load_config, now_ms, ConfigArg, Escaped};

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The latest records; with -f, keep printing new ones as they are written.
    Tail {
        /// How many records to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Follow: print new records until Ctrl-C.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Records matching every filter given, oldest first.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check the hash chain end to end; exit 1 and name the first bad record if it is broken.
    Verify,
    /// Every record (or those in a time span) as JSON Lines, streamed in constant memory.
    Export {
        /// Only `jsonl` (one record per line).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// From this time: a duration back from now (`7d`, `12h`) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Before this time (same forms as --since).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One aligned line per record.
    Table,
    /// One JSON array.
    Json,
    /// One JSON record per line.
    Jsonl,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON record per line.
    Jsonl,
}

/// Filters shared by `audit query`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Grant id (`g_…`) or label.
    #[arg(long)]
    grant: Option<String>,
    /// Identity.
    #[arg(long)]
    identity: Option<String>,
    /// Server.
    #[arg(long)]
    server: Option<String>,
    /// Tool.
    #[arg(long)]
    tool: Option<String>,
    /// `allow` or `deny`.
    #[arg(long)]
    decision: Option<String>,
    /// The rule, exactly (`/tools/refund/deny_if/0`, `(default deny)`).
    #[arg(long)]
    rule: Option<String>,
    /// Record kind: call, outcome, pin, approval, admin, prune.
    #[arg(long)]
    kind: Option<String>,
    /// From this time: a duration back from now (`7d`, `90m`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
}

/// A time given as a duration back from now (`7d`) or as RFC 3339.
pub fn parse_when(text: &str, now: u64) -> Result<u64> {
    if let Some(secs) = parse_duration(text) {
        return Ok(now.saturating_sub(secs.saturating_mul(1000)));
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(t.timestamp_millis().max(0) as u64),
        Err(_) => bail!(
            "`{text}` is neither a duration back from now (`7d`, `12h`, `90m`) nor an RFC 3339 time (`2026-11-25T08:00:00Z`)"
        ),
    }
}

/// An RFC 3339 UTC time with milliseconds.
pub fn show_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Opens the config's audit log for reading; errors when there is none yet.
pub fn open_existing(arg: &ConfigArg) -> Result<AuditLog> {
    let cfg = load_config(arg)?;
    if let AuditStore::Sqlite { path, .. } = &cfg.audit.store {
        if !path.exists() {
            bail!(
                "no audit log at `{}`: the gateway has not recorded anything yet, or `[audit] path` in `{}` points elsewhere",
                path.display(),
                cfg.file.display()
            );
        }
    }
    Ok(toolgate_gateway::bootstrap::audit_log(&cfg.audit)?)
}

fn table_line(r: &Record) -> String {
    let what = match (r.kind, r.tool.as_deref(), r.method.as_deref()) {
        (Kind::Call | Kind::Outcome, Some(t), _) => t.to_string(),
        (_, _, Some(m)) => m.to_string(),
        (_, Some(t), None) => t.to_string(),
        _ => String::new(),
    };
    let result = match r.kind {
        Kind::Outcome => r.outcome.map(|o| o.as_str()).unwrap_or("").to_string(),
        _ => r.decision.clone().unwrap_or_default(),
    };
    let detail = match r.kind {
        Kind::Outcome => format!(
            "call #{}{}",
            r.call_seq.unwrap_or(0),
            r.upstream_us
                .map(|us| format!(", {:.1} ms", us as f64 / 1000.0))
                .unwrap_or_default()
        ),
        Kind::Call => r.rule.clone().unwrap_or_default(),
        _ => r.message.clone().unwrap_or_default(),
    };
    format!(
        "{:>7}  {}  {:<8} {:<16} {:<16} {:<28} {:<8} {}",
        r.seq,
        show_time(r.at_ms),
        r.kind.as_str(),
        Escaped(r.server.as_deref().unwrap_or("-")),
        Escaped(r.grant_label.as_deref().unwrap_or("-")),
        Escaped(&what),
        Escaped(&result),
        Escaped(&detail)
    )
}

fn header() -> String {
    format!(
        "{:>7}  {:<24}  {:<8} {:<16} {:<16} {:<28} {:<8} {}",
        "seq", "time", "kind", "server", "grant", "tool/method", "result", "rule / detail"
    )
}

/// Prints records in a format; `Json` collects them into one array.
struct Printer {
    format: Format,
    first: bool,
}

impl Printer {
    fn new(format: Format) -> Self {
        Printer {
            format,
            first: true,
        }
    }

    fn print(&mut self, r: &Record) {
        match self.format {
            Format::Table => {
                if self.first {
                    say!("{}", header());
                }
                say!("{}", table_line(r));
            }
            Format::Jsonl => say!("{}", serde_json::to_string(r).unwrap_or_default()),
            Format::Json => {
                let sep = if self.first { "[\n  " } else { ",\n  " };
                let mut out = std::io::stdout().lock();
                if write!(out, "{sep}{}", serde_json::to_string(r).unwrap_or_default()).is_err() {
                    std::process::exit(2);
                }
            }
        }
        self.first = false;
    }

    fn finish(&self) {
        if self.format == Format::Json {
            say!("{}", if self.first { "[]" } else { "\n]" });
        }
    }
}

/// Runs an audit subcommand.
pub fn run(cmd: AuditCommand, arg: &ConfigArg) -> Result<ExitCode> {
    let log = open_existing(arg)?;
    let now = now_ms();
    match cmd {
        AuditCommand::Tail {
            lines,
            follow,
            format,
        } => {
            let mut last = vec![];
            log.query(&AuditFilter::default(), true, Some(lines), |r| {
                last.push(r);
                true
            })?;
            last.reverse();
            let mut printer = Printer::new(if follow && format == Format::Json {
                Format::Jsonl
            } else {
                format
            });
            let mut after = log.last_seq()?;
            if let Some(r) = last.last() {
                after = r.seq;
            }
            for r in &last {
                printer.print(r);
            }
            if !follow {
                printer.finish();
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let filter = AuditFilter {
                    after_seq: Some(after),
                    ..AuditFilter::default()
                };
                log.query(&filter, false, Some(1000), |r| {
                    after = r.seq;
                    printer.print(&r);
                    true
                })?;
            }
        }
        AuditCommand::Query {
            filter,
            limit,
            format,
        } => {
            let f = AuditFilter {
                grant: filter.grant,
                identity: filter.identity,
                server: filter.server,
                tool: filter.tool,
                decision: filter.decision,
                rule: filter.rule,
                kind: filter.kind,
                method: None,
                since_ms: filter
                    .since
                    .as_deref()
                    .map(|s| parse_when(s, now))
                    .transpose()?,
                until_ms: filter
                    .until
                    .as_deref()
                    .map(|s| parse_when(s, now))
                    .transpose()?,
                after_seq: None,
            };
            let mut printer = Printer::new(format);
            let mut n = 0u64;
            log.query(&f, false, limit, |r| {
                n += 1;
                printer.print(&r);
                true
            })?;
            printer.finish();
            if n == 0 && format == Format::Table {
                eprintln!("no records match");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => match log.verify()? {
            Ok(v) => {
                match (v.first_seq, v.last_seq) {
                    (Some(a), Some(b)) => say!(
                        "ok: {} records, #{a} to #{b}, chain intact; head {}",
                        v.records,
                        v.head
                    ),
                    _ => say!("ok: the audit log is empty"),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(b) => {
                say!("broken: {}", Escaped(&b.to_string()));
                say!("every record before #{} verified", b.seq);
                Ok(ExitCode::from(1))
            }
        },
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
            since,
            until,
            output,
        } => {
            let f = AuditFilter {
                since_ms: since.as_deref().map(|s| parse_when(s, now)).transpose()?,
                until_ms: until.as_deref().map(|s| parse_when(s, now)).transpose()?,
                ..AuditFilter::default()
            };
            let sink: Box<dyn Write + Send> = match &output {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot write `{}`", p.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let mut sink = std::io::BufWriter::new(sink);
            let mut failed = None;
            let mut n = 0u64;
            log.query(&f, false, None, |r| {
                let line = serde_json::to_string(&r).unwrap_or_default();
                if let Err(e) = writeln!(sink, "{line}") {
                    failed = Some(e);
                    return false;
                }
                n += 1;
                true
            })?;
            if let Some(e) = failed {
                if output.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::from(2));
                }
                bail!("export failed after {n} records: {e}");
            }
            sink.flush().context("export failed while flushing")?;
            if let Some(p) = &output {
                eprintln!("{n} records written to {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `toolgate status`: calls per minute, deny %, top deny rules, last denials.
pub fn status(arg: &ConfigArg, since: &str) -> Result<ExitCode> {
    let log = open_existing(arg)?;
    let now = now_ms();
    let from = parse_when(since, now)?;
    let minutes = ((now.saturating_sub(from)) as f64 / 60_000.0).max(1.0 / 60.0);
    let s = log.stats(from)?;
    say!("audit log: {}", log.path().display());
    say!("since {} ({since} ago):", show_time(from));
    let pct = if s.calls == 0 {
        0.0
    } else {
        s.denied as f64 * 100.0 / s.calls as f64
    };
    say!(
        "  tools/call: {} ({:.2} per minute), denied {} ({pct:.1}%)",
        s.calls,
        s.calls as f64 / minutes,
        s.denied
    );
    if !s.top_deny_rules.is_empty() {
        say!("  top deny rules:");
        for (rule, n) in &s.top_deny_rules {
            say!("    {n:>6}  {}", Escaped(rule));
        }
    }
    let mut denials = vec![];
    let f = AuditFilter {
        kind: Some("call".into()),
        decision: Some("deny".into()),
        since_ms: Some(from),
        ..AuditFilter::default()
    };
    log.query(&f, true, Some(5), |r| {
        denials.push(r);
        true
    })?;
    if !denials.is_empty() {
        say!("  last denials:");
        for r in &denials {
            // The server first, as for pending approvals: `toolgate run`'s grants are all
            // labelled `stdio`, so the label alone does not say which server denied.
            say!(
                "    #{} {} {} {} (grant {}) by {}: {}",
                r.seq,
                show_time(r.at_ms),
                Escaped(r.server.as_deref().unwrap_or("-")),
                Escaped(r.tool.as_deref().unwrap_or("-")),
                Escaped(r.grant_label.as_deref().unwrap_or("-")),
                Escaped(r.rule.as_deref().unwrap_or("-")),
                Escaped(r.message.as_deref().unwrap_or(""))
            );
        }
    }
    let cfg = load_config(arg)?;
    let waiting = super::open_store(&cfg)?.approvals(true, now)?;
    if waiting.is_empty() {
        say!("  pending approvals: none");
    } else {
        say!("  pending approvals: {}", waiting.len());
        for a in waiting.iter().take(5) {
            say!(
                "    {} {} {} (grant {}), expires {}",
                Escaped(&a.id),
                Escaped(&a.server),
                Escaped(&a.tool),
                Escaped(&a.grant_label),
                show_time(a.expires_at_ms)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
