//! The admin API as a value (`oneshot`), in front of the real demo server over HTTP: roles
//! per route, policy puts with history and rollback, the dashboard's tool switch taking
//! effect on the next call, servers (private addresses refused), grants, the audit query
//! and stream, the admin audit records, and docs/openapi.json listing every route.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use toolgate_gateway::{router, AppState, Config};
use toolgate_store::{
    AdminStore, AuditLog, GrantStore, NewGrant, PersistentCounters, Role, SqliteStore,
};
use tower::ServiceExt;

struct Fixture {
    app: axum::Router,
    state: Arc<AppState>,
    dir: PathBuf,
    agent: String,
    viewer: String,
    manager: String,
    admin: String,
}

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
    "list_patients":{},"get_patient":{},
    "delete_patient_record":{"action":"deny","reason":"Never from an agent."}},
    "tests":[{"tool":"delete_patient_record","args":{},"expect":"deny"}]}"#;

async fn fixture(name: &str) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(toolgate_demo::serve_http(listener, std::future::pending()));
    let dir = std::env::temp_dir().join(format!("toolgate-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.json"), POLICY).unwrap();
    std::fs::write(
        dir.join("toolgate.toml"),
        format!("[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\npolicy = \"p\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Upstream-Key = \"sekrit-upstream\" }}\n"),
    )
    .unwrap();
    let cfg = Config::load(&dir.join("toolgate.toml")).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("t.db")).unwrap());
    let agent = store
        .create_grant(
            &NewGrant {
                label: "agent".into(),
                server: "demo".into(),
                policy: Some("p".into()),
                identity: None,
                expires_at_ms: None,
            },
            0,
        )
        .unwrap()
        .1;
    let token = |name: &str, role| store.create_admin_token(name, role, 0).unwrap().1;
    let (viewer, manager, admin) = (
        token("vera", Role::Viewer),
        token("max", Role::PolicyManager),
        token("ada", Role::Admin),
    );
    let counters = Arc::new(PersistentCounters::open(store.clone(), 0).unwrap());
    let log = Arc::new(AuditLog::open(&dir.join("audit.db")).unwrap());
    let state = Arc::new(AppState::new(cfg, store, counters).unwrap().with_audit(log));
    Fixture {
        app: router(state.clone()),
        state,
        dir,
        agent,
        viewer,
        manager,
        admin,
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .header("host", "localhost")
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(body.map_or(Body::empty(), |v| Body::from(v.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An MCP request as the agent (modern era: no session needed).
async fn mcp(f: &Fixture, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method,
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "api-test", "version": "1"}}}});
    let mut body = body;
    if let (Some(p), Some(extra)) = (body["params"].as_object_mut(), params.as_object()) {
        p.extend(extra.clone());
    }
    let mut req = Request::post("/mcp/demo")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {}", f.agent))
        .header("mcp-method", method)
        .header("mcp-protocol-version", "2026-07-28");
    if let Some(n) = params.get("name").and_then(Value::as_str) {
        req = req.header("mcp-name", n);
    }
    let resp = f
        .app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let json_text = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .map_or(text.clone(), str::to_string);
    serde_json::from_str(&json_text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test]
async fn roles_are_enforced_per_route() {
    let f = fixture("roles").await;
    let (s, _) = call(&f.app, "GET", "/api/v1/servers", "tga_nope", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, who) = call(&f.app, "GET", "/api/v1/whoami", &f.viewer, None).await;
    assert_eq!((s, who["role"].as_str()), (StatusCode::OK, Some("viewer")));
    for (method, path, body) in [
        ("GET", "/api/v1/admin-tokens", None),
        (
            "POST",
            "/api/v1/grants",
            Some(json!({"server": "demo", "label": "x"})),
        ),
        (
            "PUT",
            "/api/v1/policies/p",
            Some(json!({"version": "1", "default": "deny"})),
        ),
        ("POST", "/api/v1/approvals/ap_x/approve", None),
    ] {
        let (s, e) = call(&f.app, method, path, &f.viewer, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "viewer {method} {path}: {e}");
    }
    let (s, _) = call(&f.app, "GET", "/api/v1/admin-tokens", &f.manager, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a policy_manager sees no tokens");
    // Upstream credentials: names for the policy_manager, values for the admin.
    let (_, v) = call(&f.app, "GET", "/api/v1/servers", &f.manager, None).await;
    assert_eq!(v["servers"][0]["headers"], json!(["X-Upstream-Key"]));
    assert!(!v.to_string().contains("sekrit"), "{v}");
    let (_, v) = call(&f.app, "GET", "/api/v1/servers", &f.admin, None).await;
    assert_eq!(
        v["servers"][0]["headers"]["X-Upstream-Key"],
        "sekrit-upstream"
    );
    let (s, v) = call(&f.app, "GET", "/api/v1/admin-tokens", &f.admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["admin_tokens"].as_array().unwrap().len(), 3);
    assert!(
        !v.to_string().contains(&f.admin),
        "tokens are never shown again"
    );
}

#[tokio::test]
async fn policies_put_validate_history_and_rollback() {
    let f = fixture("policies").await;
    let (_, first) = call(&f.app, "GET", "/api/v1/policies/p", &f.viewer, None).await;
    let v1 = first["version"].as_str().unwrap().to_string();
    // Invalid: every error with its pointer, nothing written.
    let bad = json!({"version": "1", "default": "sometimes", "tools": {"x": {"limits": [{"counter": "c", "window": "fortnight", "max": 1}]}}});
    let (s, e) = call(
        &f.app,
        "PUT",
        "/api/v1/policies/p",
        &f.manager,
        Some(bad.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let pointers: Vec<&str> = e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/default"), "{e}");
    assert!(pointers.contains(&"/tools/x/limits/0/window"), "{e}");
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/policies/validate",
        &f.viewer,
        Some(bad),
    )
    .await;
    assert_eq!((s, v["valid"].as_bool()), (StatusCode::OK, Some(false)));
    // A failing inline test refuses the put too.
    let mut doc = first["document"].clone();
    doc["tools"]["delete_patient_record"] = json!({});
    let (s, e) = call(&f.app, "PUT", "/api/v1/policies/p", &f.manager, Some(doc)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["errors"][0]["pointer"], "/tests/0", "{e}");
    assert_eq!(
        std::fs::read_to_string(f.dir.join("p.json")).unwrap(),
        POLICY
    );
    // A good put: new version, file rewritten, live at once.
    let mut doc = first["document"].clone();
    doc["tools"]["get_patient"] = json!({"action": "deny", "reason": "Not today."});
    let (s, put) = call(&f.app, "PUT", "/api/v1/policies/p", &f.manager, Some(doc)).await;
    assert_eq!(s, StatusCode::OK, "{put}");
    assert_eq!(put["previous"], v1.as_str());
    let v2 = put["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert!(std::fs::read_to_string(f.dir.join("p.json"))
        .unwrap()
        .contains("Not today."));
    let (_, now) = call(&f.app, "GET", "/api/v1/policies", &f.viewer, None).await;
    assert_eq!(now["policies"][0]["version"], v2.as_str());
    let (_, hist) = call(
        &f.app,
        "GET",
        "/api/v1/policies/p/versions",
        &f.viewer,
        None,
    )
    .await;
    let versions: Vec<&str> = hist["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(versions, [v2.as_str(), v1.as_str()], "{hist}");
    let (_, old) = call(
        &f.app,
        "GET",
        &format!("/api/v1/policies/p/versions/{v1}"),
        &f.viewer,
        None,
    )
    .await;
    assert_eq!(old["author"], "(file)");
    // Rollback to the file's first version.
    let (s, back) = call(
        &f.app,
        "POST",
        "/api/v1/policies/p/rollback",
        &f.manager,
        Some(json!({"version": v1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{back}");
    let (_, now) = call(&f.app, "GET", "/api/v1/policies/p", &f.viewer, None).await;
    assert_eq!(now["document"]["tools"]["get_patient"], json!({}));
    let (s, _) = call(
        &f.app,
        "POST",
        "/api/v1/policies/p/rollback",
        &f.manager,
        Some(json!({"version": "nope"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Each change is in the admin audit stream, naming who.
    let (_, recs) = call(&f.app, "GET", "/api/v1/audit?kind=admin", &f.viewer, None).await;
    let recs = recs["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r["approver"] == "max"));
    assert!(recs[0]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("{v1} -> {v2}")));
}

#[tokio::test]
async fn a_tool_switched_to_deny_is_denied_on_the_next_call() {
    let f = fixture("switch").await;
    let listed = mcp(&f, "tools/list", json!({})).await;
    assert!(listed["result"]["tools"].as_array().is_some(), "{listed}");
    let ok = mcp(
        &f,
        "tools/call",
        json!({"name": "list_patients", "arguments": {}}),
    )
    .await;
    assert_ne!(ok["result"]["isError"], true, "{ok}");
    let (s, tools) = call(&f.app, "GET", "/api/v1/servers/demo/tools", &f.viewer, None).await;
    assert_eq!(s, StatusCode::OK, "{tools}");
    let row = |t: &Value, name: &str| {
        t["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap()
    };
    let lp = row(&tools, "list_patients");
    assert_eq!(
        (lp["state"].as_str(), lp["pin"].as_str()),
        (Some("allow"), Some("approved"))
    );
    assert_eq!(lp["scan"]["category"], "Read");
    let checkout = row(&tools, "create_agent_checkout_session");
    assert!(
        checkout["scan"]["signals"]
            .to_string()
            .contains("High parameter count (13 properties)"),
        "{checkout}"
    );
    assert_eq!(row(&tools, "refund_payment")["state"], "deny");
    assert_eq!(row(&tools, "refund_payment")["rule"], "(default deny)");
    // The switch: Deny, then the next call is denied with the reason.
    let (s, put) = call(
        &f.app,
        "PUT",
        "/api/v1/policies/p/tools/list_patients",
        &f.manager,
        Some(json!({"state": "deny", "reason": "Switched off by max."})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    let denied = mcp(
        &f,
        "tools/call",
        json!({"name": "list_patients", "arguments": {}}),
    )
    .await;
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    let text = denied["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[toolgate] denied:") && text.contains("Switched off by max."),
        "{text}"
    );
    // Rate limit 1 a minute: one passes, the next is limited.
    let (s, _) = call(
        &f.app,
        "PUT",
        "/api/v1/policies/p/tools/list_patients",
        &f.manager,
        Some(json!({"state": "rate_limit", "max": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let first = mcp(
        &f,
        "tools/call",
        json!({"name": "list_patients", "arguments": {}}),
    )
    .await;
    assert_ne!(first["result"]["isError"], true, "{first}");
    let second = mcp(
        &f,
        "tools/call",
        json!({"name": "list_patients", "arguments": {}}),
    )
    .await;
    assert_eq!(second["result"]["isError"], true, "{second}");
    let (_, tools) = call(&f.app, "GET", "/api/v1/servers/demo/tools", &f.viewer, None).await;
    assert_eq!(row(&tools, "list_patients")["state"], "rate_limit");
    for (body, want) in [
        (json!({"state": "sometimes"}), StatusCode::BAD_REQUEST),
        (
            json!({"state": "rate_limit"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"state": "rate_limit", "max": 0}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, e) = call(
            &f.app,
            "PUT",
            "/api/v1/policies/p/tools/list_patients",
            &f.manager,
            Some(body),
        )
        .await;
        assert_eq!(s, want, "{e}");
    }
    let (s, _) = call(
        &f.app,
        "PUT",
        "/api/v1/policies/nope/tools/x",
        &f.manager,
        Some(json!({"state": "deny"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn servers_are_added_but_never_private_or_commands() {
    let f = fixture("servers").await;
    for (body, want) in [
        (
            json!({"name": "lan", "url": "http://10.0.0.5/mcp"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "meta", "url": "http://169.254.169.254/latest"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "local", "sse_url": "http://localhost:9/sse"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "six", "url": "http://[::1]:9/mcp"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "sh", "command": "sh", "args": ["-c", "id"]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "demo", "url": "https://93.184.216.34/mcp"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"name": "bad", "url": "https://93.184.216.34/mcp", "policy": "zz"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, e) = call(
            &f.app,
            "POST",
            "/api/v1/servers",
            &f.admin,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, want, "{body}: {e}");
    }
    let (s, _) = call(
        &f.app,
        "POST",
        "/api/v1/servers",
        &f.manager,
        Some(json!({"name": "x", "url": "https://93.184.216.34/mcp"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(&f.app, "POST", "/api/v1/servers", &f.admin,
        Some(json!({"name": "public", "url": "https://93.184.216.34/mcp", "policy": "p", "headers": {"Authorization": "Bearer up"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, list) = call(&f.app, "GET", "/api/v1/servers", &f.viewer, None).await;
    assert_eq!(list["servers"][1]["name"], "public");
    // The file is valid and says who added it; a fresh load agrees.
    let text = std::fs::read_to_string(f.dir.join("toolgate.toml")).unwrap();
    assert!(
        text.contains("added through the admin API by ada"),
        "{text}"
    );
    assert_eq!(
        Config::load(&f.dir.join("toolgate.toml"))
            .unwrap()
            .servers
            .len(),
        2
    );
}

#[tokio::test]
async fn grants_through_the_api() {
    let f = fixture("grants").await;
    let (s, g) = call(
        &f.app,
        "POST",
        "/api/v1/grants",
        &f.admin,
        Some(json!({"server": "demo", "label": "ci", "expires": "1d"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let token = g["token"].as_str().unwrap().to_string();
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["policy"], "p");
    let (_, list) = call(&f.app, "GET", "/api/v1/grants", &f.viewer, None).await;
    assert_eq!(list["grants"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&token));
    let (s, r) = call(
        &f.app,
        "POST",
        &format!("/api/v1/grants/{id}/rotate"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(r["token"].as_str().unwrap(), token);
    let (s, r) = call(
        &f.app,
        "DELETE",
        &format!("/api/v1/grants/{id}"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("revoked")));
    for (body, want) in [
        (
            json!({"server": "nope", "label": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (json!({"server": "demo"}), StatusCode::BAD_REQUEST),
        (
            json!({"server": "demo", "label": "x", "expires": "soon"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, e) = call(&f.app, "POST", "/api/v1/grants", &f.admin, Some(body)).await;
        assert_eq!(s, want, "{e}");
    }
    let (s, _) = call(&f.app, "DELETE", "/api/v1/grants/g_nope", &f.admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn audit_query_and_stream() {
    let f = fixture("audit").await;
    mcp(
        &f,
        "tools/call",
        json!({"name": "delete_patient_record", "arguments": {"patient_id": "p1"}}),
    )
    .await;
    mcp(
        &f,
        "tools/call",
        json!({"name": "list_patients", "arguments": {}}),
    )
    .await;
    let (s, v) = call(
        &f.app,
        "GET",
        "/api/v1/audit?decision=deny&tool=delete_patient_record",
        &f.viewer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    assert_eq!(recs[0]["rule"], "/tools/delete_patient_record/action");
    let (s, _) = call(&f.app, "GET", "/api/v1/audit?limit=0", &f.viewer, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &f.app,
        "GET",
        "/api/v1/audit?since=yesterdayish",
        &f.viewer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The stream from the start: the first events are the records already written.
    let req = Request::get("/api/v1/audit/stream?after=0&kind=call")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", f.viewer))
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::new();
    use futures::StreamExt;
    while text.matches("event: record").count() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .expect("a record within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("id: 1\nevent: record\ndata: {"), "{text}");
    assert!(text.contains("delete_patient_record"), "{text}");
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_csp() {
    let f = fixture("dashboard").await;
    for path in ["/", "/dashboard/app.js", "/dashboard/app.css"] {
        let resp = f
            .app
            .clone()
            .oneshot(
                Request::get(path)
                    .header("host", "localhost")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
    }
}

#[test]
fn openapi_lists_every_route_and_nothing_else() {
    let doc: Value = serde_json::from_str(toolgate_gateway::api::OPENAPI).unwrap();
    let mut documented: Vec<(String, String)> = vec![];
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut routes: Vec<(String, String)> = toolgate_gateway::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);
}

#[tokio::test]
async fn every_listed_route_exists() {
    let f = fixture("routes").await;
    for (method, path) in toolgate_gateway::api::ROUTES {
        let uri = path
            .replace("{id}", "x")
            .replace("{name}", "p")
            .replace("{version}", "v")
            .replace("{tool}", "t");
        let req = Request::builder()
            .header("host", "localhost")
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let resp = f.app.clone().oneshot(req).await.unwrap();
        let s = resp.status();
        assert!(
            s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {s}"
        );
    }
}

/// A document whose inline tests would make `tests` x `calls` calls to a tool with
/// `limits` limits (the shape of the CPU attack on `/validate`).
fn heavy_policy(tests: usize, calls: u32, limits: usize) -> Value {
    let limits: Vec<Value> = (0..limits)
        .map(|i| json!({"counter": format!("c{i}"), "window": "day", "max": 1_000_000}))
        .collect();
    let tests: Vec<Value> = (0..tests)
        .map(|_| json!({"tool": "list_patients", "expect": "allow", "calls": calls}))
        .collect();
    json!({"version": "1", "default": "deny",
        "tools": {"list_patients": {"limits": limits}}, "tests": tests})
}

#[tokio::test]
async fn validate_refuses_inline_tests_over_the_caps_at_their_field() {
    let f = fixture("validate-caps").await;
    let started = std::time::Instant::now();
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/policies/validate",
        &f.viewer,
        Some(heavy_policy(10, 100_000, 20)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["pointer"], "/tests/1/calls", "{v}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100000 calls"),
        "{v}"
    );
    // Refused by the load's caps, before any test runs: no CPU spent on them.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let many: Vec<Value> = (0..501)
        .map(|_| json!({"tool": "x", "expect": "deny"}))
        .collect();
    let doc = json!({"version": "1", "default": "deny", "tests": many});
    let (_, v) = call(
        &f.app,
        "POST",
        "/api/v1/policies/validate",
        &f.viewer,
        Some(doc),
    )
    .await;
    assert_eq!(v["errors"][0]["pointer"], "/tests", "{v}");
}

#[tokio::test]
async fn validate_is_refused_with_429_while_another_runs() {
    let f = fixture("validate-busy").await;
    let doc = json!({"version": "1", "default": "deny", "tools": {"x": {}},
        "tests": [{"tool": "x", "expect": "allow"}]});
    let held = f.state.validations.clone().try_acquire_owned().unwrap();
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/policies/validate",
        &f.viewer,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("another policy validation is running"),
        "{v}"
    );
    drop(held);
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/policies/validate",
        &f.viewer,
        Some(doc),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
}

/// On a single-threaded runtime: while a heavy validation runs, `/healthz` still answers,
/// so the inline tests run off the async thread (inline, the first poll of the
/// validation would run them to the end). The validation itself stops at the step budget.
#[tokio::test(flavor = "current_thread")]
async fn validate_runs_its_tests_off_the_async_thread_within_a_budget() {
    let f = fixture("validate-offthread").await;
    let app = f.app.clone();
    let viewer = f.viewer.clone();
    let validation = tokio::spawn(async move {
        call(
            &app,
            "POST",
            "/api/v1/policies/validate",
            &viewer,
            Some(heavy_policy(1, 100_000, 20)),
        )
        .await
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let resp = f
        .app
        .clone()
        .oneshot(
            Request::get("/healthz")
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        !validation.is_finished(),
        "the validation ran to its end before /healthz was served: it blocked the async thread"
    );
    let (s, v) = validation.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["pointer"], "/tests/0", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stopped: the inline tests used up their budget"),
        "{v}"
    );
}
