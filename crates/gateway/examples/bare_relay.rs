//! The benchmark's floor: a bare HTTP relay built from the same crates as the gateway
//! (axum, hyper, reqwest, tokio) that forwards each POST to the upstream unchanged, with
//! no authentication, no parsing, no policy, no counters and no audit. `bench/proxy.sh`
//! runs it beside toolgate, so the cost of the extra hop itself (present in any proxy) is
//! measured apart from what toolgate adds on top of it.
//!
//! `cargo run --release -p toolgate-gateway --example bare_relay -- LISTEN UPSTREAM_URL`
#![allow(clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

const PASSED: [&str; 4] = [
    "content-type",
    "accept",
    "mcp-protocol-version",
    "mcp-session-id",
];

async fn relay(
    State((http, url)): State<(reqwest::Client, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = http.post(&url).body(body);
    for name in PASSED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let ctype = r.headers().get("content-type").cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = (status, bytes).into_response();
            if let Some(c) = ctype {
                resp.headers_mut().insert("content-type", c);
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(url)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_relay LISTEN UPSTREAM_URL");
        std::process::exit(2);
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let app = Router::new()
        .route("/mcp", post(relay))
        .with_state((http, url));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("the listen address");
    println!(
        "bare relay listening on http://{}",
        listener.local_addr().expect("bound")
    );
    axum::serve(listener, app).await.expect("serve");
}
