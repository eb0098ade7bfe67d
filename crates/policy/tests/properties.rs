//! Property tests: deny beats allow, evaluation is deterministic, a limit never admits
//! more than `max` in any window.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use serde_json::json;
use toolgate_policy::{evaluate, load_value, Call, Counters, Effect, Facts, MemoryCounters};

fn args_strategy() -> impl Strategy<Value = serde_json::Value> {
    (
        0i64..20_000,
        prop_oneof![Just("usd"), Just("eur"), Just("gbp")],
        any::<bool>(),
    )
        .prop_map(|(amount, cur, flag)| json!({"amount": amount, "currency": cur, "flag": flag}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adding a deny rule (deny_if, action deny, hide) never turns a denial into an allow,
    /// and whatever the arguments, a matching deny rule wins.
    #[test]
    fn deny_beats_allow(args in args_strategy(), threshold in 0i64..20_000, default_allow in any::<bool>()) {
        let default = if default_allow { "allow" } else { "deny" };
        let base = json!({"version":"1","default":default,"tools":{"t":{"require":[{"path":"args.currency","op":"in","value":["usd","eur"]}]}}});
        let stricter = json!({"version":"1","default":default,"tools":{"t":{
            "require":[{"path":"args.currency","op":"in","value":["usd","eur"]}],
            "deny_if":[{"path":"args.amount","op":"gt","value":threshold}]}}});
        let base = load_value(&base).unwrap().policy;
        let stricter = load_value(&stricter).unwrap().policy;
        let c = Call { tool: "t", args: &args, grant: "g", identity: "i", session: "s", server: "v" };
        let a = evaluate(&c, &base, &Facts::default(), 0);
        let b = evaluate(&c, &stricter, &Facts::default(), 0);
        if !a.is_allow() { prop_assert!(!b.is_allow()); }
        if args["amount"].as_i64().unwrap() > threshold { prop_assert_eq!(b.effect, Effect::Deny); }
        // Hiding or denying the tool always denies.
        let mut hidden = stricter.clone();
        hidden.hide.push(toolgate_policy::model::HideEntry::Exact("t".into()));
        prop_assert!(!evaluate(&c, &hidden, &Facts::default(), 0).is_allow());
        let changed = Facts { definition_changed: true, approval_granted: true, definition_new: false };
        prop_assert!(!evaluate(&c, &stricter, &changed, 0).is_allow());
    }

    /// The same inputs give the same decision.
    #[test]
    fn deterministic(args in args_strategy(), now in any::<u64>()) {
        let doc = json!({"version":"1","default":"deny","tools":{"t":{
            "deny_if":[{"path":"args.amount","op":"gte","value":5000}],
            "limits":[{"counter":"c","window":"minute","max":3,"increment_from":"args.amount"}]}}});
        let p = load_value(&doc).unwrap().policy;
        let c = Call { tool: "t", args: &args, grant: "g", identity: "i", session: "s", server: "v" };
        prop_assert_eq!(evaluate(&c, &p, &Facts::default(), now), evaluate(&c, &p, &Facts::default(), now));
    }

    /// Whatever the arrival times and amounts, no span of `window` holds more than `max`.
    #[test]
    fn never_more_than_max_per_window(
        gaps in proptest::collection::vec(0u64..4_000, 1..200),
        amounts in proptest::collection::vec(1u64..4, 200),
        max in 1u64..12,
        window in 1u64..10,
    ) {
        let doc = json!({"version":"1","default":"allow","all_tools":{"limits":[{"counter":"c","window":window,"max":max,"increment_from":"args.n"}]}});
        let p = load_value(&doc).unwrap().policy;
        let counters = MemoryCounters::new();
        let mut now = 0u64;
        let mut admitted: Vec<(u64, u64)> = vec![];
        for (gap, amount) in gaps.iter().zip(amounts.iter()) {
            now += gap;
            let args = json!({"n": amount});
            let c = Call { tool: "t", args: &args, grant: "g", identity: "i", session: "s", server: "v" };
            let d = evaluate(&c, &p, &Facts::default(), now);
            if d.effect == Effect::Deny { continue; }
            if counters.reserve(&d.reservations, now).is_ok() { admitted.push((now, *amount)); }
        }
        let w = window * 1000;
        for &(t, _) in &admitted {
            // Every span (t - w, t] ending at an admission.
            let sum: u64 = admitted.iter().filter(|(s, _)| *s + w > t && *s <= t).map(|(_, a)| a).sum();
            prop_assert!(sum <= max, "span ending at {} holds {} > {}", t, sum, max);
        }
    }

    /// Numbers are compared by exact value: a large integer is in a list only when it is
    /// one of the listed integers, and `lte`/`gt` agree with integer order at any size.
    #[test]
    fn big_integers_compare_exactly(a in any::<u128>(), b in any::<u128>()) {
        let doc = format!(r#"{{"version":"1","default":"deny","tools":{{
            "in":{{"require":[{{"path":"args.n","op":"in","value":[{a}]}}]}},
            "lte":{{"require":[{{"path":"args.n","op":"lte","value":{a}}}]}},
            "gt":{{"deny_if":[{{"path":"args.n","op":"gt","value":{a}}}]}}}}}}"#);
        let p = toolgate_policy::load_str(&doc).unwrap().policy;
        let args: serde_json::Value = serde_json::from_str(&format!(r#"{{"n": {b}}}"#)).unwrap();
        let judge = |tool: &str| {
            let c = Call { tool, args: &args, grant: "g", identity: "i", session: "s", server: "v" };
            evaluate(&c, &p, &Facts::default(), 0).is_allow()
        };
        prop_assert_eq!(judge("in"), a == b);
        prop_assert_eq!(judge("lte"), b <= a);
        prop_assert_eq!(judge("gt"), b <= a);
    }
}
