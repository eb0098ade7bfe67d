//! Drives the built `toolgate` binary over a store and an audit log holding agent- and
//! upstream-chosen names with newlines, terminal escapes and bidi overrides: the
//! human-readable output of `audit tail`, `audit query`, `status` and `tools list` shows
//! them escaped (no forged rows, nothing for the terminal to act on); JSON stays exact.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use toolgate_audit::{Kind, Record};
use toolgate_protocol::text::is_unsafe;
use toolgate_store::{AuditLog, PinStore, SqliteStore};

/// A newline that forges an audit row, an OSC title change, a screen clear, a carriage
/// return, a right-to-left override, a zero-width space and a C1 control.
const EVIL: &str = "evil\n      9  2026-01-01T00:00:00.000Z  call     admin            transfer_all                 allow    (forged)\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{202e}gpj.exe\u{200b}\u{85}";

fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("toolgate-escape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.json"),
        r#"{"version":"1","default":"deny","tools":{}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("toolgate.toml"),
        "[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\npolicy = \"p\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .unwrap();
    dir
}

fn toolgate(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .current_dir(cwd)
        .env("TOOLGATE_OPERATOR", "test")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert_no_raw_controls(args, &stderr);
    String::from_utf8(out.stdout).unwrap()
}

/// No control, bidi or invisible formatting character but the line ends.
fn assert_no_raw_controls(what: &[&str], out: &str) {
    let bad: Vec<char> = out.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect();
    assert!(bad.is_empty(), "{what:?} printed raw {bad:?}:\n{out}");
}

#[test]
fn audit_tail_query_and_status_escape_agent_chosen_text() {
    let dir = setup("audit");
    let log = AuditLog::open(&dir.join("toolgate-audit.db")).unwrap();
    log.append_sync(Record {
        at_ms: 1_700_000_000_000,
        kind: Kind::Call,
        server: Some("demo".into()),
        tool: Some(EVIL.into()),
        grant_label: Some(EVIL.into()),
        decision: Some("deny".into()),
        rule: Some(EVIL.into()),
        message: Some(EVIL.into()),
        ..Default::default()
    })
    .unwrap();
    drop(log);

    for args in [
        &["audit", "tail"][..],
        &["audit", "query", "--kind", "call"][..],
    ] {
        let out = toolgate(&dir, args);
        assert_no_raw_controls(args, &out);
        // The header and the one record: the newline in the name forged no row.
        assert_eq!(out.lines().count(), 2, "{args:?}:\n{out}");
        assert!(out.contains("evil\\n      9"), "{out}");
        assert!(
            out.contains("\\x1b]0;pwned\\x07\\x1b[2J\\r\\u{202e}gpj.exe\\u{200b}\\u{85}"),
            "{out}"
        );
    }

    let out = toolgate(&dir, &["status", "--since", "100000d"]);
    assert_no_raw_controls(&["status"], &out);
    assert!(out.contains("\\u{202e}"), "{out}");

    // JSON output stays exact.
    let out = toolgate(&dir, &["audit", "tail", "--format", "jsonl"]);
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["tool"], EVIL);
}

#[test]
fn tools_list_escapes_upstream_chosen_names_and_definitions() {
    let dir = setup("tools");
    let store = SqliteStore::open(&dir.join("toolgate.db")).unwrap();
    let def = |d: &str| serde_json::json!({"name": EVIL, "description": d}).to_string();
    store
        .observe_tools("demo", &[(EVIL.into(), "a".repeat(64), def("old"))], 0)
        .unwrap();
    // A changed definition, held, so `--changed` prints the difference.
    store
        .observe_tools(
            "demo",
            &[(EVIL.into(), "b".repeat(64), def("new \u{202e}evil\u{2066}"))],
            1,
        )
        .unwrap();
    drop(store);

    let out = toolgate(&dir, &["tools", "list", "demo"]);
    assert_no_raw_controls(&["tools", "list"], &out);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\\u{202e}gpj.exe"), "{out}");

    let out = toolgate(&dir, &["tools", "list", "demo", "--changed"]);
    assert_no_raw_controls(&["tools", "list", "--changed"], &out);
    assert!(out.contains("new \\u{202e}evil\\u{2066}"), "{out}");
}
