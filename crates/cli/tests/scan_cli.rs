//! `toolgate scan --file`: reports, exit codes, and a starter policy that `policy check` accepts.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn toolgate(args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn json_report_and_starter_policy() {
    let out = std::env::temp_dir().join(format!("toolgate-starter-{}.json", std::process::id()));
    let (stdout, err, code) = toolgate(&[
        "scan",
        "--format",
        "json",
        "--file",
        "tests/fixtures/tools/labelled/stripe.json",
        "--policy-out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let server = &v["servers"][0];
    assert_eq!(server["server"], "stripe");
    assert!(matches!(
        server["grade"].as_str(),
        Some("A" | "B" | "C" | "D" | "E")
    ));
    let refund = server["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "create_refund")
        .unwrap();
    assert_eq!(refund["category"], "Financial");
    assert_eq!(refund["severity"], "High");
    assert_eq!(refund["recommended"]["action"], "require_approval");
    let (check, _, code) = toolgate(&["policy", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{check}");
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(policy["default"], "deny");
    // Bulk personal data: counted, never allowed outright and never sent to approval.
    assert!(policy["tools"]["list_customers"]["limits"].is_array());
    assert_eq!(
        policy["tools"]["search_stripe_documentation"],
        serde_json::json!({})
    );
}

#[test]
fn poisoned_tools_fail_the_scan_and_are_listed_first() {
    let (stdout, _, code) = toolgate(&[
        "scan",
        "--file",
        "tests/fixtures/tools/poisoned/invariant-labs.json",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("grade F"), "{stdout}");
    let add = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("add "))
        .unwrap();
    assert!(
        add.contains("Critical") && add.contains("hidden-instructions, secret-access"),
        "{add}"
    );
}

#[test]
fn param_count_signal_on_the_demo_checkout_tool() {
    let file =
        std::env::temp_dir().join(format!("toolgate-demo-tools-{}.json", std::process::id()));
    let tools = serde_json::json!({"tools": [{"name": "create_agent_checkout_session", "description": "Create a checkout session",
        "inputSchema": {"type": "object", "properties": (0..13).map(|i| (format!("p{i}"), serde_json::json!({"type": "string"}))).collect::<serde_json::Map<_, _>>()}}]});
    std::fs::write(&file, tools.to_string()).unwrap();
    let (stdout, _, code) =
        toolgate(&["scan", "--format", "json", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("High parameter count (13 properties)"),
        "{stdout}"
    );
    assert!(stdout.contains("\"category\": \"Financial\""), "{stdout}");
}

#[test]
fn a_live_stdio_server_the_demo() {
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let (stdout, err, code) = toolgate(&["scan", "--format", "json", "--", bin, "demo", "--stdio"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let tools = v["servers"][0]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 28);
    let cat = |n: &str| {
        tools.iter().find(|t| t["name"] == n).unwrap()["category"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(cat("delete_patient_record"), "Destructive");
    assert_eq!(cat("refund_payment"), "Financial");
    assert_eq!(cat("list_patients"), "Read");
    assert_eq!(cat("run_report_sql"), "Execute");
}

#[test]
fn unreachable_and_empty_targets_fail_clearly() {
    let (_, err, code) = toolgate(&["scan", "http://127.0.0.1:9/mcp"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot reach `http://127.0.0.1:9/mcp`"),
        "{err}"
    );
    let (_, err, code) = toolgate(&["scan"]);
    assert_eq!(code, 2);
    assert!(err.contains("--file"), "{err}");
    let (_, err, code) = toolgate(&["scan", "demo", "--format", "json"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an http:// or https:// URL"), "{err}");
}

#[test]
fn a_live_http_server_with_options_after_the_url() {
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(bin)
        .args(["demo", "--http", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut out = (String::new(), String::new(), -1);
    for _ in 0..50 {
        out = toolgate(&["scan", &url, "--format", "json"]);
        if out.2 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(out.2, 0, "{}", out.1);
    let v: serde_json::Value = serde_json::from_str(&out.0).unwrap();
    assert_eq!(v["servers"][0]["tools"].as_array().unwrap().len(), 28);
}
