//! A local MCP server process over stdio: one child per agent session, so agents never
//! share a stateful server's state. The command comes only from the config.
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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::id_key;

/// Messages kept for a GET stream that is not open yet.
const BACKLOG: usize = 1000;
/// The longest line read from a child (16 MiB).
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Routes {
    pending: HashMap<String, mpsc::UnboundedSender<Bytes>>,
    progress: HashMap<String, String>,
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    backlog: VecDeque<Bytes>,
}

/// One running stdio server.
pub struct StdioProcess {
    server: String,
    stdin: tokio::sync::Mutex<ChildStdin>,
    routes: Mutex<Routes>,
    alive: AtomicBool,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for StdioProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioProcess")
            .field("server", &self.server)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl StdioProcess {
    /// Starts the child. Its stderr goes to the log, line by line.
    pub fn spawn(
        server: &str,
        command: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
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
        let proc = Arc::new(StdioProcess {
            server: server.to_string(),
            stdin: tokio::sync::Mutex::new(stdin),
            routes: Mutex::new(Routes::default()),
            alive: AtomicBool::new(true),
            child: Mutex::new(Some(child)),
        });
        let name = server.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(server = %name, "upstream stderr: {line}");
            }
        });
        let reader = proc.clone();
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match (&mut out)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut buf)
                    .await
                {
                    Ok(0) => break,
                    Ok(_) if buf.len() > MAX_LINE => {
                        tracing::error!(server = %reader.server, "upstream sent a line over {MAX_LINE} bytes; stopping it");
                        break;
                    }
                    Ok(_) => {
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

    fn route(&self, msg: Bytes) {
        let v: Value = match serde_json::from_slice(&msg) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(server = %self.server, "upstream wrote a line that is not JSON ({e}); dropped");
                return;
            }
        };
        let mut r = self.routes();
        let is_response =
            v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some());
        if is_response {
            let key = v.get("id").map(Value::to_string).unwrap_or_default();
            if let Some(tx) = r.pending.remove(&key) {
                r.progress.retain(|_, id| *id != key);
                let _ = tx.send(msg);
            } else {
                tracing::warn!(server = %self.server, id = %key, "response for no pending request; dropped");
            }
            return;
        }
        if let Some(token) = v.pointer("/params/progressToken") {
            if let Some(id) = r.progress.get(&token.to_string()).cloned() {
                if let Some(tx) = r.pending.get(&id) {
                    let _ = tx.send(msg);
                    return;
                }
            }
        }
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

    /// Writes one message as a line.
    pub async fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        if !self.is_alive() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the upstream process has exited",
            ));
        }
        let mut stdin = self.stdin.lock().await;
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

    /// Stops the child.
    pub fn kill(&self) {
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

impl Drop for StdioProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.start_kill();
        }
    }
}
