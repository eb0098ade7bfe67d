//! Drives the built `toolgate` binary: golden `policy check` messages over a folder of
//! broken policies (one per kind of mistake), `policy test` and `policy explain`.
//! `UPDATE_GOLDEN=1 cargo test` rewrites the golden files.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn toolgate(cwd: &Path, args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "golden mismatch for {name} (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn policy_check_golden_messages() {
    let dir = root().join("tests/fixtures/policies/broken");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 25,
        "need at least 25 broken policies, have {}",
        names.len()
    );
    for name in &names {
        let (out, err, code) = toolgate(&dir, &["policy", "check", name]);
        assert_eq!(code, 1, "{name} should fail the check:\n{out}{err}");
        assert!(
            out.contains("  error: /") || out.contains("  error: (document)"),
            "{name}: {out}"
        );
        assert!(err.is_empty(), "{name} wrote to stderr: {err}");
        golden(
            &format!("policy-check/{}.txt", name.trim_end_matches(".json")),
            &out,
        );
    }
}

#[test]
fn the_demo_policy_checks_and_its_tests_pass() {
    let root = root();
    let (out, _, code) = toolgate(&root, &["policy", "check", "policies/demo.json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("policies/demo.json: ok ("), "{out}");
    let (out, _, code) = toolgate(&root, &["policy", "test", "policies/demo.json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("13 passed, 0 failed"), "{out}");
}

#[test]
fn policy_test_reports_failures_with_exit_1() {
    let dir = tempdir();
    let file = dir.join("p.json");
    std::fs::write(&file, r#"{"version":"1","default":"deny","tools":{"a":{}},"tests":[{"tool":"a","expect":"deny"},{"tool":"b","expect":"deny"}]}"#).unwrap();
    let (out, _, code) = toolgate(&dir, &["policy", "test", "p.json"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAILED  /tests/0 a: expected deny, got allow by /tools/a"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 passed, 1 failed"), "{out}");
}

#[test]
fn explain_golden() {
    let root = root();
    let cases: &[(&str, &[&str])] = &[
        (
            "explain-deny-if",
            &[
                "--tool",
                "create_agent_checkout_session",
                "--args",
                r#"{"amount": 25000, "currency": "usd"}"#,
            ],
        ),
        ("explain-default-deny", &["--tool", "wipe_everything"]),
        ("explain-hidden", &["--tool", "export_patient_data"]),
        (
            "explain-calls",
            &[
                "--tool",
                "create_agent_checkout_session",
                "--args",
                r#"{"amount": 100, "currency": "eur"}"#,
                "--calls",
                "32",
            ],
        ),
        (
            "explain-approval",
            &[
                "--tool",
                "refund_payment",
                "--args",
                r#"{"payment_id": "pay_1", "amount": 1200}"#,
            ],
        ),
    ];
    for (name, extra) in cases {
        let mut args = vec!["policy", "explain", "policies/demo.json"];
        args.extend_from_slice(extra);
        let (out, err, code) = toolgate(&root, &args);
        assert_eq!(code, 0, "{name}: {out}{err}");
        golden(&format!("policy-explain/{name}.txt"), &out);
    }
}

#[test]
fn usage_and_runtime_errors_exit_2() {
    let root = root();
    let (_, err, code) = toolgate(&root, &["policy", "check", "does/not/exist.json"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot read `does/not/exist.json`"),
        "{err}"
    );
    let (_, err, code) = toolgate(
        &root,
        &[
            "policy",
            "explain",
            "policies/demo.json",
            "--tool",
            "x",
            "--args",
            "[1]",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("must be a JSON object"), "{err}");
    let (_, _, code) = toolgate(&root, &["policy", "frobnicate"]);
    assert_eq!(code, 2);
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "toolgate-cli-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
