//! The router as a value (`oneshot`), in front of the real demo server over HTTP:
//! every HTTP refusal, the session mapping, filtering and enforcement.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use toolgate_gateway::{router, AppState, Config};
use toolgate_store::{GrantStore, NewGrant, PersistentCounters, SqliteStore};
use tower::ServiceExt;

struct Fixture {
    app: axum::Router,
    token: String,
    other_token: String,
    no_policy_token: String,
}

async fn fixture(name: &str) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(toolgate_demo::serve_http(listener, std::future::pending()));
    let dir = std::env::temp_dir().join(format!("toolgate-front-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.json"),
        r#"{"version":"1","default":"deny","hide":["export_patient_data"],"tools":{
            "list_patients":{"limits":[{"counter":"lp","window":"minute","max":1}]},"get_patient":{},
            "ghost_tool":{"limits":[{"counter":"ghost","window":"minute","max":1}]},
            "delete_patient_record":{"action":"deny","reason":"Never from an agent."},
            "create_appointment":{"limits":[{"counter":"c","window":"minute","max":1}]}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("toolgate.toml"),
        format!("max_body = \"64KiB\"\n[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\npolicy = \"p\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n[[servers]]\nname = \"other\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
    )
    .unwrap();
    let cfg = Config::load(&dir.join("toolgate.toml")).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("t.db")).unwrap());
    let grant = |server: &str, policy: Option<&str>| {
        store
            .create_grant(
                &NewGrant {
                    label: "t".into(),
                    server: server.into(),
                    policy: policy.map(Into::into),
                    identity: None,
                    expires_at_ms: None,
                },
                0,
            )
            .unwrap()
            .1
    };
    let (token, other_token, no_policy_token) = (
        grant("demo", Some("p")),
        grant("other", Some("p")),
        grant("demo", None),
    );
    let counters = Arc::new(PersistentCounters::open(store.clone(), 0).unwrap());
    let state = Arc::new(AppState::new(cfg, store, counters).unwrap());
    Fixture {
        app: router(state),
        token,
        other_token,
        no_policy_token,
    }
}

fn post(
    path: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        b = b
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    b.body(body.into()).unwrap()
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    // An SSE answer: take the last data line.
    let json_text = if text.starts_with("event:") || text.starts_with("data:") {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or("null")
            .to_string()
    } else {
        text
    };
    (
        parts.status,
        parts.headers,
        serde_json::from_str(&json_text).unwrap_or(Value::Null),
    )
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

async fn open(f: &Fixture, token: &str) -> String {
    let (status, headers, body) = send(&f.app, post("/mcp/demo", Some(token), None, INIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert!(
        sid.starts_with("tgs_"),
        "toolgate mints its own session ids: {sid}"
    );
    let (s, _, _) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(token),
            Some(&sid),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    sid
}

fn call(id: u32, tool: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
        .to_string()
}

#[tokio::test]
async fn refusals_before_mcp() {
    let f = fixture("refusals").await;
    let (s, h, b) = send(&f.app, post("/mcp/demo", None, None, INIT)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(b["error"]["code"], -32600);
    let (s, h, _) = send(&f.app, post("/mcp/demo", Some("tg_nope"), None, INIT)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let (s, _, b) = send(&f.app, post("/mcp/demo", Some(&f.other_token), None, INIT)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("server `other`"));
    let (s, _, _) = send(&f.app, post("/mcp/nosuch", Some(&f.token), None, INIT)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(&f.app, post("/mcp/demo", Some(&f.token), None, "[]")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = send(&f.app, post("/mcp/demo", Some(&f.token), None, "{not json")).await;
    assert_eq!(
        (s, b["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32700))
    );
    let (s, _, _) = send(
        &f.app,
        post("/mcp/demo", Some(&f.token), None, vec![b' '; 65 * 1024]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let req = Request::post("/mcp/demo")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", f.token))
        .header("content-type", "text/plain")
        .body(Body::from(INIT))
        .unwrap();
    assert_eq!(
        send(&f.app, req).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let req = Request::post("/mcp/demo")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", f.token))
        .header("content-type", "application/json")
        .header("accept", "text/html")
        .body(Body::from(INIT))
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::NOT_ACCEPTABLE);
    let req = Request::post("/mcp/demo")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", f.token))
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(Body::from(INIT))
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::FORBIDDEN);
    // A request that is not initialize needs a session; an unknown one is 404.
    let (s, _, _) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            None,
            call(2, "list_patients", json!({})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some("tgs_unknown"),
            call(2, "list_patients", json!({})),
        ),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_i64()),
        (StatusCode::NOT_FOUND, Some(-32001))
    );
}

#[tokio::test]
async fn enforcement_through_a_session() {
    let f = fixture("enforce").await;
    let sid = open(&f, &f.token).await;
    // tools/list: hidden, denied and unlisted tools are gone.
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        ),
    )
    .await;
    let mut names: Vec<&str> = b["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["create_appointment", "get_patient", "list_patients"]
    );
    // Allowed call reaches the demo server.
    let (s, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(3, "get_patient", json!({"patient_id": "pat_1001"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(b["result"]["isError"], true, "{b}");
    assert!(b["result"]["content"].is_array(), "{b}");
    // Denied with its reason, as an isError result.
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(
                4,
                "delete_patient_record",
                json!({"patient_id": "pat_1001"}),
            ),
        ),
    )
    .await;
    assert_eq!(b["result"]["isError"], true);
    let text = b["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "[toolgate] denied: Never from an agent.\nrule: /tools/delete_patient_record/action"
        ),
        "{text}"
    );
    assert_eq!(
        b["result"]["_meta"]["toolgate"]["rule"],
        "/tools/delete_patient_record/action"
    );
    // Default deny and hidden.
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(5, "send_patient_email", json!({})),
        ),
    )
    .await;
    assert_eq!(b["result"]["_meta"]["toolgate"]["rule"], "(default deny)");
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(6, "export_patient_data", json!({})),
        ),
    )
    .await;
    assert_eq!(b["error"]["code"], -32602);
    // Arguments that are not an object are refused as invalid params.
    let bad = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_patient","arguments":[1]}}"#;
    let (_, _, b) = send(&f.app, post("/mcp/demo", Some(&f.token), Some(&sid), bad)).await;
    assert_eq!(b["error"]["code"], -32602);
    // A call the upstream answers with a JSON-RPC error (it has no `ghost_tool`) gives its
    // count back: with max 1, three calls in a row all reach the upstream.
    for id in 20..23 {
        let (_, _, b) = send(
            &f.app,
            post(
                "/mcp/demo",
                Some(&f.token),
                Some(&sid),
                call(id, "ghost_tool", json!({})),
            ),
        )
        .await;
        assert!(
            b["error"].is_object(),
            "the upstream's error, not a toolgate denial: {b}"
        );
    }
    // A real call takes its count; the next is denied with the seconds to retry.
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(8, "list_patients", json!({})),
        ),
    )
    .await;
    assert!(
        b["result"]["content"].is_array() && b["result"]["isError"] != true,
        "{b}"
    );
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(9, "list_patients", json!({})),
        ),
    )
    .await;
    assert_eq!(
        b["result"]["_meta"]["toolgate"]["rule"],
        "/tools/list_patients/limits/0"
    );
    assert!(
        b["result"]["_meta"]["toolgate"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 59
    );
    // Another grant cannot use this session.
    let (s, _, _) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.no_policy_token),
            Some(&sid),
            call(11, "get_patient", json!({"patient_id": "pat_1001"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // DELETE ends it.
    let req = Request::delete("/mcp/demo")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", f.token))
        .header("mcp-session-id", &sid)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::OK);
    let (s, _, _) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.token),
            Some(&sid),
            call(12, "get_patient", json!({"patient_id": "pat_1001"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_grant_without_policy_sees_nothing_and_calls_nothing() {
    let f = fixture("nopolicy").await;
    let sid = open(&f, &f.no_policy_token).await;
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.no_policy_token),
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        ),
    )
    .await;
    assert_eq!(b["result"]["tools"], json!([]));
    let (_, _, b) = send(
        &f.app,
        post(
            "/mcp/demo",
            Some(&f.no_policy_token),
            Some(&sid),
            call(3, "list_patients", json!({})),
        ),
    )
    .await;
    assert_eq!(b["result"]["_meta"]["toolgate"]["rule"], "(no policy)");
}

#[tokio::test]
async fn a_rebound_host_and_an_encoded_server_name_are_refused() {
    let f = fixture("hosts").await;
    let mut req = post("/mcp/demo", Some(&f.token), None, INIT);
    req.headers_mut()
        .insert("host", "rebind.attacker.example:8555".parse().unwrap());
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    let req = Request::get("/metrics")
        .header("host", "rebind.attacker.example")
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    let resp = f
        .app
        .clone()
        .oneshot(post("/mcp/%64emo", Some(&f.token), None, INIT))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
