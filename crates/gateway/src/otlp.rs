//! Optional trace export over OTLP/HTTP with JSON bodies (`[tracing] otlp_endpoint`): one
//! span per judged `tools/call`, from its arrival to its outcome, with the decision, the
//! rule and the outcome as attributes. A W3C `traceparent` in the request's
//! `params._meta` makes the span a child of the agent's span (its trace continues);
//! without one, the span starts a trace of its own.
//!
//! Export never slows or fails a call: spans go through a bounded queue to one task that
//! posts them in batches (every second, or at 512 spans); when the collector is down or the
//! queue is full, spans are dropped and counted in the log. Written here rather than with
//! the OpenTelemetry SDK crates: this is one span kind over one well-specified JSON
//! encoding, and the SDK's dependency tree would cost more build time than the whole
//! gateway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Spans waiting to be posted, at most.
const QUEUE: usize = 8192;
/// Spans per post, at most.
const BATCH: usize = 512;

/// A W3C trace context: the trace and the parent span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The caller's span id.
    pub span_id: [u8; 8],
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = hex::decode(s).ok()?;
    let a: [u8; N] = v.try_into().ok()?;
    (a != [0; N]).then_some(a)
}

/// Reads `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for anything else (an
/// unknown version, all-zero ids, wrong lengths), as the W3C spec asks.
pub fn parse_traceparent(s: &str) -> Option<TraceParent> {
    let mut parts = s.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" || flags.len() != 2 {
        return None;
    }
    let lower_hex = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(lower_hex(trace) && lower_hex(span) && lower_hex(flags)) {
        return None;
    }
    Some(TraceParent {
        trace_id: hex_bytes(trace)?,
        span_id: hex_bytes(span)?,
    })
}

fn random<const N: usize>() -> [u8; N] {
    // Ids need to be unique, not secret: a per-process random start and a counter, hashed.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let seed = SEED.get_or_init(|| toolgate_store::grants::random_hex(16).unwrap_or_default());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{seed}:{n}").as_bytes());
    let mut out = [0u8; N];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    if out == [0; N] {
        out[0] = 1;
    }
    out
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One finished span.
#[derive(Debug, Clone)]
struct Finished {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'static str, String)>,
    error: Option<String>,
}

impl Finished {
    fn json(&self) -> Value {
        let mut span = json!({
            "traceId": hex::encode(self.trace_id),
            "spanId": hex::encode(self.span_id),
            "name": self.name,
            "kind": 2,
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": self.end_ns.to_string(),
            "attributes": self.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
            // Unset (0) unless something failed, as OpenTelemetry asks of instrumentation.
            "status": match &self.error {
                None => json!({"code": 0}),
                Some(m) => json!({"code": 2, "message": m}),
            },
        });
        if let (Some(p), Some(o)) = (self.parent, span.as_object_mut()) {
            o.insert("parentSpanId".into(), json!(hex::encode(p)));
        }
        span
    }
}

/// The exporter: a queue and the task that posts it.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<Finished>,
    dropped: AtomicU64,
}

impl Exporter {
    /// Starts the posting task (inside a tokio runtime). `endpoint` is the collector's
    /// base URL (`http://HOST:4318`); spans go to `{endpoint}/v1/traces`.
    pub fn start(endpoint: &str, service: &str, http: reqwest::Client) -> Arc<Exporter> {
        let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
            endpoint.to_string()
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let exporter = Arc::new(Exporter {
            tx,
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(post_batches(rx, url, service.to_string(), http));
        exporter
    }

    /// A span for one `tools/call`, begun now, under the agent's trace if it sent one.
    pub fn begin(self: &Arc<Self>, tool: &str, parent: Option<&str>) -> Arc<CallSpan> {
        let parent = parent.and_then(parse_traceparent);
        Arc::new(CallSpan {
            exporter: self.clone(),
            span: Mutex::new(Some(Finished {
                trace_id: parent.map_or_else(random, |p| p.trace_id),
                span_id: random(),
                parent: parent.map(|p| p.span_id),
                name: format!("tools/call {tool}"),
                start_ns: unix_nanos(SystemTime::now()),
                end_ns: 0,
                attributes: vec![
                    ("mcp.method", "tools/call".into()),
                    ("mcp.tool", tool.into()),
                ],
                error: None,
            })),
        })
    }

    fn send(&self, span: Finished) {
        if self.tx.try_send(span).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    "OTLP export: {n} span(s) dropped (the collector is slow or the queue is full)"
                );
            }
        }
    }
}

/// The span of one call, ended once (later ends are ignored). A span dropped without an
/// end (the agent went away while its call was held or streaming, or a path that answered
/// on its own) is ended then, as `abandoned`.
#[derive(Debug)]
pub struct CallSpan {
    exporter: Arc<Exporter>,
    span: Mutex<Option<Finished>>,
}

impl Drop for CallSpan {
    fn drop(&mut self) {
        self.end(Some("abandoned: ended without an outcome".into()));
    }
}

impl CallSpan {
    /// Adds an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<String>) {
        if let Some(s) = self.span.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            s.attributes.push((key, value.into()));
        }
    }

    /// Ends the span now and queues it; `error` marks its status.
    pub fn end(&self, error: Option<String>) {
        let taken = self.span.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut s) = taken {
            s.end_ns = unix_nanos(SystemTime::now()).max(s.start_ns);
            s.error = error;
            self.exporter.send(s);
        }
    }

    /// The trace id, hex (for tests and logs).
    pub fn trace_id(&self) -> Option<String> {
        self.span
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| hex::encode(s.trace_id))
    }
}

async fn post_batches(
    mut rx: mpsc::Receiver<Finished>,
    url: String,
    service: String,
    http: reqwest::Client,
) {
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{
                "scope": {"name": "toolgate", "version": env!("CARGO_PKG_VERSION")},
                "spans": batch.iter().map(Finished::json).collect::<Vec<_>>(),
            }],
        }]});
        let sent = http
            .post(&url)
            .timeout(Duration::from_secs(5))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                if failing {
                    tracing::info!("OTLP export to {url} works again");
                    failing = false;
                }
            }
            Ok(r) => {
                if !failing {
                    tracing::warn!(
                        "OTLP export to {url}: HTTP {}; {} span(s) dropped",
                        r.status(),
                        batch.len()
                    );
                }
                failing = true;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "OTLP export to {url} failed: {e}; {} span(s) dropped",
                        batch.len()
                    );
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_per_the_w3c_spec() {
        let p =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(hex::encode(p.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(p.span_id), "b7ad6b7169203331");
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_are_unique_and_never_zero() {
        let a: [u8; 16] = random();
        let b: [u8; 16] = random();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
    }

    #[test]
    fn the_json_encoding() {
        let f = Finished {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "tools/call t".into(),
            start_ns: 10,
            end_ns: 20,
            attributes: vec![("mcp.tool", "t".into())],
            error: Some("denied".into()),
        };
        let v = f.json();
        assert_eq!(v["traceId"], "01010101010101010101010101010101");
        assert_eq!(v["parentSpanId"], "0303030303030303");
        assert_eq!(v["startTimeUnixNano"], "10");
        assert_eq!(v["status"]["code"], 2);
        assert_eq!(v["attributes"][0]["value"]["stringValue"], "t");
    }
}
