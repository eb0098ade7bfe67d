//! Unit tests per rule kind, the foundation example, limits at window edges and under
//! concurrency.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use toolgate_policy::testing::{run_tests, simulate};
use toolgate_policy::{
    evaluate, labels, load_str, Call, CounterError, Counters, Decision, Effect, Facts,
    MemoryCounters, Policy,
};

const EXAMPLE: &str = r#"{"version":"1","default":"deny","tools":{"create_agent_checkout_session":{"limits":[{"counter":"create_agent_checkout_session_rate","window":"minute","max":30,"scope":"grant"}]}}}"#;

fn load(text: &str) -> Policy {
    load_str(text).unwrap().policy
}

fn call<'a>(tool: &'a str, args: &'a Value) -> Call<'a> {
    Call {
        tool,
        args,
        grant: "g1",
        identity: "alice",
        session: "s1",
        server: "demo",
    }
}

fn judge(p: &Policy, tool: &str, args: Value) -> Decision {
    evaluate(&call(tool, &args), p, &Facts::default(), 0)
}

/// Evaluates and reserves like the gateway.
fn attempt(p: &Policy, counters: &dyn Counters, c: &Call<'_>, now_ms: u64) -> Decision {
    let d = evaluate(c, p, &Facts::default(), now_ms);
    if d.effect == Effect::Deny {
        return d;
    }
    match counters.reserve(&d.reservations, now_ms) {
        Ok(_) => d,
        Err(CounterError::Exceeded(e)) => d.limited(e.index, e.retry_after_secs()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_example_allows_30_per_minute_per_grant() {
    let p = load(EXAMPLE);
    let args = json!({});
    let c = call("create_agent_checkout_session", &args);
    let counters = MemoryCounters::new();
    for i in 0..30 {
        assert!(attempt(&p, &counters, &c, 1_000 + i).is_allow(), "call {i}");
    }
    let d = attempt(&p, &counters, &c, 2_000);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.rule, "/tools/create_agent_checkout_session/limits/0");
    assert_eq!(d.retry_after_secs, Some(59));
    assert!(
        d.denial_text().ends_with("\nretry after: 59 s"),
        "{}",
        d.denial_text()
    );
    // Another grant has its own count.
    let other = Call { grant: "g2", ..c };
    assert!(attempt(&p, &counters, &other, 2_000).is_allow());
    // Once the first calls leave the window, the grant may call again.
    assert!(attempt(&p, &counters, &c, 61_000).is_allow());
    // Every other tool is denied by (default deny).
    let d = judge(&p, "send_email", json!({}));
    assert_eq!(
        (d.effect, d.rule.as_str()),
        (Effect::Deny, labels::DEFAULT_DENY)
    );
}

#[test]
fn hidden_beats_everything() {
    let p = load(
        r#"{"version":"1","default":"allow","hide":["drop","admin_*"],"tools":{"admin_ok":{}}}"#,
    );
    let d = judge(&p, "drop", json!({}));
    assert!(d.hidden);
    assert_eq!(d.rule, labels::HIDDEN);
    assert!(judge(&p, "admin_delete", json!({})).hidden);
    // A pattern does not hide a tool the policy lists by name.
    assert!(judge(&p, "admin_ok", json!({})).is_allow());
    assert!(!p.is_visible("drop"));
    assert!(p.is_visible("anything_else"));
}

#[test]
fn default_allow_and_listed_empty_rule() {
    let p = load(
        r#"{"version":"1","default":"allow","tools":{"x":{"limits":[{"counter":"c","window":1,"max":1}]}}}"#,
    );
    let d = judge(&p, "y", json!({}));
    assert_eq!(
        (d.effect, d.rule.as_str()),
        (Effect::Allow, labels::DEFAULT_ALLOW)
    );
    let p = load(r#"{"version":"1","default":"deny","tools":{"list_patients":{}}}"#);
    let d = judge(&p, "list_patients", json!({}));
    assert_eq!(
        (d.effect, d.rule.as_str()),
        (Effect::Allow, "/tools/list_patients")
    );
}

#[test]
fn action_deny_with_reason() {
    let p = load(
        r#"{"version":"1","default":"allow","tools":{"drop_database":{"action":"deny","reason":"Never from an agent."}}}"#,
    );
    let d = judge(&p, "drop_database", json!({}));
    assert_eq!(d.rule, "/tools/drop_database/action");
    assert_eq!(d.message, "Never from an agent.");
    assert_eq!(
        d.denial_text(),
        "[toolgate] denied: Never from an agent.\nrule: /tools/drop_database/action"
    );
    assert!(!p.is_visible("drop_database"));
}

#[test]
fn require_and_deny_if() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"checkout":{
        "require":[{"path":"args.currency","op":"in","value":["usd","eur"]}],
        "deny_if":[{"path":"args.amount","op":"gt","value":10000}],
        "on_deny":"Checkout sessions over 100.00 need a person."}}}"#,
    );
    assert!(judge(&p, "checkout", json!({"currency":"usd","amount":500})).is_allow());
    let d = judge(&p, "checkout", json!({"currency":"gbp","amount":500}));
    assert_eq!(d.rule, "/tools/checkout/require/0");
    assert_eq!(d.message, "Checkout sessions over 100.00 need a person.");
    assert!(d.detail.as_deref().unwrap().contains("got \"gbp\""));
    let d = judge(&p, "checkout", json!({"amount":500}));
    assert_eq!(d.rule, "/tools/checkout/require/0");
    assert!(d.detail.as_deref().unwrap().contains("absent"));
    let d = judge(&p, "checkout", json!({"currency":"eur","amount":20000}));
    assert_eq!(d.rule, "/tools/checkout/deny_if/0");
    // Wrong type in deny_if fails closed.
    let d = judge(&p, "checkout", json!({"currency":"eur","amount":"20000"}));
    assert_eq!(d.rule, "/tools/checkout/deny_if/0");
    assert!(d.detail.as_deref().unwrap().contains("denied to be safe"));
}

#[test]
fn every_operator() {
    let cases: &[(&str, Value, Value, bool)] = &[
        ("eq", json!(5), json!(5.0), true),
        ("eq", json!("a"), json!("b"), false),
        ("neq", json!("a"), json!("b"), true),
        ("lt", json!(10), json!(9), true),
        ("lte", json!(10), json!(10), true),
        ("gt", json!(10), json!(10), false),
        ("gte", json!(10), json!(10), true),
        ("in", json!([1, 2]), json!(2), true),
        ("not_in", json!([1, 2]), json!(3), true),
        (
            "regex",
            json!("^[a-z]+@clinic\\.example$"),
            json!("ann@clinic.example"),
            true,
        ),
        (
            "regex",
            json!("^[a-z]+@clinic\\.example$"),
            json!("ann@evil.example"),
            false,
        ),
        ("contains", json!("DROP"), json!("x; DROP TABLE"), true),
        ("contains", json!("b"), json!(["a", "b"]), true),
        ("contains", json!("z"), json!(["a", "b"]), false),
    ];
    for (op, value, arg, want) in cases {
        let doc = json!({"version":"1","default":"deny","tools":{"t":{"require":[{"path":"args.v.w","op":op,"value":value}]}}});
        let p = load(&doc.to_string());
        let d = judge(&p, "t", json!({"v": {"w": arg}}));
        assert_eq!(d.is_allow(), *want, "{op} {value} on {arg}: {d:?}");
    }
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"t":{"require":[{"path":"args.a","op":"exists","value":true}],"deny_if":[{"path":"args.b","op":"exists"}]}}}"#,
    );
    assert!(judge(&p, "t", json!({"a":1})).is_allow());
    assert!(!judge(&p, "t", json!({})).is_allow());
    assert_eq!(
        judge(&p, "t", json!({"a":1,"b":2})).rule,
        "/tools/t/deny_if/0"
    );
    // Array indexes in paths.
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"t":{"deny_if":[{"path":"args.to.0","op":"regex","value":"@gmail\\.com$"}]}}}"#,
    );
    assert!(!judge(&p, "t", json!({"to":["x@gmail.com"]})).is_allow());
    assert!(judge(&p, "t", json!({"to":["x@clinic.example"]})).is_allow());
}

#[test]
fn order_definition_changed_after_predicates_before_limits() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"t":{"deny_if":[{"path":"args.x","op":"eq","value":1}],"limits":[{"counter":"c","window":"minute","max":1}]}}}"#,
    );
    let args = json!({"x": 1});
    let changed = Facts {
        definition_changed: true,
        definition_new: false,
        approval_granted: false,
    };
    assert_eq!(
        evaluate(&call("t", &args), &p, &changed, 0).rule,
        "/tools/t/deny_if/0"
    );
    let args = json!({"x": 2});
    assert_eq!(
        evaluate(&call("t", &args), &p, &changed, 0).rule,
        labels::DEFINITION_CHANGED
    );
    let d = evaluate(&call("t", &args), &p, &Facts::default(), 0);
    assert_eq!(d.reservations.len(), 1);
}

#[test]
fn require_approval_carries_reservations_and_spec() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"refund_payment":{"action":"require_approval","approval":{"timeout":"10m","approvers":2},"limits":[{"counter":"refunds","window":"day","max":5}]}}}"#,
    );
    let d = judge(&p, "refund_payment", json!({}));
    assert_eq!(d.effect, Effect::RequireApproval);
    assert_eq!(d.rule, "/tools/refund_payment/action");
    assert_eq!(d.approval.as_ref().unwrap().timeout_secs, 600);
    assert_eq!(d.approval.as_ref().unwrap().approvers, 2);
    assert_eq!(d.reservations.len(), 1);
    let args = json!({});
    let granted = Facts {
        definition_changed: false,
        definition_new: false,
        approval_granted: true,
    };
    assert!(evaluate(&call("refund_payment", &args), &p, &granted, 0).is_allow());
}

#[test]
fn all_tools_limits_share_one_count_across_tools() {
    let p = load(
        r#"{"version":"1","default":"allow","all_tools":{"limits":[{"counter":"calls","window":"second","max":3}]},"tools":{"a":{"limits":[{"counter":"calls","window":"second","max":3}]}}}"#,
    );
    let counters = MemoryCounters::new();
    let args = json!({});
    let mut allowed = 0;
    for (i, tool) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        if attempt(&p, &counters, &call(tool, &args), 10 + i as u64).is_allow() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3);
    // A tool limit and an all_tools limit on the same counter count the call once.
    assert_eq!(judge(&p, "a", json!({})).reservations.len(), 1);
}

#[test]
fn increment_from_counts_by_amount() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"refund":{"limits":[{"counter":"refund_total","window":"day","max":1000,"increment_from":"args.amount"}]}}}"#,
    );
    let counters = MemoryCounters::new();
    let a600 = json!({"amount": 600});
    let a400 = json!({"amount": 400});
    let a1 = json!({"amount": 1});
    assert!(attempt(&p, &counters, &call("refund", &a600), 0).is_allow());
    assert!(attempt(&p, &counters, &call("refund", &a400), 1).is_allow());
    let d = attempt(&p, &counters, &call("refund", &a1), 2);
    assert_eq!(d.rule, "/tools/refund/limits/0");
    assert_eq!(d.retry_after_secs, Some(86_400));
    let d = judge(&p, "refund", json!({"amount": 1001}));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.detail.unwrap().contains("alone exceeds"));
    let d = judge(&p, "refund", json!({}));
    assert!(d.detail.unwrap().contains("is required by this limit"));
    let d = judge(&p, "refund", json!({"amount": -5}));
    assert_eq!(d.effect, Effect::Deny);
}

#[test]
fn window_edges_with_injected_clock() {
    // max 2 per 10 s: calls at t=0 and t=5 s fill it; at 9.999 s still full; at 10 s the first
    // call has left the window (half-open (t-10s, t]).
    let p = load(
        r#"{"version":"1","default":"allow","all_tools":{"limits":[{"counter":"c","window":10,"max":2}]}}"#,
    );
    let counters = MemoryCounters::new();
    let args = json!({});
    let c = call("t", &args);
    assert!(attempt(&p, &counters, &c, 0).is_allow());
    assert!(attempt(&p, &counters, &c, 5_000).is_allow());
    let d = attempt(&p, &counters, &c, 9_999);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.retry_after_secs, Some(1));
    assert!(attempt(&p, &counters, &c, 10_000).is_allow());
    assert!(!attempt(&p, &counters, &c, 14_999).is_allow());
    assert!(attempt(&p, &counters, &c, 15_000).is_allow());
}

#[test]
fn give_back_returns_the_count() {
    let p = load(EXAMPLE);
    let counters = MemoryCounters::new();
    let args = json!({});
    let c = call("create_agent_checkout_session", &args);
    let d = evaluate(&c, &p, &Facts::default(), 0);
    let mut tickets = vec![];
    for _ in 0..30 {
        tickets.push(counters.reserve(&d.reservations, 0).unwrap());
    }
    assert!(counters.reserve(&d.reservations, 0).is_err());
    counters.give_back(&tickets[3]).unwrap();
    assert!(counters.reserve(&d.reservations, 0).is_ok());
    assert!(counters.reserve(&d.reservations, 0).is_err());
}

#[test]
fn all_or_nothing_across_limits() {
    let p = load(
        r#"{"version":"1","default":"allow","tools":{"a":{"limits":[{"counter":"wide","window":"minute","max":10},{"counter":"narrow","window":"minute","max":1}]}}}"#,
    );
    let counters = MemoryCounters::new();
    let args = json!({});
    let c = call("a", &args);
    assert!(attempt(&p, &counters, &c, 0).is_allow());
    for t in 1..5 {
        assert!(!attempt(&p, &counters, &c, t).is_allow());
    }
    // The refused calls took nothing from `wide`.
    let d = evaluate(&c, &p, &Facts::default(), 0);
    let wide = &d.reservations[0].key;
    assert_eq!(counters.current(wide, 60, 10), 1);
}

#[test]
fn exact_under_concurrency() {
    let p = Arc::new(load(
        r#"{"version":"1","default":"allow","all_tools":{"limits":[{"counter":"c","window":"hour","max":1000,"scope":"global"}]}}"#,
    ));
    let counters = Arc::new(MemoryCounters::new());
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (p, counters, admitted) = (p.clone(), counters.clone(), admitted.clone());
            std::thread::spawn(move || {
                let args = json!({});
                let grant = format!("g{t}");
                let c = Call {
                    tool: "t",
                    args: &args,
                    grant: &grant,
                    identity: "i",
                    session: "",
                    server: "s",
                };
                for i in 0..500u64 {
                    let d = evaluate(&c, &p, &Facts::default(), 0);
                    if let Ok(ticket) = counters.reserve(&d.reservations, i) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        // Every 50th call "fails upstream" and gives its count back.
                        if i % 50 == 0 {
                            counters.give_back(&ticket).unwrap();
                            admitted.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 1000);
}

#[test]
fn inline_tests_run() {
    let p = load(
        r#"{"version":"1","default":"deny","hide":["delete_account"],"tools":{"list":{},"pay":{"limits":[{"counter":"p","window":"minute","max":2}]},"drop":{"action":"deny"}},
      "tests":[{"tool":"drop","expect":"deny","rule":"/tools/drop/action"},
               {"tool":"list","expect":"allow"},
               {"tool":"delete_account","expect":"hidden"},
               {"tool":"pay","calls":3,"expect":"deny","rule":"/tools/pay/limits/0"},
               {"tool":"pay","calls":2,"expect":"allow"},
               {"tool":"list","expect":"deny"}]}"#,
    );
    let out = run_tests(&p);
    let passed: Vec<bool> = out.iter().map(|o| o.passed).collect();
    assert_eq!(passed, vec![true, true, true, true, true, false]);
    assert!(out[5]
        .failure
        .as_deref()
        .unwrap()
        .contains("expected deny, got allow"));
}

#[test]
fn simulate_shows_where_a_limit_bites() {
    let p = load(EXAMPLE);
    let args = json!({});
    let ds = simulate(
        &p,
        &call("create_agent_checkout_session", &args),
        &Facts::default(),
        32,
        0,
    );
    let first_denied = ds.iter().position(|d| !d.is_allow());
    assert_eq!(first_denied, Some(30));
}

/// Finding 5: numbers were compared as `f64`, so `in [1234567890123456789]` admitted
/// `1234567890123456800` (another account) and `100.00000000000001` passed `lte 100`.
#[test]
fn numbers_are_compared_exactly() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{
            "pay":{"require":[{"path":"args.account","op":"in","value":[1234567890123456789]}]},
            "cap":{"require":[{"path":"args.amount","op":"lte","value":100}]},
            "big":{"deny_if":[{"path":"args.amount","op":"gt","value":100}]},
            "huge":{"require":[{"path":"args.id","op":"eq","value":12345678901234567890123}]}}}"#,
    );
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
    let effect = |tool: &str, args: &str| judge(&p, tool, parse(args)).effect;

    assert_eq!(
        effect("pay", r#"{"account": 1234567890123456789}"#),
        Effect::Allow
    );
    assert_eq!(
        effect("pay", r#"{"account": 1234567890123456800}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("pay", r#"{"account": 1234567890123456700}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("pay", r#"{"account": 1234567890123456789.5}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("pay", r#"{"account": 1.234567890123456789e18}"#),
        Effect::Allow
    );

    assert_eq!(effect("cap", r#"{"amount": 100}"#), Effect::Allow);
    assert_eq!(effect("cap", r#"{"amount": 1e2}"#), Effect::Allow);
    assert_eq!(effect("cap", r#"{"amount": 100.000}"#), Effect::Allow);
    assert_eq!(
        effect("cap", r#"{"amount": 100.00000000000001}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("cap", r#"{"amount": 100.0000000000000000000001}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("cap", r#"{"amount": 18446744073709551617}"#),
        Effect::Deny
    );
    assert_eq!(effect("cap", r#"{"amount": 1e400}"#), Effect::Deny);
    assert_eq!(effect("cap", r#"{"amount": -1e400}"#), Effect::Allow);

    assert_eq!(effect("big", r#"{"amount": 100}"#), Effect::Allow);
    assert_eq!(
        effect("big", r#"{"amount": 100.00000000000001}"#),
        Effect::Deny
    );
    // An exponent too large to read exactly is never judged by a guess.
    assert_eq!(
        effect("big", r#"{"amount": 1e-9999999999999999999}"#),
        Effect::Deny
    );
    assert_eq!(
        effect("cap", r#"{"amount": 1e-9999999999999999999}"#),
        Effect::Deny
    );

    assert_eq!(
        effect("huge", r#"{"id": 12345678901234567890123}"#),
        Effect::Allow
    );
    assert_eq!(
        effect("huge", r#"{"id": 12345678901234567890124}"#),
        Effect::Deny
    );
}

#[test]
fn increment_from_counts_fractions_up_exactly() {
    let p = load(
        r#"{"version":"1","default":"deny","tools":{"pay":{"limits":[
            {"counter":"spend","window":"day","max":1000,"increment_from":"args.amount"}]}}}"#,
    );
    let args: Value = serde_json::from_str(r#"{"amount": 100.00000000000001}"#).unwrap();
    let d = judge(&p, "pay", args);
    assert_eq!(d.reservations[0].amount, 101);
    let args: Value = serde_json::from_str(r#"{"amount": 1e3}"#).unwrap();
    assert_eq!(judge(&p, "pay", args).reservations[0].amount, 1000);
    let args: Value = serde_json::from_str(r#"{"amount": 1000.0000000000001}"#).unwrap();
    assert_eq!(judge(&p, "pay", args).effect, Effect::Deny);
}
