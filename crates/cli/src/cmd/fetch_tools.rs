//! A minimal MCP client for `scan`: `initialize`, `notifications/initialized`, then
//! `tools/list` page by page, over Streamable HTTP or stdio.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PAGES: usize = 100;

fn init_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "toolgate-scan", "version": env!("CARGO_PKG_VERSION")}}})
}

fn list_request(id: u64, cursor: Option<&Value>) -> Value {
    match cursor {
        Some(c) => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"cursor": c}})
        }
        None => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
    }
}

/// Collects the tools of pages until there is no `nextCursor`.
async fn paginate<F, Fut>(mut call: F) -> Result<Vec<Value>>
where
    F: FnMut(Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let mut tools = vec![];
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let resp = call(list_request(2 + page as u64, cursor.as_ref())).await?;
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
fn response_from(body: &str, ctype: &str, id: u64) -> Result<Value> {
    if ctype.starts_with("text/event-stream") {
        for event in body.split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                if v.get("id") == Some(&json!(id)) {
                    return Ok(v);
                }
            }
        }
        bail!("the event stream had no answer to request {id}")
    }
    serde_json::from_str(body).context("the server's answer is not JSON")
}

/// Lists the tools of a Streamable HTTP server.
pub async fn over_http(url: &str, headers: &[(String, String)]) -> Result<Vec<Value>> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
    let post = |body: Value, session: Option<String>| {
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req.send()
    };
    let resp = post(init_request(), None)
        .await
        .with_context(|| format!("cannot reach `{url}`"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!(
            "`{url}` answered initialize with HTTP {status}{}",
            if status.as_u16() == 401 {
                " (pass credentials with --header 'Authorization: Bearer …')"
            } else {
                ""
            }
        );
    }
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let init = response_from(&resp.text().await?, &ctype, 1)?;
    if let Some(e) = init.get("error") {
        bail!("initialize failed: {e}");
    }
    let _ = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.clone(),
    )
    .await;
    paginate(|req| {
        let id = req.get("id").and_then(Value::as_u64).unwrap_or(0);
        let fut = post(req, session.clone());
        async move {
            let resp = fut.await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("tools/list: HTTP {status}");
            }
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            response_from(&resp.text().await?, &ctype, id)
        }
    })
    .await
}

/// Starts `cmd` and lists its tools over stdio.
pub async fn over_stdio(cmd: &[String]) -> Result<Vec<Value>> {
    let (program, args) = cmd.split_first().context("no command after `--`")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut send_and_wait = async |msg: Value| -> Result<Value> {
        stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        stdin.flush().await?;
        let Some(id) = msg.get("id").cloned() else {
            return Ok(Value::Null);
        };
        loop {
            let line = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .context("the server did not answer in time")??;
            let Some(line) = line else {
                bail!("the server exited before answering")
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("id") == Some(&id) && v.get("method").is_none() {
                    return Ok(v);
                }
            }
        }
    };
    let init = send_and_wait(init_request()).await?;
    if let Some(e) = init.get("error") {
        bail!("initialize failed: {e}");
    }
    send_and_wait(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
    let mut tools = vec![];
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let resp = send_and_wait(list_request(2 + page as u64, cursor.as_ref())).await?;
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
            _ => {
                let _ = child.start_kill();
                return Ok(tools);
            }
        }
    }
    bail!("tools/list returned more than {MAX_PAGES} pages")
}
