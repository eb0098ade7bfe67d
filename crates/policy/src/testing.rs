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

/// How much work running a document's inline tests may do, in evaluation steps: each
/// simulated call costs one step plus one per counter reservation it makes (a call to a
/// tool with 20 limits costs 21). The default, [`DEFAULT_STEP_BUDGET`], is far above what
/// a real document needs and keeps a validation to about a second of CPU. The engine
/// has no clock, so this count is its deadline.
pub const DEFAULT_STEP_BUDGET: u64 = 2_000_000;

/// Simulates `calls` calls in a row (1 ms apart from `start_ms`), making reservations as
/// the gateway would; returns every decision.
pub fn simulate(
    policy: &Policy,
    call: &Call<'_>,
    facts: &Facts,
    calls: u32,
    start_ms: u64,
) -> Vec<Decision> {
    let mut out = Vec::with_capacity(calls.min(10_000) as usize);
    let mut steps = u64::MAX;
    simulate_each(policy, call, facts, calls, start_ms, &mut steps, |d| {
        out.push(d)
    });
    out
}

/// [`simulate`] without keeping the decisions: each is handed to `each`. Every call
/// costs 1 + its reservations from `steps`; stops early (returning `false`) when they
/// are used up.
fn simulate_each(
    policy: &Policy,
    call: &Call<'_>,
    facts: &Facts,
    calls: u32,
    start_ms: u64,
    steps: &mut u64,
    mut each: impl FnMut(Decision),
) -> bool {
    let counters = MemoryCounters::new();
    for i in 0..calls {
        let now = start_ms + u64::from(i);
        let d = evaluate(call, policy, facts, now);
        let cost = 1 + d.reservations.len() as u64;
        if *steps < cost {
            *steps = 0;
            return false;
        }
        *steps -= cost;
        if d.effect == Effect::Deny || d.reservations.is_empty() {
            each(d);
            continue;
        }
        each(match counters.reserve(&d.reservations, now) {
            Ok(_) => d,
            Err(CounterError::Exceeded(e)) => d.limited(e.index, e.retry_after_secs()),
            Err(CounterError::Unavailable(m)) => Decision::denied("(store unavailable)", &m),
        });
    }
    true
}

/// The rule a test that was stopped by the step budget reports.
pub const OVER_BUDGET_RULE: &str = "(test budget used up)";

fn over_budget(t: &PolicyTest, budget: u64, started: bool) -> TestOutcome {
    let why = if started {
        format!("stopped: the inline tests used up their budget of {budget} evaluation steps (one per call plus one per limit it counts against); make fewer `calls` or test fewer limits at once")
    } else {
        format!("not run: the earlier inline tests used up the budget of {budget} evaluation steps")
    };
    TestOutcome {
        pointer: t.pointer.clone(),
        tool: t.tool.clone(),
        passed: false,
        expected: t.expect,
        decision: Decision::denied(OVER_BUDGET_RULE, &why),
        failure: Some(why),
    }
}

fn run_one(policy: &Policy, t: &PolicyTest, steps: &mut u64, budget: u64) -> TestOutcome {
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
        definition_new: false,
        approval_granted: false,
    };
    if *steps == 0 {
        return over_budget(t, budget, false);
    }
    let mut last = None;
    if !simulate_each(policy, &call, &facts, t.calls, 0, steps, |d| last = Some(d)) {
        return over_budget(t, budget, true);
    }
    let decision = last.unwrap_or_else(|| Decision::denied("(no call)", "no call made"));
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

/// Runs every inline test of the policy within [`DEFAULT_STEP_BUDGET`].
pub fn run_tests(policy: &Policy) -> Vec<TestOutcome> {
    run_tests_within(policy, DEFAULT_STEP_BUDGET)
}

/// Runs every inline test of the policy, in order, within `budget` evaluation steps (see
/// [`DEFAULT_STEP_BUDGET`]). A test the budget runs out in fails as "stopped", and the
/// tests after it fail as "not run", each by [`OVER_BUDGET_RULE`].
pub fn run_tests_within(policy: &Policy, budget: u64) -> Vec<TestOutcome> {
    let mut steps = budget;
    policy
        .tests
        .iter()
        .map(|t| run_one(policy, t, &mut steps, budget))
        .collect()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn policy(limits: usize, calls: u32, tests: usize) -> Policy {
        let limits: Vec<String> = (0..limits)
            .map(|i| format!(r#"{{"counter":"c{i}","window":"day","max":1000000}}"#))
            .collect();
        let tests: Vec<String> = (0..tests)
            .map(|_| format!(r#"{{"tool":"t","expect":"allow","calls":{calls}}}"#))
            .collect();
        let doc = format!(
            r#"{{"version":"1","default":"deny","tools":{{"t":{{"limits":[{}]}}}},"tests":[{}]}}"#,
            limits.join(","),
            tests.join(",")
        );
        match load_str(&doc) {
            Ok(l) => l.policy,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tests_within_the_budget_pass() {
        let out = run_tests_within(&policy(2, 10, 2), 60);
        assert!(out.iter().all(|o| o.passed), "{out:?}");
    }

    #[test]
    fn the_budget_stops_a_test_and_skips_the_rest() {
        // Each call costs 1 + 2 steps: the first test needs 30, the second runs out.
        let out = run_tests_within(&policy(2, 10, 3), 45);
        assert!(out[0].passed);
        assert!(
            !out[1].passed
                && out[1]
                    .failure
                    .as_deref()
                    .is_some_and(|f| f.starts_with("stopped"))
        );
        assert!(
            !out[2].passed
                && out[2]
                    .failure
                    .as_deref()
                    .is_some_and(|f| f.starts_with("not run"))
        );
        assert_eq!(out[2].decision.rule, OVER_BUDGET_RULE);
    }

    #[test]
    fn the_default_budget_bounds_many_limits_times_many_calls() {
        // 100,000 calls x 21 steps is over the default budget: stopped, not run to the end.
        let out = run_tests(&policy(20, 100_000, 1));
        assert!(!out[0].passed, "{out:?}");
        assert_eq!(out[0].decision.rule, OVER_BUDGET_RULE);
    }
}
