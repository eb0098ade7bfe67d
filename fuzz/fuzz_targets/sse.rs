//! Fuzzes the SSE parser: any bytes, split at any points, give events or a size error,
//! never a panic; the raw bytes of the events are exactly the input consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolgate_protocol::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let cut = (split as usize).min(body.len());
    let (a, b) = body.split_at(cut);
    let mut parser = SseParser::new();
    let mut raw = Vec::new();
    for chunk in [a, b] {
        match parser.push(chunk) {
            Ok(events) => {
                for e in events {
                    raw.extend_from_slice(&e.raw);
                }
            }
            Err(_) => return,
        }
    }
    assert!(body.starts_with(&raw), "event bytes must be a prefix of the input");
});
