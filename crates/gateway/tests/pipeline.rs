//! The call pipeline, table-driven, through both agent-side fronts: the Streamable HTTP
//! router (`serve`) and the stdio front (`toolgate run`, on in-process pipes). The state is
//! in memory (`MemoryState`, an in-memory audit log, counters that can be taken down) and
//! the time is a manual clock, so expiry needs no waiting; the upstream is the bundled demo
//! server, in process on loopback.
//!
//! Every case runs on a fresh gateway through each front; what the agent sees (allowed,
//! denied and by which rule, a JSON-RPC error) and what the audit log records (kind, tool,
//! decision, rule, approver, outcome) must be what the case expects, and the same through
//! both fronts.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use toolgate_gateway::clock::Clock;
use toolgate_gateway::{router, AppState, Config};
use toolgate_policy::{CounterError, Counters, MemoryCounters, Reservation, Ticket};
use toolgate_store::{
    AdminStore, AuditFilter, AuditLog, CounterStore, Grant, GrantStore, MemoryState, NewGrant,
    Outage, PinStore, Role,
};
use tower::ServiceExt;

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["export_patient_data"],"tools":{
    "list_patients":{},
    "delete_patient_record":{"action":"deny","reason":"Staff only."},
    "send_patient_email":{"require":[{"path":"args.to","op":"regex","value":"^[^@\\s]+@[^@\\s]+$"}]},
    "get_patient":{"limits":[{"counter":"gp","window":"minute","max":1,"scope":"grant"}]},
    "ghost_tool":{"limits":[{"counter":"ghost","window":"minute","max":1,"scope":"grant"}]},
    "list_providers":{},
    "list_appointments":{},
    "list_payments":{"action":"require_approval","approval":{"timeout":"60s"}}}}"#;

/// Counters that fail every call while `down` is set, as an unreachable Redis would.
#[derive(Default)]
struct FlakyCounters {
    inner: MemoryCounters,
    down: AtomicBool,
}

impl Counters for FlakyCounters {
    fn reserve(&self, r: &[Reservation], now_ms: u64) -> Result<Ticket, CounterError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CounterError::Unavailable(
                "the test took the counters down".into(),
            ));
        }
        self.inner.reserve(r, now_ms)
    }

    fn give_back(&self, ticket: &Ticket) -> Result<(), CounterError> {
        self.inner.give_back(ticket)
    }
}

impl CounterStore for FlakyCounters {}

/// One gateway on in-memory state, and the switches a case may turn.
struct Gw {
    st: Arc<AppState>,
    store: Arc<MemoryState>,
    store_down: Outage,
    audit_down: Outage,
    audit: Arc<AuditLog>,
    counters: Arc<FlakyCounters>,
    clock: Clock,
    grant_token: String,
    admin_token: String,
}

async fn gateway(fail_mode: &str, stdio: bool) -> Gw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(toolgate_demo::serve_http(listener, std::future::pending()));
    let dir =
        std::env::temp_dir().join(format!("toolgate-pipeline-{}-{}", std::process::id(), port));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.json"), POLICY).unwrap();
    std::fs::write(
        dir.join("toolgate.toml"),
        format!("[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\npolicy = \"p\"\nstate_fail_mode = \"{fail_mode}\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
    )
    .unwrap();
    let cfg = Config::load(&dir.join("toolgate.toml")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let clock = Clock::manual(toolgate_gateway::clock::now_ms());
    let store = Arc::new(MemoryState::new());
    let store_down = store.outage();
    let (grant, grant_token) = store
        .create_grant(
            &NewGrant {
                label: "agent".into(),
                server: "demo".into(),
                policy: Some("p".into()),
                identity: None,
                expires_at_ms: None,
            },
            clock.now_ms(),
        )
        .unwrap();
    let (_, admin_token) = store
        .create_admin_token("approver", Role::Admin, clock.now_ms())
        .unwrap();
    let (audit, audit_down) = AuditLog::in_memory().unwrap();
    let audit = Arc::new(audit);
    let counters = Arc::new(FlakyCounters::default());
    let mut st = AppState::new(cfg, store.clone(), counters.clone())
        .unwrap()
        .with_audit(audit.clone())
        .with_clock(clock.clone());
    if stdio {
        // As `toolgate run` does: one local grant, admitted without a token.
        st = st.with_local_grant(Grant {
            id: "stdio-demo".into(),
            ..grant
        });
    }
    Gw {
        st: Arc::new(st),
        store,
        store_down,
        audit_down,
        audit,
        counters,
        clock,
        grant_token,
        admin_token,
    }
}

/// A front the agent talks to: send a message, then read the answer to an id.
enum Front {
    Http {
        app: axum::Router,
        token: String,
        session: Option<String>,
        pending: Vec<(u64, tokio::task::JoinHandle<Value>)>,
    },
    Stdio {
        input: tokio::io::DuplexStream,
        output: tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    },
}

/// The last JSON message of an answer (JSON, or the data of the last SSE event).
fn last_message(text: &str) -> Value {
    let json_text =
        if text.starts_with("event:") || text.starts_with("data:") || text.starts_with(':') {
            text.lines()
                .rev()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null")
        } else {
            text
        };
    serde_json::from_str(json_text).unwrap_or(Value::Null)
}

impl Front {
    async fn open(gw: &Gw, stdio: bool) -> Front {
        let mut f = if stdio {
            let (input, theirs_in) = tokio::io::duplex(1 << 20);
            let (theirs_out, output) = tokio::io::duplex(1 << 20);
            tokio::spawn(toolgate_gateway::stdio_mode::run_on(
                gw.st.clone(),
                theirs_in,
                theirs_out,
            ));
            Front::Stdio {
                input,
                output: BufReader::new(output).lines(),
            }
        } else {
            Front::Http {
                app: router(gw.st.clone()),
                token: gw.grant_token.clone(),
                session: None,
                pending: vec![],
            }
        };
        f.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .await;
        let init = f.recv(0).await;
        assert!(init["result"]["serverInfo"].is_object(), "{init}");
        f.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        f
    }

    async fn send(&mut self, msg: Value) {
        match self {
            Front::Http {
                app,
                token,
                session,
                pending,
            } => {
                let mut b = Request::post("/mcp/demo")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("authorization", format!("Bearer {token}"));
                if let Some(s) = session {
                    b = b
                        .header("mcp-session-id", s.as_str())
                        .header("mcp-protocol-version", "2025-06-18");
                }
                let req = b.body(Body::from(msg.to_string())).unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                if session.is_none() {
                    *session = resp
                        .headers()
                        .get("mcp-session-id")
                        .map(|v| v.to_str().unwrap().to_string());
                }
                let Some(id) = msg["id"].as_u64() else {
                    return; // a notification: 202, no answer
                };
                pending.push((
                    id,
                    tokio::spawn(async move {
                        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
                            .await
                            .unwrap();
                        last_message(&String::from_utf8_lossy(&bytes))
                    }),
                ));
            }
            Front::Stdio { input, .. } => {
                input
                    .write_all(format!("{msg}\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
    }

    async fn recv(&mut self, id: u64) -> Value {
        let wait = async {
            match self {
                Front::Http { pending, .. } => {
                    let at = pending.iter().position(|(i, _)| *i == id).unwrap();
                    pending.remove(at).1.await.unwrap()
                }
                Front::Stdio { output, .. } => loop {
                    let line = output
                        .next_line()
                        .await
                        .unwrap()
                        .expect("stdio front ended");
                    let v: Value = serde_json::from_str(&line).unwrap();
                    if v["id"].as_u64() == Some(id) {
                        return v;
                    }
                },
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("no answer within 20 s")
    }
}

/// What the agent saw, without what differs by nature (ids, texts with times).
fn seen(answer: &Value) -> (String, Option<String>) {
    if let Some(code) = answer["error"]["code"].as_i64() {
        return ("error".into(), Some(code.to_string()));
    }
    let r = &answer["result"];
    let rule = r["_meta"]["toolgate"]["rule"].as_str().map(str::to_string);
    if r["isError"] == true {
        ("denied".into(), rule)
    } else {
        ("ok".into(), rule)
    }
}

type Recorded = Vec<(String, String, String, String, String, String)>;

/// The audit records of `tools/call`s and approvals: kind, tool, decision, rule, approver,
/// outcome.
async fn recorded(audit: &AuditLog) -> Recorded {
    // Denials and outcomes are queued just after the answer.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut out = vec![];
    let s = |v: Option<String>| v.unwrap_or_default();
    audit
        .query(&AuditFilter::default(), false, None, |r| {
            if r.kind.as_str() == "call" && r.method.as_deref() != Some("tools/call") {
                return true;
            }
            out.push((
                r.kind.as_str().to_string(),
                s(r.tool.clone()),
                s(r.decision.clone()),
                s(r.rule.clone()),
                s(r.approver.clone()),
                r.outcome
                    .map(|o| o.as_str().to_string())
                    .unwrap_or_default(),
            ));
            true
        })
        .unwrap();
    out
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

/// Approves or denies the one waiting approval through the admin API, as an operator.
async fn decide(gw: &Gw, approve: bool) {
    let mut waiting = vec![];
    for _ in 0..200 {
        waiting =
            toolgate_store::ApprovalStore::approvals(gw.store.as_ref(), true, gw.clock.now_ms())
                .unwrap();
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = &waiting.first().expect("no approval appeared").id;
    let (path, body) = if approve {
        (format!("/api/v1/approvals/{id}/approve"), String::new())
    } else {
        (
            format!("/api/v1/approvals/{id}/deny"),
            json!({"reason": "not now"}).to_string(),
        )
    };
    let req = Request::post(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", gw.admin_token))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = router(gw.st.clone()).oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// One case: its steps (in [`steps`], by name), its server's `state_fail_mode`, and what
/// the agent must see.
struct Case {
    name: &'static str,
    fail_mode: &'static str,
    /// What each `tools/call` answered, in order.
    expect: &'static [(&'static str, Option<&'static str>)],
}

/// What the agent saw at each step.
type Steps = Vec<(String, Option<String>)>;

async fn run_case(case: &Case, stdio: bool) -> (Steps, Recorded) {
    let gw = gateway(case.fail_mode, stdio).await;
    let mut front = Front::open(&gw, stdio).await;
    let seen_by_agent = steps(case.name, &gw, &mut front).await;
    let records = recorded(&gw.audit).await;
    (seen_by_agent, records)
}

/// The steps of each case, by name (async closures cannot be stored in a `const` table).
async fn steps(name: &str, gw: &Gw, f: &mut Front) -> Steps {
    let mut out = vec![];
    macro_rules! ask {
        ($id:expr, $tool:expr, $args:expr) => {{
            f.send(call($id, $tool, $args)).await;
            out.push(seen(&f.recv($id).await));
        }};
    }
    match name {
        "allowed" => ask!(1, "list_patients", json!({"limit": 1})),
        "default deny" => ask!(1, "search_patients", json!({"query": "a"})),
        "action deny" => ask!(
            1,
            "delete_patient_record",
            json!({"patient_id": "pat_1001"})
        ),
        "hidden" => ask!(1, "export_patient_data", json!({"patient_id": "pat_1001"})),
        "require" => ask!(
            1,
            "send_patient_email",
            json!({"patient_id": "pat_1001", "to": "not an address", "subject": "s", "body": "b"})
        ),
        "limit reached" => {
            ask!(1, "get_patient", json!({"patient_id": "pat_1001"}));
            ask!(2, "get_patient", json!({"patient_id": "pat_1001"}));
        }
        "limit given back" => {
            // The upstream answers a JSON-RPC error (no such tool): the count comes back.
            ask!(1, "ghost_tool", json!({}));
            ask!(2, "ghost_tool", json!({}));
        }
        "held then approved" | "held then denied" => {
            f.send(call(1, "list_payments", json!({"limit": 1}))).await;
            decide(gw, name == "held then approved").await;
            out.push(seen(&f.recv(1).await));
        }
        "held then expired" => {
            f.send(call(1, "list_payments", json!({"limit": 2}))).await;
            // Wait until it is held, then move the clock past its 60 s.
            for _ in 0..200 {
                let w = toolgate_store::ApprovalStore::approvals(
                    gw.store.as_ref(),
                    true,
                    gw.clock.now_ms(),
                )
                .unwrap();
                if !w.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            gw.clock.advance(61_000);
            out.push(seen(&f.recv(1).await));
        }
        "definition changed" => {
            let def = |h: &str| {
                vec![(
                    "list_appointments".to_string(),
                    h.to_string(),
                    "{}".to_string(),
                )]
            };
            gw.store
                .observe_tools("demo", &def("h1"), gw.clock.now_ms())
                .unwrap();
            gw.store
                .observe_tools("demo", &def("h2"), gw.clock.now_ms())
                .unwrap();
            ask!(1, "list_appointments", json!({}));
        }
        "counters down" => {
            gw.counters.down.store(true, Ordering::SeqCst);
            ask!(1, "get_patient", json!({"patient_id": "pat_1001"}));
            gw.counters.down.store(false, Ordering::SeqCst);
        }
        "audit down" => {
            gw.audit_down.set(true);
            ask!(1, "list_patients", json!({"limit": 1}));
            gw.audit_down.set(false);
        }
        other => panic!("no steps for case `{other}`"),
    }
    out
}

const DEFAULT_DENY: Option<&str> = Some("(default deny)");

fn cases() -> Vec<Case> {
    let c = |name, fail_mode, expect| Case {
        name,
        fail_mode,
        expect,
    };
    vec![
        c("allowed", "closed", &[("ok", None)]),
        c("default deny", "closed", &[("denied", DEFAULT_DENY)]),
        c(
            "action deny",
            "closed",
            &[("denied", Some("/tools/delete_patient_record/action"))],
        ),
        c("hidden", "closed", &[("error", Some("-32602"))]),
        c(
            "require",
            "closed",
            &[("denied", Some("/tools/send_patient_email/require/0"))],
        ),
        c(
            "limit reached",
            "closed",
            &[
                ("ok", None),
                ("denied", Some("/tools/get_patient/limits/0")),
            ],
        ),
        // Both reach the upstream, which knows no such tool: a JSON-RPC error each time.
        c(
            "limit given back",
            "closed",
            &[("error", Some("-32602")), ("error", Some("-32602"))],
        ),
        c("held then approved", "closed", &[("ok", None)]),
        c(
            "held then denied",
            "closed",
            &[("denied", Some("(approval denied)"))],
        ),
        c(
            "held then expired",
            "closed",
            &[("denied", Some("(approval timed out)"))],
        ),
        c(
            "definition changed",
            "closed",
            &[("denied", Some("(definition changed)"))],
        ),
        c(
            "counters down",
            "closed",
            &[("denied", Some("(store unavailable)"))],
        ),
        c("counters down", "open", &[("ok", None)]),
        c(
            "audit down",
            "closed",
            &[("denied", Some("(audit unavailable)"))],
        ),
        c("audit down", "open", &[("ok", None)]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_is_judged_and_recorded_alike_through_both_fronts() {
    let mut failures = vec![];
    for case in cases() {
        let (http_seen, http_records) = run_case(&case, false).await;
        let (stdio_seen, stdio_records) = run_case(&case, true).await;
        let want: Steps = case
            .expect
            .iter()
            .map(|(k, r)| (k.to_string(), r.map(str::to_string)))
            .collect();
        let label = format!("{} (state_fail_mode {})", case.name, case.fail_mode);
        if http_seen != want {
            failures.push(format!(
                "{label}: serve saw {http_seen:?}, expected {want:?}"
            ));
        }
        if stdio_seen != http_seen {
            failures.push(format!(
                "{label}: run saw {stdio_seen:?}, serve saw {http_seen:?}"
            ));
        }
        if stdio_records != http_records {
            failures.push(format!(
                "{label}: audit differs\n  serve: {http_records:?}\n  run:   {stdio_records:?}"
            ));
        }
        // Each case's own record, where it has one.
        let decisions: Vec<&str> = http_records.iter().map(|r| r.2.as_str()).collect();
        let own_record_missing = match (case.name, case.fail_mode) {
            // Nothing recorded while the audit log was down.
            ("audit down", _) => http_records.iter().any(|r| r.0 == "call"),
            ("held then approved", _) => !http_records
                .iter()
                .any(|r| r.0 == "approval" && r.2 == "approved" && r.4 == "approver"),
            // One forwarded call, uncounted, and its outcome.
            ("counters down", "open") => {
                decisions.first() != Some(&"allow")
                    || http_records.get(1).map(|r| r.5.as_str()) != Some("ok")
            }
            _ => false,
        };
        if own_record_missing {
            failures.push(format!("{label}: unexpected records {http_records:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_fails_closed_through_both_fronts() {
    // The state store (grants, pins, approvals) is down: `serve` cannot look up the token
    // and refuses with 503 before MCP; `run` (one local grant, nothing to look up) cannot
    // read the pin and refuses the call. Neither forwards it.
    for stdio in [false, true] {
        let gw = gateway("closed", stdio).await;
        let mut f = Front::open(&gw, stdio).await;
        gw.store_down.set(true);
        f.send(call(1, "list_appointments", json!({}))).await;
        let answer = f.recv(1).await;
        gw.store_down.set(false);
        let records = recorded(&gw.audit).await;
        assert!(
            !records.iter().any(|r| r.2 == "allow"),
            "stdio={stdio}: forwarded while the store was down: {records:?}"
        );
        let (kind, rule) = seen(&answer);
        assert!(
            kind == "error" || (kind == "denied" && rule.is_some()),
            "stdio={stdio}: {answer}"
        );
    }
}
