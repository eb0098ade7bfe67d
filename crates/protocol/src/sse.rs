//! An incremental Server-Sent Events parser that keeps each event's raw bytes, so
//! events toolgate does not rewrite are relayed byte for byte.

use bytes::{Bytes, BytesMut};

/// The largest event a parser from [`SseParser::new`] buffers (16 MiB); larger ones are an
/// upstream fault. [`SseParser::with_limit`] sets another (the gateway's `max_answer`).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's bytes, including its terminating blank line.
    pub raw: Bytes,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field, if any.
    pub event: Option<String>,
}

/// The event stream grew past the parser's limit (in bytes) without an event boundary.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("an upstream event is over max_answer ({0} bytes); refused")]
pub struct TooLarge(pub usize);

/// Splits a byte stream into events.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// How far `buf` was searched for a boundary (each byte is searched once).
    scanned: usize,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }
}

fn boundary(buf: &[u8], from: usize) -> Option<usize> {
    // The end (exclusive) of the first event: after "\n\n", "\r\n\r\n" or "\r\r".
    // A boundary may straddle chunks: search again from 3 bytes before `from`.
    let mut i = from.saturating_sub(3);
    while i + 1 < buf.len() {
        match (buf.get(i), buf.get(i + 1)) {
            (Some(b'\n'), Some(b'\n')) => return Some(i + 2),
            (Some(b'\r'), Some(b'\r')) => return Some(i + 2),
            (Some(b'\r'), Some(b'\n'))
                if buf.get(i + 2) == Some(&b'\r') && buf.get(i + 3) == Some(&b'\n') =>
            {
                return Some(i + 4)
            }
            _ => i += 1,
        }
    }
    None
}

fn parse_fields(raw: &[u8]) -> (String, Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(raw);
    let mut data: Vec<&str> = vec![];
    let (mut id, mut event) = (None, None);
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => (
                &line[..i],
                line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..]),
            ),
            None => (line, ""),
        };
        match field {
            "data" => data.push(value),
            "id" => id = Some(value.to_string()),
            "event" => event = Some(value.to_string()),
            _ => {}
        }
    }
    (data.join("\n"), id, event)
}

impl SseParser {
    /// A new parser with the default limit, [`MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A new parser that refuses an event larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
        }
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = vec![];
        while let Some(end) = boundary(&self.buf, self.scanned) {
            self.scanned = 0;
            let raw = self.buf.split_to(end).freeze();
            let (data, id, event) = parse_fields(&raw);
            out.push(SseEvent {
                raw,
                data,
                id,
                event,
            });
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.limit {
            return Err(TooLarge(self.limit));
        }
        Ok(out)
    }

    /// Bytes received after the last complete event (an unterminated tail).
    pub fn rest(&self) -> &[u8] {
        &self.buf
    }
}

/// Encodes one `message` event carrying `data` (a JSON-RPC message).
pub fn encode(data: &str, id: Option<&str>) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    s.push_str("event: message\n");
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_keeps_raw() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: message\nid: 7\nda").unwrap().is_empty());
        let ev = p
            .push(b"ta: {\"a\":1}\n\n: keepalive\n\ndata: x\r\n\r\n")
            .unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[0].id.as_deref(), Some("7"));
        assert_eq!(ev[0].event.as_deref(), Some("message"));
        assert_eq!(
            &ev[0].raw[..],
            b"event: message\nid: 7\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(ev[1].data, "");
        assert_eq!(ev[2].data, "x");
    }

    #[test]
    fn multi_line_data_round_trips() {
        let enc = encode("a\nb", Some("1"));
        let mut p = SseParser::new();
        let ev = p.push(&enc).unwrap();
        assert_eq!(ev[0].data, "a\nb");
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.push(&big), Err(TooLarge(MAX_EVENT_BYTES)));
    }

    #[test]
    fn boundaries_split_across_chunks_byte_by_byte() {
        let stream = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\n";
        let mut p = SseParser::new();
        let mut got = vec![];
        for b in stream.iter() {
            got.extend(p.push(&[*b]).expect("small").into_iter().map(|e| e.data));
        }
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(p.rest(), b"data: d\n");
    }

    #[test]
    fn the_limit_is_the_parsers() {
        let mut p = SseParser::with_limit(10);
        assert_eq!(p.push(b"data: 12345678901"), Err(TooLarge(10)));
    }
}
