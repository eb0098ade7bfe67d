//! Agent sessions (legacy era): toolgate mints its own `Mcp-Session-Id` and maps it to
//! the upstream's, which the agent never sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::upstream::channel::Channel;

/// How a session reaches its upstream.
#[derive(Debug, Clone)]
pub enum UpstreamSession {
    /// A Streamable HTTP upstream and its session id (none for stateless servers).
    Http {
        /// The upstream's `Mcp-Session-Id`.
        session_id: Option<String>,
    },
    /// This session's own message channel: a stdio child, or a legacy HTTP+SSE connection.
    Channel(Arc<Channel>),
}

/// One agent session.
#[derive(Debug)]
pub struct Session {
    /// toolgate's id, given to the agent.
    pub id: String,
    /// The server it belongs to.
    pub server: String,
    /// The grant that opened it: no other grant may use it.
    pub grant_id: String,
    /// The upstream side.
    pub upstream: UpstreamSession,
    last_seen: Mutex<Instant>,
}

impl Session {
    /// A new session.
    pub fn new(id: String, server: String, grant_id: String, upstream: UpstreamSession) -> Self {
        Session {
            id,
            server,
            grant_id,
            upstream,
            last_seen: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn close(&self) {
        if let UpstreamSession::Channel(p) = &self.upstream {
            p.kill();
        }
    }
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session.
    pub fn insert(&self, s: Arc<Session>) {
        self.map().insert(s.id.clone(), s);
    }

    /// A live session by id, for this server and grant; touches it.
    pub fn get(&self, id: &str, server: &str, grant_id: &str) -> Option<Arc<Session>> {
        let s = self.map().get(id).cloned()?;
        if s.server != server || s.grant_id != grant_id {
            return None;
        }
        if let UpstreamSession::Channel(p) = &s.upstream {
            if !p.is_alive() {
                self.remove(id);
                return None;
            }
        }
        s.touch();
        Some(s)
    }

    /// Removes and closes a session.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map().remove(id);
        if let Some(s) = &s {
            s.close();
        }
        s
    }

    /// Closes sessions idle for longer than `max_idle`; returns how many.
    pub fn reap(&self, max_idle: Duration) -> usize {
        let idle: Vec<String> = self
            .map()
            .iter()
            .filter(|(_, s)| s.idle_for() > max_idle)
            .map(|(k, _)| k.clone())
            .collect();
        for id in &idle {
            self.remove(id);
        }
        idle.len()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
