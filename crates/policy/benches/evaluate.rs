//! Criterion bench of `evaluate` over policies of 10, 100 and 1000 tools, each with
//! predicates and a limit.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use toolgate_policy::{evaluate, load_value, Call, Facts, Policy};

fn policy(n: usize) -> Policy {
    let mut tools = serde_json::Map::new();
    for i in 0..n {
        tools.insert(
            format!("tool_{i}"),
            json!({
                "require": [{"path": "args.currency", "op": "in", "value": ["usd", "eur"]}],
                "deny_if": [
                    {"path": "args.amount", "op": "gt", "value": 10000},
                    {"path": "args.note", "op": "regex", "value": "(?i)ignore previous"}
                ],
                "limits": [{"counter": format!("tool_{i}_rate"), "window": "minute", "max": 30, "scope": "grant"}]
            }),
        );
    }
    let doc = json!({"version": "1", "default": "deny", "hide": ["secret_tool"],
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 600}]},
        "tools": tools});
    load_value(&doc).unwrap().policy
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluate");
    let args = json!({"currency": "usd", "amount": 2500, "note": "monthly cleaning"});
    for n in [10usize, 100, 1000] {
        let p = policy(n);
        let tool = format!("tool_{}", n / 2);
        g.bench_with_input(BenchmarkId::new("allowed_call", n), &n, |b, _| {
            let call = Call {
                tool: &tool,
                args: &args,
                grant: "g-123",
                identity: "alice",
                session: "s-1",
                server: "demo",
            };
            b.iter(|| evaluate(black_box(&call), black_box(&p), &Facts::default(), 1_000));
        });
        g.bench_with_input(BenchmarkId::new("default_deny", n), &n, |b, _| {
            let call = Call {
                tool: "not_listed",
                args: &args,
                grant: "g-123",
                identity: "alice",
                session: "s-1",
                server: "demo",
            };
            b.iter(|| evaluate(black_box(&call), black_box(&p), &Facts::default(), 1_000));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
