//! `toolgate scan [--format table|json|markdown] [--policy-out FILE] (URL | -- CMD ARGS… |
//! --server NAME [--config FILE] | --file TOOLS.json…)`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use toolgate_scan::{report, starter_policy, tools_from_list_result, ServerReport};

use super::{escape, Escaped};

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A table per server (colours on a terminal).
    Table,
    /// JSON (schema in docs/SCAN.md).
    Json,
    /// Markdown.
    Markdown,
}

/// Arguments of `scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Saved `tools/list` results: `{"tools": [...]}`, a JSON-RPC response, or an array.
    #[arg(long = "file", value_name = "TOOLS.json", num_args = 1..)]
    files: Vec<PathBuf>,
    /// A Streamable HTTP server URL.
    #[arg(value_name = "URL")]
    url: Option<String>,
    /// After `--`: a command that starts a stdio server (`-- npx some-server`). Everything
    /// after `--` is the server's: put scan's options before it.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
    /// A header for the URL's server, `Name: value` (repeatable), e.g. for auth.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the starter policy here.
    #[arg(long, value_name = "FILE")]
    policy_out: Option<PathBuf>,
    /// A server of the gateway's config (`--config`), reached as toolgate reaches it; for a
    /// virtual server, the tools it exposes, under their exposed names (before any policy).
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    #[command(flatten)]
    cfg: super::ConfigArg,
}

/// The tools of a server of the config; a virtual server's gathered from its includes and
/// renamed as agents see them (the first include claiming a name keeps it).
async fn config_server_tools(cfg: &toolgate_gateway::Config, name: &str) -> Result<Vec<Value>> {
    use toolgate_gateway::config::Transport;
    let Some(srv) = cfg.servers.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = cfg.servers.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no server named `{name}` in the config (it has: {})",
            names.join(", ")
        );
    };
    let includes = match &srv.transport {
        Transport::Virtual { includes } => includes,
        _ => return real_server_tools(srv).await,
    };
    let mut out: Vec<Value> = vec![];
    for inc in includes {
        let Some(real) = cfg.servers.iter().find(|s| s.name == inc.server) else {
            bail!(
                "virtual server `{name}` includes `{}`, which is not in the config",
                inc.server
            );
        };
        let tools = real_server_tools(real)
            .await
            .with_context(|| format!("server `{}` (included by `{name}`)", inc.server))?;
        for mut t in tools {
            let Some(exposed) = t
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| inc.expose(n))
            else {
                continue;
            };
            if out
                .iter()
                .any(|o| o.get("name").and_then(Value::as_str) == Some(exposed.as_str()))
            {
                continue;
            }
            if let Some(d) = inc.description(&exposed) {
                t["description"] = json!(d);
            }
            t["name"] = json!(exposed);
            out.push(t);
        }
    }
    Ok(out)
}

async fn real_server_tools(srv: &toolgate_gateway::config::ServerConfig) -> Result<Vec<Value>> {
    use toolgate_gateway::config::Transport;
    match &srv.transport {
        Transport::Http { url, headers } => super::fetch_tools::over_http(url, headers).await,
        Transport::Sse { url, headers } => super::fetch_tools::over_sse(url, headers).await,
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => super::fetch_tools::over_stdio_in(command, args, env, Some(cwd)).await,
        Transport::Virtual { .. } => bail!("a virtual server cannot include another"),
    }
}

/// Runs `scan`.
pub fn run(a: &ScanArgs) -> Result<ExitCode> {
    if a.files.is_empty() && a.url.is_none() && a.command.is_empty() && a.server.is_none() {
        bail!("nothing to scan: pass a URL, `-- CMD ARGS…`, --server NAME (a server of toolgate.toml, virtual ones too), or --file TOOLS.json (a saved `tools/list` result)");
    }
    if let Some(opt) = misplaced_option(&a.command) {
        bail!(
            "`{opt}` comes after `--`, so it would go to the server, not to scan: put scan's options before the command (`toolgate scan --format json --policy-out starter.json -- CMD ARGS…`)"
        );
    }
    let mut reports = vec![];
    if let Some(url) = &a.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("`{url}` is not an http:// or https:// URL; to start a stdio server put its command after `--`");
        }
    }
    if a.url.is_some() || !a.command.is_empty() {
        let mut headers = vec![];
        for h in &a.headers {
            let Some((k, v)) = h.split_once(':') else {
                bail!("`--header {h}`: expected `Name: value`")
            };
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if let Some(url) = &a.url {
            let tools = rt.block_on(super::fetch_tools::over_http(url, &headers))?;
            let defs: Vec<_> = tools
                .iter()
                .filter_map(toolgate_scan::ToolDef::from_value)
                .collect();
            reports.push(report(url, &defs));
        }
        if !a.command.is_empty() {
            let tools = rt.block_on(super::fetch_tools::over_stdio(&a.command))?;
            let defs: Vec<_> = tools
                .iter()
                .filter_map(toolgate_scan::ToolDef::from_value)
                .collect();
            reports.push(report(&a.command.join(" "), &defs));
        }
    }
    if let Some(name) = &a.server {
        let cfg = super::load_config(&a.cfg)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let tools = rt.block_on(config_server_tools(&cfg, name))?;
        let defs: Vec<_> = tools
            .iter()
            .filter_map(toolgate_scan::ToolDef::from_value)
            .collect();
        reports.push(report(name, &defs));
    }
    let show_progress = a.files.len() > 1 && std::io::stderr().is_terminal();
    for (i, f) in a.files.iter().enumerate() {
        if show_progress {
            let done = (i + 1) * 30 / a.files.len();
            eprint!(
                "\r[{}{}] {}/{} {}\u{1b}[K",
                "#".repeat(done),
                ".".repeat(30 - done),
                i + 1,
                a.files.len(),
                f.display()
            );
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read `{}`", f.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not valid JSON", f.display()))?;
        let Some(tools) = tools_from_list_result(&v) else {
            bail!("`{}`: expected a `tools/list` result (an object with `tools`, a JSON-RPC response with `result.tools`, or an array of tools)", f.display());
        };
        let name = v
            .get("server")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                f.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        reports.push(report(&name, &tools));
    }
    if show_progress {
        eprintln!();
    }
    match a.format {
        Format::Json => say!(
            "{}",
            serde_json::to_string_pretty(&json!({"version": 1, "servers": reports}))?
        ),
        Format::Markdown => print_markdown(&reports),
        Format::Table => print_table(&reports, std::io::stdout().is_terminal()),
    }
    if let Some(out) = &a.policy_out {
        let policy = starter_policy(&reports);
        let text = serde_json::to_string_pretty(&policy)? + "\n";
        toolgate_policy::load_str(&text)
            .map_err(|e| anyhow::anyhow!("the starter policy does not validate: {e}"))?;
        std::fs::write(out, text).with_context(|| format!("cannot write `{}`", out.display()))?;
        eprintln!(
            "wrote the starter policy to {} (check it with `toolgate policy check`)",
            out.display()
        );
    }
    let attacked = reports.iter().any(|r| r.grade == 'F');
    Ok(if attacked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A scan option among the server's arguments, as in `scan -- CMD ARGS --policy-out F`:
/// everything after `--` goes to the server, so scan would run without it and write no
/// policy. `--policy-out` always; `--format` only with one of scan's formats. `--header`,
/// `--file` and `--log-format` are left alone: servers take them too (the `mcp-remote`
/// proxy takes `--header`).
fn misplaced_option(command: &[String]) -> Option<String> {
    let formats = ["table", "json", "markdown"];
    let args = command.get(1..).unwrap_or_default();
    args.iter().enumerate().find_map(|(i, a)| {
        let (flag, value) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (a.as_str(), args.get(i + 1).map(String::as_str)),
        };
        let ours = match flag {
            "--policy-out" => true,
            "--format" => value.is_some_and(|v| formats.contains(&v)),
            _ => false,
        };
        ours.then(|| flag.to_string())
    })
}

fn paint(s: &str, severity: &str, colour: bool) -> String {
    if !colour {
        return s.to_string();
    }
    let code = match severity {
        "Critical" => "31;1",
        "High" => "31",
        "Medium" => "33",
        _ => "32",
    };
    format!("\u{1b}[{code}m{s}\u{1b}[0m")
}

fn print_table(reports: &[ServerReport], colour: bool) {
    for r in reports {
        say!(
            "server {}: grade {} ({})",
            Escaped(&r.server),
            r.grade,
            Escaped(&r.grade_reasons.join("; "))
        );
        say!(
            "  {:<36} {:<12} {:<9} {:>5}  signals",
            "TOOL",
            "CATEGORY",
            "SEVERITY",
            "CONF"
        );
        for t in &r.tools {
            let a = &t.assessment;
            let sev = format!("{:<9}", a.severity.as_str());
            let signals: Vec<String> = a.signals.iter().map(|s| s.id.to_string()).collect();
            say!(
                "  {:<36} {:<12} {} {:>5.2}  {}",
                Escaped(&a.name),
                a.category.as_str(),
                paint(&sev, a.severity.as_str(), colour),
                a.confidence,
                Escaped(&signals.join(", "))
            );
        }
        let cats: Vec<String> = r
            .by_category
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let sevs: Vec<String> = r
            .by_severity
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        say!(
            "  by category: {}; by severity: {}",
            cats.join(", "),
            sevs.join(", ")
        );
        say!();
    }
}

fn print_markdown(reports: &[ServerReport]) {
    for r in reports {
        say!("## {}: grade {}\n", Escaped(&r.server), r.grade);
        for reason in &r.grade_reasons {
            say!("- {}", Escaped(reason));
        }
        say!("\n| tool | category | severity | confidence | signals | recommended |\n|---|---|---|---|---|---|");
        for t in &r.tools {
            let a = &t.assessment;
            let signals: Vec<String> = a
                .signals
                .iter()
                .map(|s| format!("`{}`: {}", s.id, escape(&s.message).replace('|', "\\|")))
                .collect();
            say!(
                "| `{}` | {} | {} | {:.2} | {} | `{}` |",
                Escaped(&a.name),
                a.category.as_str(),
                a.severity.as_str(),
                a.confidence,
                signals.join("<br>"),
                t.recommended
            );
        }
        say!();
    }
}
