//! `toolgate run`: the stdio front for desktop clients. The client starts toolgate as its
//! stdio MCP server; toolgate starts the real server (`CMD ARGS…`) as its child.
//!
//! There is no second copy of enforcement here. Each newline-delimited JSON-RPC message
//! from the client is carried, in process and without a socket, into the very router
//! `toolgate serve` answers ([`crate::front::router`]), as a `POST /mcp/{server}` of the
//! one local grant ([`AppState::with_local_grant`]); its answer (JSON, or SSE events) goes
//! back to the client as lines. So admission, judgement, limits, approvals, pinning, the
//! audit trail, metrics and the relay are the gateway's own, by construction. The child is
//! the session's stdio channel, started by the client's `initialize`; messages the child
//! sends on its own (server-to-client requests, notifications) come through the session's
//! GET stream.
//!
//! When the client closes stdin, the child's stdin is closed and it has 5 s to exit; when
//! the child exits, so does `toolgate run`, with its exit code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use toolgate_protocol::sse::SseParser;
use toolgate_protocol::{error_codes, error_response};
use tower::ServiceExt;

use crate::session::UpstreamSession;
use crate::state::AppState;
use crate::upstream::{read_line, Line};

/// How long the child has to exit after the client closed stdin.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Runs stdio mode on this process's stdin and stdout until the client closes stdin or
/// the child exits; returns the child's exit code.
pub async fn run(st: Arc<AppState>) -> Result<i32, String> {
    run_on(st, tokio::io::stdin(), tokio::io::stdout()).await
}

/// One message in, as the router takes it.
fn post(server: &str, session: Option<&str>, line: Bytes) -> Request<Body> {
    let mut b = Request::post(format!("/mcp/{server}"))
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    b.body(Body::from(line)).unwrap_or_default()
}

/// The session's GET stream: what the child sends on its own.
fn get(server: &str, session: &str) -> Request<Body> {
    Request::get(format!("/mcp/{server}"))
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "text/event-stream")
        .header("mcp-session-id", session)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Writes an answer's messages to the client, one line each: the JSON body, or the data
/// of each SSE event. Returns when the body ends. `id` is the request's id (raw JSON) when
/// it was a request: a refusal the front wrote before reading the message (the store down
/// at admission) says `"id": null`, which over HTTP is paired with its request by the
/// exchange; over stdio only the id pairs them, so it is put in.
async fn relay_answer(
    resp: axum::response::Response,
    out: mpsc::UnboundedSender<Bytes>,
    id: Option<String>,
) {
    let sse = crate::respond::is_sse(&resp);
    let mut body = resp.into_body().into_data_stream();
    if sse {
        let mut parser = SseParser::new();
        while let Some(Ok(chunk)) = body.next().await {
            let Ok(events) = parser.push(&chunk) else {
                tracing::error!("an answer event over the size limit; dropped");
                return;
            };
            for ev in events.into_iter().filter(|e| !e.data.is_empty()) {
                let _ = out.send(one_line(ev.data.into_bytes()));
            }
        }
        return;
    }
    let mut whole = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        whole.extend_from_slice(&chunk);
    }
    if !whole.iter().all(u8::is_ascii_whitespace) {
        let _ = out.send(one_line(with_request_id(whole, id.as_deref())));
    }
}

/// An error answer with `"id": null` gets the request's id (see [`relay_answer`]); any
/// other message is left as it is.
fn with_request_id(msg: Vec<u8>, id: Option<&str>) -> Vec<u8> {
    let Some(id) = id else {
        return msg;
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&msg) else {
        return msg;
    };
    let Some(obj) = v.as_object_mut() else {
        return msg;
    };
    if !obj.contains_key("error") || !obj.get("id").is_some_and(serde_json::Value::is_null) {
        return msg;
    }
    match serde_json::from_str::<serde_json::Value>(id) {
        Ok(id) => {
            obj.insert("id".into(), id);
            serde_json::to_vec(&v).unwrap_or(msg)
        }
        Err(_) => msg,
    }
}

/// A message as one line (stdio is newline-delimited): re-encoded compactly if it spans
/// several.
fn one_line(msg: Vec<u8>) -> Bytes {
    if !msg.contains(&b'\n') {
        return Bytes::from(msg);
    }
    match serde_json::from_slice::<serde_json::Value>(&msg) {
        Ok(v) => Bytes::from(v.to_string()),
        Err(_) => Bytes::from(msg.into_iter().filter(|b| *b != b'\n').collect::<Vec<u8>>()),
    }
}

/// [`run`] on any reader and writer (tests use pipes).
pub async fn run_on(
    st: Arc<AppState>,
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<i32, String> {
    let cfg = st.config();
    let Some(server) = cfg.servers.first().map(|s| s.name.clone()) else {
        return Err("stdio mode needs exactly one server".into());
    };
    let max_line = cfg.max_body;
    drop(cfg);
    let app = crate::front::router(st.clone());

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = out_rx.recv().await {
            if output.write_all(&line).await.is_err()
                || output.write_all(b"\n").await.is_err()
                || output.flush().await.is_err()
            {
                break;
            }
        }
    });

    let session: Arc<Mutex<Option<String>>> = Arc::default();
    // Fired when the child's stream ends: the child has exited.
    let (gone_tx, mut gone_rx) = mpsc::channel::<()>(1);
    let mut input = BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        let read = tokio::select! {
            r = read_line(&mut input, &mut buf, max_line) => r,
            _ = gone_rx.recv() => break,
        };
        let line = match read {
            Ok(Line::End) => break,
            Ok(Line::TooLong) => {
                let e = error_response(
                    "null",
                    error_codes::INVALID_REQUEST,
                    &format!("a message over max_body ({max_line} bytes); refused"),
                    None,
                );
                let _ = out_tx.send(Bytes::from(e));
                continue;
            }
            Ok(Line::Read) => Bytes::copy_from_slice(buf.trim_ascii()),
            Err(e) => {
                tracing::error!("reading the client: {e}");
                break;
            }
        };
        if line.is_empty() {
            continue;
        }
        // A request's id (never a response's: the client answering the server's request
        // with that number is not waiting for anything).
        let id = toolgate_protocol::Envelope::parse(&line)
            .ok()
            .filter(|e| e.kind == toolgate_protocol::Kind::Request)
            .and_then(|e| e.id.map(|raw| raw.get().to_string()));
        let sid = session.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Ok(resp) = app
            .clone()
            .oneshot(post(&server, sid.as_deref(), line))
            .await;
        if sid.is_none() && resp.status() == StatusCode::OK {
            if let Some(new) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                *session.lock().unwrap_or_else(|e| e.into_inner()) = Some(new.to_string());
                let Ok(stream) = app.clone().oneshot(get(&server, new)).await;
                let (out, gone) = (out_tx.clone(), gone_tx.clone());
                tokio::spawn(async move {
                    relay_answer(stream, out, None).await;
                    let _ = gone.send(()).await;
                });
            }
        }
        tokio::spawn(relay_answer(resp, out_tx.clone(), id));
    }

    // The client left or the child exited: let the child finish, then report its code.
    let sid = session.lock().unwrap_or_else(|e| e.into_inner()).take();
    let code = match sid.and_then(|id| st.sessions.remove_quietly(&id)) {
        Some(s) => match &s.upstream {
            UpstreamSession::Channel(c) => {
                c.close_input().await;
                c.wait_exit(EXIT_GRACE).await
            }
            UpstreamSession::Http { .. } => 0,
            UpstreamSession::Virtual(m) => {
                m.close();
                0
            }
        },
        None => 0,
    };
    drop(out_tx);
    // Answers still streaming end with the child; what they wrote is flushed.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(code)
}
