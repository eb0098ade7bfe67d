//! Runs a policy's inline `tests` against fresh in-memory counters.

use crate::counters::{CounterError, Counters, MemoryCounters};
use crate::eval::{evaluate, Call, Decision, Effect, Facts};
use crate::model::{Expect, Policy, PolicyTest};

/// The outcome of one inline test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The test's JSON Pointer (`/tests/0`).
    pub pointer: String,
    /// The tool it called.
    pub tool: String,
    /// Whether the decision matched the expectation.
    pub passed: bool,
    /// What the test expected.
    pub expected: Expect,
    /// The decision of the last call.
    pub decision: Decision,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// What a decision counts as for a test's `expect`.
pub fn observed(d: &Decision) -> Expect {
    match d.effect {
        Effect::Allow => Expect::Allow,
        Effect::RequireApproval => Expect::RequireApproval,
        Effect::Deny if d.hidden => Expect::Hidden,
        Effect::Deny => Expect::Deny,
    }
}

/// Simulates `calls` calls in a row (1 ms apart from `start_ms`), making reservations as
/// the gateway would; returns every decision.
pub fn simulate(
    policy: &Policy,
    call: &Call<'_>,
    facts: &Facts,
    calls: u32,
    start_ms: u64,
) -> Vec<Decision> {
    let counters = MemoryCounters::new();
    (0..calls)
        .map(|i| {
            let now = start_ms + u64::from(i);
            let d = evaluate(call, policy, facts, now);
            if d.effect == Effect::Deny || d.reservations.is_empty() {
                return d;
            }
            match counters.reserve(&d.reservations, now) {
                Ok(_) => d,
                Err(CounterError::Exceeded(e)) => d.limited(e.index, e.retry_after_secs()),
                Err(CounterError::Unavailable(m)) => Decision::denied("(store unavailable)", &m),
            }
        })
        .collect()
}

fn run_one(policy: &Policy, t: &PolicyTest) -> TestOutcome {
    let call = Call {
        tool: &t.tool,
        args: &t.args,
        grant: &t.grant,
        identity: &t.grant,
        session: "test-session",
        server: "test",
    };
    let facts = Facts {
        definition_changed: t.definition_changed,
        approval_granted: false,
    };
    let decisions = simulate(policy, &call, &facts, t.calls, 0);
    let decision = decisions
        .last()
        .cloned()
        .unwrap_or_else(|| Decision::denied("(no call)", "no call made"));
    let got = observed(&decision);
    let mut failure = None;
    if got != t.expect {
        failure = Some(format!(
            "expected {}, got {} by {}",
            t.expect.as_str(),
            got.as_str(),
            decision.rule
        ));
    } else if let Some(rule) = &t.rule {
        if rule != &decision.rule {
            failure = Some(format!("expected rule {rule}, got {}", decision.rule));
        }
    }
    TestOutcome {
        pointer: t.pointer.clone(),
        tool: t.tool.clone(),
        passed: failure.is_none(),
        expected: t.expect,
        decision,
        failure,
    }
}

/// Runs every inline test of the policy.
pub fn run_tests(policy: &Policy) -> Vec<TestOutcome> {
    policy.tests.iter().map(|t| run_one(policy, t)).collect()
}
