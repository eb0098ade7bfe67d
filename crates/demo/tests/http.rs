//! The Streamable HTTP endpoint, driven through the public API only: an rmcp
//! client, and raw HTTP for the legacy session handshake and stateless mode.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use rmcp::model::{CallToolRequestParams, ProgressNotificationParam};
use rmcp::service::NotificationContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use toolgate_demo::{serve_http, serve_http_with, HttpOptions, ServeError};

const ACCEPT: &str = "application/json, text/event-stream";

#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.progress.lock() {
            seen.push(params);
        }
    }
}

struct Server {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    async fn start(options: Option<HttpOptions>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(async move {
            match options {
                Some(options) => serve_http_with(listener, shutdown, options).await,
                None => serve_http(listener, shutdown).await,
            }
        });
        Ok(Self {
            url: format!("http://{addr}/mcp"),
            stop,
            task,
        })
    }

    async fn shut_down(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("server did not stop")???;
        Ok(())
    }
}

/// The JSON-RPC messages of a response, whether plain JSON or an SSE stream.
async fn messages(response: reqwest::Response) -> anyhow::Result<Vec<Value>> {
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await?;
    if !is_sse {
        return Ok(vec![serde_json::from_str(&text)?]);
    }
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect())
}

#[tokio::test]
async fn rmcp_client_over_streamable_http() -> anyhow::Result<()> {
    let server = Server::start(None).await?;
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
        .await?;

    let tools = client.list_all_tools().await?;
    ensure!((20..=32).contains(&tools.len()), "{} tools", tools.len());

    let args = json!({"patient_id": "pat_1002", "provider_id": "prov_01",
                      "start": "2026-12-04T14:00", "duration_minutes": 30, "kind": "exam"});
    let created = client
        .call_tool(
            CallToolRequestParams::new("create_appointment")
                .with_arguments(args.as_object().cloned().context("object")?),
        )
        .await?;
    ensure!(created.is_error != Some(true), "{created:?}");

    let report = client
        .call_tool(
            CallToolRequestParams::new("generate_monthly_report").with_arguments(
                json!({"month": "2026-12"})
                    .as_object()
                    .cloned()
                    .context("object")?,
            ),
        )
        .await?;
    let text = &report
        .content
        .first()
        .and_then(|c| c.as_text())
        .context("text")?
        .text;
    let report: Value = serde_json::from_str(text)?;
    // Two seeded December visits plus the one booked above.
    ensure!(
        report["sections"]["appointments"]["scheduled"] == json!(3),
        "{report}"
    );
    let steps = recorder
        .progress
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len();
    ensure!(steps == 5, "{steps} progress notifications");

    client.cancel().await?;
    server.shut_down().await
}

#[tokio::test]
async fn legacy_session_handshake_and_shared_state() -> anyhow::Result<()> {
    let server = Server::start(None).await?;
    let http = reqwest::Client::new();
    let init = http
        .post(&server.url)
        .header("accept", ACCEPT)
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}}),
        )
        .send()
        .await?;
    ensure!(init.status().is_success(), "initialize: {}", init.status());
    let session = init
        .headers()
        .get("mcp-session-id")
        .context("no Mcp-Session-Id")?
        .to_str()?
        .to_owned();
    let reply = messages(init).await?;
    ensure!(
        reply.first().map(|m| &m["result"]["serverInfo"]["name"])
            == Some(&json!("toolgate-demo-dental")),
        "{reply:?}"
    );

    let initialized = http
        .post(&server.url)
        .header("accept", ACCEPT)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await?;
    ensure!(
        initialized.status().as_u16() == 202,
        "{}",
        initialized.status()
    );

    let call = |id: u64, name: &str, arguments: Value| {
        http.post(&server.url)
            .header("accept", ACCEPT)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}}))
            .send()
    };
    let updated = messages(
        call(
            2,
            "update_patient_contact",
            json!({"patient_id": "pat_1004", "phone": "+1-555-0100"}),
        )
        .await?,
    )
    .await?;
    let last = updated.last().context("no reply")?;
    ensure!(last["result"]["isError"] != json!(true), "{last}");

    let missing =
        messages(call(3, "get_patient", json!({"patient_id": "pat_9999"})).await?).await?;
    ensure!(
        missing.last().map(|m| &m["result"]["isError"]) == Some(&json!(true)),
        "{missing:?}"
    );

    // A request without the session header is refused.
    let anonymous = http
        .post(&server.url)
        .header("accept", ACCEPT)
        .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
        .send()
        .await?;
    ensure!(
        anonymous.status().is_client_error(),
        "{}",
        anonymous.status()
    );

    // State is shared across sessions: a second client sees the new phone number.
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.url.clone())).await?;
    let patient = client
        .call_tool(
            CallToolRequestParams::new("get_patient").with_arguments(
                json!({"patient_id": "pat_1004"})
                    .as_object()
                    .cloned()
                    .context("object")?,
            ),
        )
        .await?;
    let text = &patient
        .content
        .first()
        .and_then(|c| c.as_text())
        .context("text")?
        .text;
    ensure!(text.contains("+1-555-0100"), "{text}");
    client.cancel().await?;
    server.shut_down().await
}

#[tokio::test]
async fn stateless_json_mode() -> anyhow::Result<()> {
    let options = HttpOptions::new().stateless(true).json_response(true);
    let server = Server::start(Some(options)).await?;
    let response = reqwest::Client::new()
        .post(&server.url)
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "list_invoices", "arguments": {"status": "open"}}}))
        .send()
        .await?;
    ensure!(response.status().is_success(), "{}", response.status());
    ensure!(response.headers().get("mcp-session-id").is_none());
    let reply = messages(response).await?;
    let text = reply
        .first()
        .and_then(|m| m["result"]["content"][0]["text"].as_str())
        .context("no text")?;
    ensure!(text.contains("inv_4003"), "{text}");
    server.shut_down().await
}
