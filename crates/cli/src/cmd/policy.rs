//! `toolgate policy check|test|explain`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use toolgate_policy::testing::{observed, run_tests, simulate};
use toolgate_policy::{evaluate, load_str, Call, Decision, Facts, LoadError, Loaded};

use super::Escaped;

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; every error names its JSON Pointer and what was expected.
    ///
    /// Prints `FILE: ok` or each error and warning; exits 1 if any file has an error.
    Check {
        /// Policy files (JSON).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a policy's inline `tests` and print `N passed, N failed`; exits 1 on a failure.
    Test {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show the decision for one call, the rule that made it and why, without calling anything.
    Explain(ExplainArgs),
    /// Judge the recorded calls again under a draft policy and report what would change.
    ///
    /// Reads `tools/call` records from the audit log (newly denied, newly allowed, by
    /// rule). Calls recorded with argument keys only, whose decision under the draft depends
    /// on argument values, are reported as undecidable rather than guessed. Exit 0.
    Replay(ReplayArgs),
}

/// Arguments of `policy replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The draft policy file.
    #[arg(value_name = "DRAFT")]
    file: PathBuf,
    /// Replay calls from this far back (`7d`, `12h`) or from an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "7d")]
    since: String,
    /// Only calls to this server.
    #[arg(long)]
    server: Option<String>,
    /// List at most this many changed calls per kind of change.
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: super::ConfigArg,
}

/// Arguments of `policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The tool to call.
    #[arg(long, value_name = "TOOL")]
    tool: String,
    /// The call's arguments, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    args: String,
    /// The grant label to call as (for limits scoped per grant).
    #[arg(long, value_name = "LABEL", default_value = "explain")]
    grant: String,
    /// Simulate N calls in a row to show where a limit bites.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    calls: u32,
    /// Treat the tool's pinned definition as changed since it was reviewed.
    #[arg(long)]
    definition_changed: bool,
}

/// Runs a policy subcommand.
pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { files } => check(&files),
        PolicyCommand::Test { file } => test(&file),
        PolicyCommand::Explain(a) => explain(&a),
        PolicyCommand::Replay(a) => replay(&a),
    }
}

fn replay(a: &ReplayArgs) -> Result<ExitCode> {
    let Some(draft) = load_reporting(&a.file)? else {
        return Ok(ExitCode::from(1));
    };
    let log = super::audit::open_existing(&a.config)?;
    let now = super::now_ms();
    let filter = toolgate_store::AuditFilter {
        kind: Some("call".into()),
        method: Some("tools/call".into()),
        server: a.server.clone(),
        since_ms: Some(super::audit::parse_when(&a.since, now)?),
        ..Default::default()
    };
    let mut records = vec![];
    log.query(&filter, false, None, |r| {
        records.push(r);
        true
    })?;
    let report = toolgate_audit::replay(&records, &draft.policy);
    if a.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "replayed {} calls since {} under {}:",
        report.judged,
        super::audit::show_time(filter.since_ms.unwrap_or(0)),
        a.file.display()
    );
    say!("  unchanged      {}", report.unchanged);
    say!("  newly denied   {}", report.newly_denied.len());
    say!("  newly allowed  {}", report.newly_allowed.len());
    say!("  other changes  {}", report.other_changes.len());
    say!("  undecidable    {} (only argument keys were recorded; set audit_arguments = \"full\" to replay value rules)", report.undecidable.len());
    for (title, changes) in [
        ("newly denied", &report.newly_denied),
        ("newly allowed", &report.newly_allowed),
        ("other changes", &report.other_changes),
        ("undecidable", &report.undecidable),
    ] {
        if changes.is_empty() {
            continue;
        }
        let mut by_rule: std::collections::BTreeMap<&str, usize> = Default::default();
        for c in changes.iter() {
            *by_rule.entry(c.new_rule.as_str()).or_default() += 1;
        }
        say!("{title}, by rule:");
        for (rule, n) in &by_rule {
            say!("  {n:>6}  {}", Escaped(rule));
        }
        for c in changes.iter().take(a.show) {
            say!(
                "    #{} {} {} {}: was {} ({}), now {} ({})",
                c.seq,
                super::audit::show_time(c.at_ms),
                Escaped(&c.grant),
                Escaped(&c.tool),
                Escaped(&c.old_decision),
                Escaped(&c.old_rule),
                Escaped(&c.new_decision),
                Escaped(&c.new_rule)
            );
        }
        if changes.len() > a.show {
            say!(
                "    … and {} more (--show N, or --json)",
                changes.len() - a.show
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// Loads a policy file, printing its errors; `None` when it does not validate.
fn load_reporting(path: &Path) -> Result<Option<Loaded>> {
    let text = read(path)?;
    match load_str(&text) {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            print_errors(path, &e);
            Ok(None)
        }
    }
}

fn print_errors(path: &Path, e: &LoadError) {
    say!("{}: {} error(s)", path.display(), e.errors.len());
    for d in &e.errors {
        say!("  error: {}", Escaped(&d.to_string()));
    }
    for w in &e.warnings {
        say!("  warning: {}", Escaped(&w.to_string()));
    }
}

fn check(files: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = false;
    for path in files {
        match load_reporting(path)? {
            None => failed = true,
            Some(l) => {
                say!(
                    "{}: ok ({} tools, {} tests{})",
                    path.display(),
                    l.policy.tools.len(),
                    l.policy.tests.len(),
                    if l.warnings.is_empty() {
                        String::new()
                    } else {
                        format!(", {} warning(s)", l.warnings.len())
                    }
                );
                for w in &l.warnings {
                    say!("  warning: {}", Escaped(&w.to_string()));
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn test(path: &Path) -> Result<ExitCode> {
    let Some(loaded) = load_reporting(path)? else {
        return Ok(ExitCode::from(1));
    };
    let outcomes = run_tests(&loaded.policy);
    let mut failed = 0;
    for o in &outcomes {
        let got = observed(&o.decision);
        match &o.failure {
            None => say!(
                "ok      {} {} -> {} by {}",
                Escaped(&o.pointer),
                Escaped(&o.tool),
                got.as_str(),
                Escaped(&o.decision.rule)
            ),
            Some(why) => {
                failed += 1;
                say!(
                    "FAILED  {} {}: {}",
                    Escaped(&o.pointer),
                    Escaped(&o.tool),
                    Escaped(why)
                );
            }
        }
    }
    if outcomes.is_empty() {
        say!("(the policy has no `tests`)");
    }
    say!("{} passed, {} failed", outcomes.len() - failed, failed);
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn explain(a: &ExplainArgs) -> Result<ExitCode> {
    let Some(loaded) = load_reporting(&a.file)? else {
        return Ok(ExitCode::from(1));
    };
    let args: Value = serde_json::from_str(&a.args).context("`--args` is not valid JSON")?;
    if !args.is_object() {
        bail!("`--args` must be a JSON object, such as '{{\"amount\": 100}}'");
    }
    let call = Call {
        tool: &a.tool,
        args: &args,
        grant: &a.grant,
        identity: &a.grant,
        session: "explain",
        server: "explain",
    };
    let facts = Facts {
        definition_changed: a.definition_changed,
        definition_new: false,
        approval_granted: false,
    };
    if a.calls == 1 {
        let d = evaluate(&call, &loaded.policy, &facts, 0);
        print_decision(&d);
        return Ok(ExitCode::SUCCESS);
    }
    let decisions = simulate(&loaded.policy, &call, &facts, a.calls, 0);
    say!(
        "{} calls to `{}` in a row, as grant `{}`:",
        a.calls,
        Escaped(&a.tool),
        Escaped(&a.grant)
    );
    let mut start = 0usize;
    for i in 1..=decisions.len() {
        let boundary = match (decisions.get(i), decisions.get(start)) {
            (Some(d), Some(s)) => d.effect != s.effect || d.rule != s.rule,
            _ => true,
        };
        if boundary {
            if let Some(s) = decisions.get(start) {
                let range = if i - start == 1 {
                    format!("call {}", start + 1)
                } else {
                    format!("calls {}-{}", start + 1, i)
                };
                let retry = s
                    .retry_after_secs
                    .map(|r| format!(" (retry in {r} s)"))
                    .unwrap_or_default();
                say!(
                    "  {range}: {} by {}{retry}",
                    observed(s).as_str(),
                    Escaped(&s.rule)
                );
            }
            start = i;
        }
    }
    if let Some(last) = decisions.last() {
        say!("last call:");
        print_decision(last);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_decision(d: &Decision) {
    say!("decision: {}", observed(d).as_str());
    say!("rule:     {}", Escaped(&d.rule));
    if !d.message.is_empty() {
        say!("message:  {}", Escaped(&d.message));
    }
    if let Some(detail) = &d.detail {
        say!("why:      {}", Escaped(detail));
    }
    if !d.reservations.is_empty() {
        for r in &d.reservations {
            say!(
                "takes:    {} from counter `{}` ({} scope, max {} per {} s, {})",
                r.amount,
                Escaped(&r.key.counter),
                r.key.scope.as_str(),
                r.max,
                r.window_secs,
                Escaped(&r.pointer)
            );
        }
    }
    if d.hidden {
        say!("agent sees: JSON-RPC error -32602 (unknown tool), as if the tool did not exist");
    } else if !d.is_allow() {
        if d.effect == toolgate_policy::Effect::Deny {
            say!("agent sees (a tool result with isError: true):");
            for line in d.denial_text().lines() {
                say!("  | {}", Escaped(line));
            }
        } else {
            say!("agent sees: nothing yet; the call is held until a person approves or denies it");
        }
    }
}
