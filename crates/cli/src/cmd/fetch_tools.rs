//! A minimal MCP client for `scan`: `initialize`, `notifications/initialized`, then
//! `tools/list` page by page, over Streamable HTTP, legacy HTTP+SSE (2024-11-05: a URL
//! whose `POST` is refused and whose `GET` answers an event stream) or stdio.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PAGES: u64 = 100;

/// One connection to a server: send a message, get the answer to it (if it is a request).
trait Session {
    async fn send(&mut self, msg: Value) -> Result<Value>;
}

/// `initialize`, `initialized`, then every `tools/list` page.
async fn list_tools(session: &mut impl Session) -> Result<Vec<Value>> {
    let init = session
        .send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "toolgate-scan", "version": env!("CARGO_PKG_VERSION")}}}),
        )
        .await?;
    if let Some(e) = init.get("error") {
        bail!("initialize failed: {e}");
    }
    session
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    let mut tools = vec![];
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let mut req = json!({"jsonrpc": "2.0", "id": 2 + page, "method": "tools/list"});
        if let Some(c) = &cursor {
            req["params"] = json!({"cursor": c});
        }
        let resp = session.send(req).await?;
        if let Some(e) = resp.get("error") {
            bail!("tools/list failed: {e}");
        }
        let result = resp
            .get("result")
            .context("tools/list answered without a result")?;
        tools.extend(
            result
                .get("tools")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => return Ok(tools),
        }
    }
    bail!("tools/list returned more than {MAX_PAGES} pages")
}

/// The response with `id` from a JSON or SSE body.
fn response_from(body: &str, ctype: &str, id: &Value) -> Result<Value> {
    if ctype.starts_with("text/event-stream") {
        for event in body.split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                if v.get("id") == Some(id) {
                    return Ok(v);
                }
            }
        }
        bail!("the event stream had no answer to request {id}")
    }
    serde_json::from_str(body).context("the server's answer is not JSON")
}

struct Http<'a> {
    client: reqwest::Client,
    url: &'a str,
    headers: &'a [(String, String)],
    session: Option<String>,
}

impl Session for Http<'_> {
    async fn send(&mut self, msg: Value) -> Result<Value> {
        let mut req = self
            .client
            .post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(msg.to_string());
        for (k, v) in self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach `{}`", self.url))?;
        let status = resp.status();
        let Some(id) = msg.get("id") else {
            return Ok(Value::Null);
        };
        if !status.is_success() {
            let hint = if status.as_u16() == 401 {
                " (pass credentials with --header 'Authorization: Bearer …')"
            } else {
                ""
            };
            bail!(
                "`{}` answered {} with HTTP {status}{hint}",
                self.url,
                msg["method"]
            );
        }
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_string());
        }
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        response_from(&resp.text().await?, &ctype, id)
    }
}

/// Lists the tools of a Streamable HTTP server; a legacy HTTP+SSE one is recognised and
/// spoken to in its own transport (said on stderr).
pub async fn over_http(url: &str, headers: &[(String, String)]) -> Result<Vec<Value>> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
    let streamable = list_tools(&mut Http {
        client: client.clone(),
        url,
        headers,
        session: None,
    })
    .await;
    match streamable {
        Ok(tools) => Ok(tools),
        Err(e) if is_sse_endpoint(&client, url, headers).await => {
            eprintln!("toolgate: `{url}` is a legacy HTTP+SSE (2024-11-05) endpoint, not Streamable HTTP ({e}); listing its tools over HTTP+SSE");
            over_sse(url, headers).await
        }
        Err(e) => Err(e),
    }
}

/// True when `GET url` answers an event stream: a legacy HTTP+SSE endpoint.
async fn is_sse_endpoint(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
) -> bool {
    let mut req = client
        .get(url)
        .header("accept", "text/event-stream")
        .timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            r.status().is_success()
                && r.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("text/event-stream"))
        }
        Err(_) => false,
    }
}

/// A legacy HTTP+SSE connection (the gateway's own channel).
struct Sse {
    channel: std::sync::Arc<toolgate_gateway::upstream::channel::Channel>,
}

impl Session for Sse {
    async fn send(&mut self, msg: Value) -> Result<Value> {
        let Some(id) = msg.get("id").map(Value::to_string) else {
            self.channel.send(msg.to_string().as_bytes()).await?;
            return Ok(Value::Null);
        };
        let mut rx = self.channel.register(&id, None);
        self.channel.send(msg.to_string().as_bytes()).await?;
        let key = toolgate_gateway::upstream::id_key(&id);
        let deadline = tokio::time::sleep(TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let m = m.context("the SSE server closed the stream before answering")?;
                    let v: Value = serde_json::from_slice(&m).context("the server's answer is not JSON")?;
                    if v.get("method").is_none() && v.get("id").map(Value::to_string).map(|k| toolgate_gateway::upstream::id_key(&k)) == Some(key.clone()) {
                        return Ok(v);
                    }
                }
                () = &mut deadline => bail!("no answer to {} within {} s", msg["method"], TIMEOUT.as_secs()),
            }
        }
    }
}

/// Lists the tools of a legacy HTTP+SSE server.
pub async fn over_sse(url: &str, headers: &[(String, String)]) -> Result<Vec<Value>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let channel = toolgate_gateway::upstream::channel::Channel::connect_sse(
        "scan",
        &http,
        url,
        headers,
        toolgate_gateway::config::DEFAULT_MAX_ANSWER,
    )
    .await
    .map_err(|e| anyhow::anyhow!("`{url}`: {e}"))?;
    let tools = list_tools(&mut Sse {
        channel: channel.clone(),
    })
    .await;
    channel.kill();
    tools
}

struct Stdio {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Session for Stdio {
    async fn send(&mut self, msg: Value) -> Result<Value> {
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let Some(id) = msg.get("id") else {
            return Ok(Value::Null);
        };
        loop {
            let line = tokio::time::timeout(TIMEOUT, self.lines.next_line())
                .await
                .context("the server did not answer in time")??;
            let Some(line) = line else {
                bail!("the server exited before answering")
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("id") == Some(id) && v.get("method").is_none() {
                    return Ok(v);
                }
            }
        }
    }
}

/// Starts `cmd` and lists its tools over stdio (the child is stopped afterwards).
pub async fn over_stdio(cmd: &[String]) -> Result<Vec<Value>> {
    let (program, args) = cmd.split_first().context("no command after `--`")?;
    over_stdio_in(std::path::Path::new(program), args, &[], None).await
}

/// [`over_stdio`] for a server of the config: its program, arguments, extra environment
/// and working directory.
pub async fn over_stdio_in(
    program: &std::path::Path,
    args: &[String],
    env: &[(String, String)],
    cwd: Option<&std::path::Path>,
) -> Result<Vec<Value>> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let program = program.display();
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let stdin = child.stdin.take().context("no stdin")?;
    let lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    list_tools(&mut Stdio {
        _child: child,
        stdin,
        lines,
    })
    .await
}
