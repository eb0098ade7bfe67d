//! A message channel to an upstream, one per agent session so agents never share a
//! stateful server's state: a local MCP server process over stdio (the command comes only
//! from the config), or a legacy HTTP+SSE server (2024-11-05 transport: a GET event stream
//! whose first `endpoint` event names the URL messages are POSTed to).
//!
//! Messages from the child are routed by id to the request waiting for them; progress
//! notifications by their `progressToken`; anything else (notifications, server-to-client
//! requests) to the in-flight request when there is exactly one, otherwise to the session's
//! GET stream (kept in a bounded backlog until one is open).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use toolgate_protocol::Escaped;

use super::id_key;

/// Messages kept for a GET stream that is not open yet.
const BACKLOG: usize = 1000;

#[derive(Default)]
struct Routes {
    pending: HashMap<String, mpsc::UnboundedSender<Bytes>>,
    progress: HashMap<String, String>,
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    backlog: VecDeque<Bytes>,
}

/// Where messages to the upstream go.
enum Sink {
    /// A child's stdin, one message per line (`None` once closed).
    Stdin(tokio::sync::Mutex<Option<ChildStdin>>),
    /// POSTs to a legacy SSE server's message endpoint.
    Post {
        http: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// One upstream channel (a stdio child or a legacy SSE connection).
pub struct Channel {
    server: String,
    sink: Sink,
    routes: Mutex<Routes>,
    alive: AtomicBool,
    child: Mutex<Option<Child>>,
    /// The SSE reader, stopped by [`Channel::kill`].
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("server", &self.server)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Channel {
    /// Starts the child. Its stderr goes to the log, line by line.
    pub fn spawn(
        server: &str,
        command: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
        max_line: usize,
    ) -> std::io::Result<Arc<Self>> {
        let mut child = Command::new(command)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child has no stdio pipes"));
        };
        let proc = Arc::new(Channel {
            server: server.to_string(),
            sink: Sink::Stdin(tokio::sync::Mutex::new(Some(stdin))),
            routes: Mutex::new(Routes::default()),
            alive: AtomicBool::new(true),
            child: Mutex::new(Some(child)),
            reader: Mutex::new(None),
        });
        let name = server.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(server = %name, "upstream stderr: {}", Escaped(&line));
            }
        });
        let reader = proc.clone();
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                match super::read_line(&mut out, &mut buf, max_line).await {
                    Ok(super::Line::End) => break,
                    Ok(super::Line::TooLong) => reader.too_long(max_line),
                    Ok(super::Line::Read) => {
                        let line = buf.trim_ascii();
                        if !line.is_empty() {
                            reader.route(Bytes::copy_from_slice(line));
                        }
                    }
                    Err(e) => {
                        tracing::error!(server = %reader.server, "reading upstream stdout: {e}");
                        break;
                    }
                }
            }
            reader.died();
        });
        Ok(proc)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn died(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let mut r = self.routes();
        r.pending.clear();
        r.stream = None;
        tracing::warn!(server = %self.server, "stdio upstream exited");
    }

    /// True while the child runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// A line over `max_answer` was dropped. When one request is waiting, it is the one
    /// answered: it gets an error naming the limit (the session goes on).
    fn too_long(&self, max: usize) {
        let r = self.routes();
        let msg = format!(
            "upstream `{}` sent a message over max_answer ({max} bytes); dropped",
            self.server
        );
        tracing::error!(server = %self.server, "{msg}");
        if r.pending.len() == 1 {
            if let Some((id, tx)) = r.pending.iter().next() {
                let e = toolgate_protocol::error_response(
                    id,
                    toolgate_protocol::error_codes::UPSTREAM_ERROR,
                    &msg,
                    None,
                );
                let _ = tx.send(Bytes::from(e));
            }
        }
    }

    fn route(&self, msg: Bytes) {
        // Lone surrogates repaired (as clients read them); what cannot be read is dropped,
        // never relayed.
        let msg = match toolgate_protocol::upstream::repair(&msg) {
            std::borrow::Cow::Owned(fixed) => Bytes::from(fixed),
            std::borrow::Cow::Borrowed(_) => msg,
        };
        let (is_response, key, token) = match toolgate_protocol::upstream::peek(&msg) {
            Ok(p) => (
                p.is_response(),
                p.id_key(),
                p.progress_token.map(|t| id_key(t.get())),
            ),
            Err(e) => {
                tracing::warn!(server = %self.server, "upstream wrote a line toolgate cannot read ({e}); dropped");
                return;
            }
        };
        let mut r = self.routes();
        if is_response {
            if let Some(tx) = r.pending.remove(&key) {
                r.progress.retain(|_, id| *id != key);
                let _ = tx.send(msg);
            } else {
                tracing::warn!(server = %self.server, id = %key, "response for no pending request; dropped");
            }
            return;
        }
        if let Some(token) = token {
            if let Some(id) = r.progress.get(&token).cloned() {
                if let Some(tx) = r.pending.get(&id) {
                    let _ = tx.send(msg);
                    return;
                }
            }
        }
        // Requests whose caller went away (cancelled, parked and expired) no longer count.
        r.pending.retain(|_, tx| !tx.is_closed());
        if r.pending.len() == 1 {
            if let Some(tx) = r.pending.values().next() {
                let _ = tx.send(msg);
                return;
            }
        }
        if let Some(tx) = &r.stream {
            if tx.send(msg.clone()).is_ok() {
                return;
            }
            r.stream = None;
        }
        if r.backlog.len() >= BACKLOG {
            r.backlog.pop_front();
            tracing::warn!(server = %self.server, "GET-stream backlog full; the oldest message was dropped");
        }
        r.backlog.push_back(msg);
    }

    /// Registers a request: messages for it arrive on the returned channel, the response last.
    pub fn register(
        &self,
        id_raw: &str,
        progress_token: Option<&str>,
    ) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = id_key(id_raw);
        let mut r = self.routes();
        if let Some(t) = progress_token {
            r.progress.insert(id_key(t), key.clone());
        }
        r.pending.insert(key, tx);
        rx
    }

    /// [`Channel::register`], forgotten again when the returned guard is dropped (the
    /// caller went away: its answer was cancelled or never read).
    pub fn register_guarded(
        self: &Arc<Self>,
        id_raw: &str,
        progress_token: Option<&str>,
    ) -> (mpsc::UnboundedReceiver<Bytes>, Registration) {
        let rx = self.register(id_raw, progress_token);
        // Weak: the registration must not keep the channel open (a child that dies closes
        // it, which is how its waiting calls learn).
        let tx = self
            .routes()
            .pending
            .get(&id_key(id_raw))
            .map(mpsc::UnboundedSender::downgrade);
        (
            rx,
            Registration {
                channel: self.clone(),
                id_raw: id_raw.to_string(),
                tx,
            },
        )
    }

    /// Forgets a request (the agent went away or it timed out).
    pub fn unregister(&self, id_raw: &str) {
        let key = id_key(id_raw);
        let mut r = self.routes();
        r.pending.remove(&key);
        r.progress.retain(|_, id| *id != key);
    }

    /// Opens the session's GET stream (replacing an older one) and drains the backlog into it.
    pub fn open_stream(&self) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = self.routes();
        while let Some(m) = r.backlog.pop_front() {
            let _ = tx.send(m);
        }
        r.stream = Some(tx);
        rx
    }

    /// Sends one message: a line on the child's stdin, or a POST to the SSE endpoint.
    pub async fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        if !self.is_alive() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the upstream has gone away",
            ));
        }
        match &self.sink {
            Sink::Stdin(stdin) => {
                let mut guard = stdin.lock().await;
                let Some(stdin) = guard.as_mut() else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "the upstream's input is closed",
                    ));
                };
                // JSON-RPC over stdio is newline-delimited: a message must be one line.
                if msg.contains(&b'\n') {
                    let v: Value = serde_json::from_slice(msg).map_err(std::io::Error::other)?;
                    stdin.write_all(v.to_string().as_bytes()).await?;
                } else {
                    stdin.write_all(msg).await?;
                }
                stdin.write_all(b"\n").await?;
                stdin.flush().await
            }
            Sink::Post { http, url, headers } => {
                let mut req = http
                    .post(url)
                    .header("content-type", "application/json")
                    .timeout(std::time::Duration::from_secs(30))
                    .body(msg.to_vec());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(std::io::Error::other(format!(
                        "the SSE server refused the message: HTTP {}",
                        r.status()
                    ))),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
        }
    }

    /// Connects to a legacy HTTP+SSE server: opens its event stream, waits for the
    /// `endpoint` event (at most 10 s), then routes every `message` event as the stdio
    /// reader does. `headers` (credentials from the config) go on the GET and every POST.
    pub async fn connect_sse(
        server: &str,
        http: &reqwest::Client,
        sse_url: &str,
        headers: &[(String, String)],
        max_event: usize,
    ) -> Result<Arc<Self>, String> {
        let mut req = http.get(sse_url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot open {sse_url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{sse_url} answered HTTP {}", resp.status()));
        }
        let mut stream = resp.bytes_stream();
        let mut parser = toolgate_protocol::sse::SseParser::with_limit(max_event);
        let mut early = Vec::new();
        let endpoint = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                let chunk = chunk.map_err(|e| format!("the event stream broke: {e}"))?;
                for ev in parser.push(&chunk).map_err(|e| e.to_string())? {
                    if ev.event.as_deref() == Some("endpoint") {
                        return Ok::<String, String>(ev.data);
                    }
                    early.push(ev);
                }
            }
            Err("the event stream ended before its `endpoint` event".to_string())
        })
        .await
        .map_err(|_| format!("no `endpoint` event from {sse_url} within 10 s"))??;
        let base = reqwest::Url::parse(sse_url).map_err(|e| e.to_string())?;
        let post_url = base
            .join(endpoint.trim())
            .map_err(|e| format!("bad endpoint {endpoint:?}: {e}"))?;
        if post_url.origin() != base.origin() {
            return Err(format!(
                "the endpoint {post_url} is on another origin than {sse_url}; refused"
            ));
        }
        let chan = Arc::new(Channel {
            server: server.to_string(),
            sink: Sink::Post {
                http: http.clone(),
                url: post_url.to_string(),
                headers: headers.to_vec(),
            },
            routes: Mutex::new(Routes::default()),
            alive: AtomicBool::new(true),
            child: Mutex::new(None),
            reader: Mutex::new(None),
        });
        for ev in early {
            if !ev.data.is_empty() {
                chan.route(Bytes::from(ev.data));
            }
        }
        let reader = chan.clone();
        let task = tokio::spawn(async move {
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                let Ok(chunk) = chunk else { break };
                let Ok(events) = parser.push(&chunk) else {
                    break;
                };
                for ev in events {
                    if matches!(ev.event.as_deref(), None | Some("message")) && !ev.data.is_empty()
                    {
                        reader.route(Bytes::from(ev.data));
                    }
                }
                if !reader.is_alive() {
                    break;
                }
            }
            reader.died();
        });
        *chan.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Ok(chan)
    }

    /// Closes the child's stdin: a stdio server takes it as the end of its client and
    /// exits (after finishing its own work, e.g. writing its files).
    pub async fn close_input(&self) {
        if let Sink::Stdin(stdin) = &self.sink {
            stdin.lock().await.take();
        }
    }

    /// Waits up to `grace` for the child to exit, then stops it; its exit code (1 when it
    /// was stopped or died by a signal, 0 for an SSE connection).
    pub async fn wait_exit(&self, grace: std::time::Duration) -> i32 {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut child) = child else {
            return 0;
        };
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(server = %self.server, "the server did not exit within {} s; stopping it", grace.as_secs());
                let _ = child.start_kill();
                child.wait().await
            }
        };
        self.alive.store(false, Ordering::SeqCst);
        status.ok().and_then(|s| s.code()).unwrap_or(1)
    }

    /// Stops the child (or closes the SSE connection).
    pub fn kill(&self) {
        if let Some(task) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut c) = child {
            let _ = c.start_kill();
            tokio::spawn(async move {
                let _ = c.wait().await;
            });
        }
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.start_kill();
        }
    }
}

/// A registered request, forgotten when dropped (unless a newer request took its id).
#[derive(Debug)]
pub struct Registration {
    channel: Arc<Channel>,
    id_raw: String,
    tx: Option<mpsc::WeakUnboundedSender<Bytes>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let key = id_key(&self.id_raw);
        let mut r = self.channel.routes();
        let mine = match (
            r.pending.get(&key),
            self.tx.as_ref().and_then(|t| t.upgrade()),
        ) {
            (Some(now), Some(tx)) => now.same_channel(&tx),
            _ => false,
        };
        if mine {
            r.pending.remove(&key);
            r.progress.retain(|_, id| *id != key);
        }
    }
}
