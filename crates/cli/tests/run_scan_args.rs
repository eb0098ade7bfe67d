//! Where `run` and `scan` take their options: before the server's command, with or without
//! `--` for `run` (the MCP Inspector's CLI drops it); a scan option after `scan --` is refused.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::{Command, Stdio};

fn toolgate(args: &[&str]) -> (String, String, i32) {
    let home = std::env::temp_dir().join(format!("toolgate-args-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .current_dir(&home)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn demo_policy() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/demo.json").to_string()
}

#[test]
fn scan_refuses_its_options_after_the_command() {
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let out = std::env::temp_dir().join(format!("toolgate-misplaced-{}.json", std::process::id()));
    let out = out.to_str().unwrap();
    let joined = format!("--policy-out={out}");
    for tail in [
        vec!["--policy-out", out],
        vec![&joined],
        vec!["--format", "json"],
        vec!["--format=markdown"],
    ] {
        let mut args = vec!["scan", "--", bin, "demo", "--stdio"];
        args.extend(tail);
        let (stdout, err, code) = toolgate(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("put scan's options before the command"),
            "{err}"
        );
        assert!(stdout.is_empty(), "nothing scanned: {stdout}");
        assert!(!std::path::Path::new(out).exists());
    }
    // Before the command, as docs/SCAN.md shows: the policy is written.
    let (stdout, err, code) = toolgate(&[
        "scan",
        "--format",
        "json",
        "--policy-out",
        out,
        "--",
        bin,
        "demo",
        "--stdio",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("\"servers\""));
    assert!(std::fs::read_to_string(out)
        .unwrap()
        .contains("\"default\""));
    std::fs::remove_file(out).unwrap();
}

#[test]
fn a_server_may_take_its_own_format_and_header_flags() {
    // `--format text` is not one of scan's formats and `--header` is a server's flag too
    // (mcp-remote's): both go to the server. The demo refuses them, so the scan fails on
    // the server, not on scan's own argument check.
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let (_, err, _) = toolgate(&[
        "scan", "--", bin, "demo", "--stdio", "--format", "text", "--header", "x",
    ]);
    assert!(
        !err.contains("put scan's options before the command"),
        "{err}"
    );
}

#[test]
fn run_takes_the_command_with_or_without_the_double_dash() {
    let policy = demo_policy();
    let bin = env!("CARGO_BIN_EXE_toolgate");
    // stdin closed: toolgate starts the server, sees the client gone and stops. What matters
    // is that the arguments parse and the name is derived from the command.
    for args in [
        vec![
            "run", "--policy", &policy, "--name", "demo", bin, "demo", "--stdio",
        ],
        vec![
            "run", "--policy", &policy, "--name", "demo", "--", bin, "demo", "--stdio",
        ],
    ] {
        let (stdout, err, _) = toolgate(&args);
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(err.contains("server=demo"), "{args:?}: {err}");
        assert!(stdout.is_empty());
    }
    // Without `--`, hyphenated arguments after the command are still the server's.
    // (A script that does not exist: node stops at once.)
    let (_, err, _) = toolgate(&[
        "run",
        "--policy",
        &policy,
        "node",
        "--no-warnings",
        "/nonexistent/server-x/dist/index.js",
        "--policy",
        "x",
    ]);
    assert!(
        err.contains("server name `server-x`") && err.contains("--name"),
        "{err}"
    );
    let (_, err, code) = toolgate(&["run", "--policy", &policy]);
    assert_eq!(code, 2);
    assert!(err.contains("CMD ARGS"), "{err}");
}
