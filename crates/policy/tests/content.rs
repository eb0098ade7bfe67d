//! Content inspection in the policy language (issue 21): the `secret` and `pii` ops,
//! `validate_arguments`, and `results` rules with their merging and errors.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::{json, Value};
use toolgate_policy::{
    evaluate, load_str, Call, Class, Decision, Effect, Facts, KindSet, OnInjection, Policy,
};

fn load(text: &str) -> Policy {
    load_str(text).unwrap().policy
}

fn errors(text: &str) -> Vec<String> {
    load_str(text)
        .unwrap_err()
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn judge(p: &Policy, tool: &str, args: Value) -> Decision {
    let c = Call {
        tool,
        args: &args,
        grant: "g1",
        identity: "alice",
        session: "s1",
        server: "demo",
    };
    evaluate(&c, p, &Facts::default(), 0)
}

const NOTES: &str = r#"{"version":"1","default":"deny","tools":{
  "send_note":{"deny_if":[
    {"path":"args","op":"secret"},
    {"path":"args.body","op":"pii","value":["card","ssn"]}
  ]},
  "share":{"require":[{"path":"args.to","op":"pii","value":["email"]}]}
}}"#;

#[test]
fn secret_op_denies_a_credential_anywhere_under_the_path_without_showing_it() {
    let p = load(NOTES);
    let d = judge(
        &p,
        "send_note",
        json!({"body": "hi", "meta": {"headers": ["x", "Authorization: Bearer abcdefghijklmnop"]}}),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.rule, "/tools/send_note/deny_if/0");
    let detail = d.detail.unwrap();
    assert_eq!(
        detail,
        "`args.meta.headers.1` holds a credential (bearer token)"
    );
    assert!(!detail.contains("abcdefghijklmnop"));
    for clean in [
        json!({"body": "commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39, id 123e4567-e89b-12d3-a456-426614174000"}),
        json!({"body": "see data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}),
        json!({"body": 42, "flag": true, "none": null}),
    ] {
        assert!(judge(&p, "send_note", clean.clone()).is_allow(), "{clean}");
    }
}

#[test]
fn pii_op_matches_its_kinds_only() {
    let p = load(NOTES);
    let d = judge(&p, "send_note", json!({"body": "ssn 078-05-1120"}));
    assert_eq!(d.rule, "/tools/send_note/deny_if/1");
    assert_eq!(
        d.detail.unwrap(),
        "`args.body` holds personal data (social security number)"
    );
    let d = judge(
        &p,
        "send_note",
        json!({"body": ["ok", 4111111111111111u64]}),
    );
    assert_eq!(
        d.rule, "/tools/send_note/deny_if/1",
        "a card written as a number"
    );
    assert!(judge(&p, "send_note", json!({"body": "mail me at a@b.io"})).is_allow());
    // `require` with `pii`: the value must hold one.
    assert!(judge(&p, "share", json!({"to": "a@b.io"})).is_allow());
    let d = judge(&p, "share", json!({"to": "nobody"}));
    assert_eq!(d.rule, "/tools/share/require/0");
    assert_eq!(
        d.detail.unwrap(),
        "`args.to` must hold personal data (email), and holds none"
    );
    let d = judge(&p, "share", json!({}));
    assert!(d.detail.unwrap().contains("absent"));
}

#[test]
fn op_errors_point_at_the_field() {
    let e = errors(
        r#"{"version":"1","default":"deny","tools":{"t":{"deny_if":[
            {"path":"args.a","op":"secret","value":true},
            {"path":"args","op":"pii","value":["email","passport","secrets"]},
            {"path":"args.b","op":"pii","value":[]},
            {"path":"args.c","op":"pii"},
            {"path":"args","op":"eq","value":1}
        ]}}}"#,
    );
    assert_eq!(
        e,
        vec![
            "/tools/t/deny_if/0/value: `secret` takes no value (it matches any credential under the path), got true",
            r#"/tools/t/deny_if/1/value/1: expected one of "email", "phone", "card", "iban", "ssn", "ip", got "passport""#,
            r#"/tools/t/deny_if/1/value/2: `secrets` is not personal data: use the `secret` op; expected one of "email", "phone", "card", "iban", "ssn", "ip""#,
            r#"/tools/t/deny_if/2/value: expected at least one kind ("email", "phone", "card", "iban", "ssn", "ip"), got []"#,
            r#"/tools/t/deny_if/3/value: missing: `pii` needs a list of kinds ("email", "phone", "card", "iban", "ssn", "ip")"#,
            r#"/tools/t/deny_if/4/path: expected a path starting with "args." (such as "args.amount"), got "args": the whole arguments are a path only for the `secret` and `pii` ops"#,
        ]
    );
}

#[test]
fn validate_arguments_per_tool_wins() {
    let p = load(
        r#"{"version":"1","default":"allow","validate_arguments":true,"tools":{
            "a":{"validate_arguments":false},
            "b":{"action":"require_approval"}
        }}"#,
    );
    assert_eq!(p.validate_arguments_for("a"), None);
    assert_eq!(p.validate_arguments_for("b"), Some("/validate_arguments"));
    assert_eq!(
        p.validate_arguments_for("unlisted"),
        Some("/validate_arguments")
    );
    let p = load(r#"{"version":"1","default":"allow","tools":{"a":{"validate_arguments":true}}}"#);
    assert_eq!(
        p.validate_arguments_for("a"),
        Some("/tools/a/validate_arguments")
    );
    assert_eq!(p.validate_arguments_for("b"), None);
    let e = errors(
        r#"{"version":"1","default":"deny","validate_arguments":"yes","tools":{"a":{"validate_arguments":1}}}"#,
    );
    assert_eq!(
        e,
        vec![
            r#"/validate_arguments: expected true or false, got "yes""#,
            "/tools/a/validate_arguments: expected true or false, got 1",
        ]
    );
}

#[test]
fn results_merge_key_by_key_and_the_tool_wins() {
    let p = load(
        r#"{"version":"1","default":"allow",
            "all_tools":{"results":{"redact":["secrets","email"],"deny_if":["card"],"on_injection":"flag"}},
            "tools":{
              "own_redact":{"results":{"redact":["ip"]}},
              "own_injection":{"results":{"on_injection":"deny","deny_if":["ssn","iban"]}},
              "plain":{}
            }}"#,
    );
    let shared = p.results_rules("unlisted").unwrap();
    assert_eq!(shared.redact, KindSet::of(&[Class::Secrets, Class::Email]));
    assert_eq!(shared.deny_if[0].pointer, "/all_tools/results/deny_if/0");
    assert_eq!(shared.on_injection, OnInjection::Flag);
    assert_eq!(
        shared.on_injection_pointer,
        "/all_tools/results/on_injection"
    );
    assert_eq!(p.results_rules("plain"), Some(shared));

    let own = p.results_rules("own_redact").unwrap();
    assert_eq!(own.redact, KindSet::of(&[Class::Ip]));
    assert_eq!(own.deny_if, shared.deny_if);
    assert_eq!(own.on_injection, OnInjection::Flag);

    let inj = p.results_rules("own_injection").unwrap();
    assert_eq!(inj.redact, shared.redact);
    assert_eq!(inj.on_injection, OnInjection::Deny);
    assert_eq!(
        inj.on_injection_pointer,
        "/tools/own_injection/results/on_injection"
    );
    let classes: Vec<(Class, &str)> = inj
        .deny_if
        .iter()
        .map(|d| (d.class, d.pointer.as_str()))
        .collect();
    assert_eq!(
        classes,
        vec![
            (Class::Ssn, "/tools/own_injection/results/deny_if/0"),
            (Class::Iban, "/tools/own_injection/results/deny_if/1"),
        ]
    );

    let none = load(
        r#"{"version":"1","default":"allow","tools":{"t":{"results":{"on_injection":"allow"}}}}"#,
    );
    assert_eq!(none.results_rules("t"), None, "rules that do nothing");
    assert_eq!(none.results_rules("u"), None);
}

#[test]
fn results_errors_point_at_the_field() {
    let e = errors(
        r#"{"version":"1","default":"allow",
            "all_tools":{"results":{"redact":"all","on_injecton":"flag"}},
            "tools":{"t":{"results":{"redact":["email","dob"],"deny_if":[],"on_injection":"block"}}}}"#,
    );
    assert_eq!(
        e,
        vec![
            "/all_tools/results/on_injecton: unknown key `on_injecton` (did you mean `on_injection`?)",
            r#"/all_tools/results/redact: expected an array of kinds ("secrets", "email", "phone", "card", "iban", "ssn", "ip"), got "all""#,
            r#"/tools/t/results/redact/1: expected one of "secrets", "email", "phone", "card", "iban", "ssn", "ip", got "dob""#,
            r#"/tools/t/results/deny_if: expected at least one kind ("secrets", "email", "phone", "card", "iban", "ssn", "ip"), got []"#,
            r#"/tools/t/results/on_injection: expected "allow", "flag", "strip" or "deny", got "block""#,
        ]
    );
    let l = load_str(
        r#"{"version":"1","default":"deny","tools":{"t":{"results":{"redact":["email"],"deny_if":["email"]}}}}"#,
    )
    .unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].pointer, "/tools/t/results/deny_if/0");
}
