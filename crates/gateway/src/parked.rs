//! Calls parked while a 2026-07-28 client answers what their legacy server asked (see
//! [`crate::input`]): the rest of the server's answer stream, kept per pooled session under
//! an unguessable token until the client's retry takes it, or until it expires.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream};
use futures::StreamExt;
use serde_json::Value;
use toolgate_protocol::sse::{SseEvent, SseParser};

/// The most calls one pooled session keeps waiting for their clients' input (each holds an
/// upstream request open); a call the server asks more of then gets an error instead.
pub const MAX_PARKED: usize = 64;

/// The events of a server's SSE answer, one at a time.
pub struct Events {
    chunks: BodyDataStream,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
}

impl Events {
    /// Reads `body`'s events; none larger than `max` bytes.
    pub fn new(body: Body, max: usize) -> Self {
        Events {
            chunks: body.into_data_stream(),
            parser: SseParser::with_limit(max.max(toolgate_protocol::sse::MAX_EVENT_BYTES)),
            queue: VecDeque::new(),
        }
    }

    /// Puts `ev` back: the next [`Events::next`] gives it again.
    pub fn unread(&mut self, ev: SseEvent) {
        self.queue.push_front(ev);
    }

    /// The next event; `None` when the stream ended or broke (what the relay beneath wrote
    /// for a broken stream has already come as an event).
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            let chunk = self.chunks.next().await?.ok()?;
            self.queue.extend(self.parser.push(&chunk).ok()?);
        }
    }
}

/// A call whose server asked the client something: the rest of its answer, and what was
/// asked.
pub struct Parked {
    /// The rest of the server's answer.
    pub events: Events,
    /// The id the call has on the server's side (toolgate's wire id).
    pub wire: Value,
    /// The client's declared capabilities (from the request's `_meta`).
    pub caps: Value,
    /// The `inputRequests` keys given to the client, with the ids (tagged with the server)
    /// of the server's requests they stand for.
    pub asked: Vec<(String, Value)>,
    /// The request's method and what it names (`params.name` or `params.uri`): a retry
    /// must be the same request.
    pub request: (String, Option<String>),
    since: Instant,
}

impl Parked {
    /// A call being answered (nothing asked yet), of `request` (method, name or URI).
    pub fn new(
        events: Events,
        wire: Value,
        caps: Value,
        request: (String, Option<String>),
    ) -> Self {
        Parked {
            events,
            wire,
            caps,
            asked: Vec::new(),
            request,
            since: Instant::now(),
        }
    }
}

/// The calls parked on one pooled session, by token.
#[derive(Default)]
pub struct ParkedCalls {
    calls: Mutex<HashMap<String, Parked>>,
}

impl std::fmt::Debug for ParkedCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.calls.lock().map(|c| c.len()).unwrap_or(0);
        write!(f, "ParkedCalls({n})")
    }
}

impl ParkedCalls {
    /// Keeps `call` under `token` (its wait starting now), dropping calls older than
    /// `max_age` first; gives it back when [`MAX_PARKED`] calls already wait.
    pub fn park(&self, token: String, mut call: Parked, max_age: Duration) -> Option<Parked> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.retain(|_, c| c.since.elapsed() < max_age);
        if calls.len() >= MAX_PARKED {
            return Some(call);
        }
        call.since = Instant::now();
        calls.insert(token, call);
        None
    }

    /// Takes the call parked under `token`, unless it is older than `max_age`.
    pub fn take(&self, token: &str, max_age: Duration) -> Option<Parked> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.retain(|_, c| c.since.elapsed() < max_age);
        calls.remove(token)
    }

    /// Puts back a call [`ParkedCalls::take`] took (its wait goes on from when it began).
    pub fn restore(&self, token: String, call: Parked) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.insert(token, call);
    }

    /// True when no call waits.
    pub fn is_empty(&self) -> bool {
        self.calls.lock().map(|c| c.is_empty()).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Parked {
        Parked::new(
            Events::new(Body::empty(), 1024),
            Value::from("w"),
            Value::Null,
            ("tools/call".into(), Some("t".into())),
        )
    }

    #[test]
    fn parked_calls_are_bounded_taken_once_and_expire() {
        let p = ParkedCalls::default();
        for i in 0..MAX_PARKED {
            assert!(p
                .park(format!("t{i}"), call(), Duration::from_secs(60))
                .is_none());
        }
        assert!(p
            .park("over".into(), call(), Duration::from_secs(60))
            .is_some());
        assert!(p.take("t1", Duration::from_secs(60)).is_some());
        assert!(p.take("t1", Duration::from_secs(60)).is_none());
        // Expired: gone when next looked at.
        assert!(p.take("t2", Duration::ZERO).is_none());
        assert!(p.park("new".into(), call(), Duration::ZERO).is_none());
    }

    #[tokio::test]
    async fn events_come_one_at_a_time_across_chunks() {
        let body = Body::from_stream(futures::stream::iter(vec![
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"data: {\"a\":1}\n\nda")),
            Ok(axum::body::Bytes::from_static(b"ta: {\"b\":2}\n\n")),
        ]));
        let mut ev = Events::new(body, 1024);
        assert_eq!(ev.next().await.unwrap().data, "{\"a\":1}");
        assert_eq!(ev.next().await.unwrap().data, "{\"b\":2}");
        assert!(ev.next().await.is_none());
    }
}
