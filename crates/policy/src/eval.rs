//! `evaluate(call, policy, facts, now) -> Decision`: pure, synchronous, deterministic.
//!
//! Order, first deny wins: hidden → not listed under `default: deny` → `action: deny` →
//! `require` → `deny_if` → pinned definition changed → limits → approval → forward.
//! The engine decides which counters a call takes from ([`Reservation`]s); the caller
//! makes them atomically with a [`crate::Counters`] and, when one is full, turns the
//! decision into a denial with [`Decision::limited`].

use std::cmp::Ordering;

use serde_json::Value;
use toolgate_detect::{Class, Kind, KindSet};
use toolgate_protocol::Decimal;

use crate::counters::CounterKey;
use crate::model::{Action, ApprovalSpec, DefaultAction, Limit, Op, Policy, Predicate, Scope};

/// Labels for decisions that no single place in the document made.
pub mod labels {
    /// An unlisted tool under `default: deny`.
    pub const DEFAULT_DENY: &str = "(default deny)";
    /// An unlisted tool under `default: allow`.
    pub const DEFAULT_ALLOW: &str = "(default allow)";
    /// A tool in `hide`.
    pub const HIDDEN: &str = "(hidden)";
    /// A grant with no policy attached.
    pub const NO_POLICY: &str = "(no policy)";
    /// The tool's pinned definition changed and was not re-approved.
    pub const DEFINITION_CHANGED: &str = "(definition changed)";
    /// Nobody approved a held call in time.
    pub const APPROVAL_TIMED_OUT: &str = "(approval timed out)";
}

/// One tool call to judge.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The tool name (`params.name`).
    pub tool: &'a str,
    /// The arguments object (`params.arguments`, `{}` when absent).
    pub args: &'a Value,
    /// The grant's id (scope `grant`).
    pub grant: &'a str,
    /// Who holds the grant (scope `identity`).
    pub identity: &'a str,
    /// The MCP session (scope `session`); empty when there is none.
    pub session: &'a str,
    /// The upstream server's name (scope `server`).
    pub server: &'a str,
}

/// What the caller knows that the policy does not: gathered from the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The tool's pinned definition changed and was not re-approved.
    pub definition_changed: bool,
    /// With `definition_changed`: the tool was never pinned (it is new since pinning).
    pub definition_new: bool,
    /// A person already approved this exact call.
    pub approval_granted: bool,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Forward the call, after making the reservations.
    Allow,
    /// Refuse it.
    Deny,
    /// Make the reservations, then hold the call until a person decides.
    RequireApproval,
}

/// One count to take from a counter: made all-or-nothing with the call's others.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// Which count.
    pub key: CounterKey,
    /// The window in seconds.
    pub window_secs: u64,
    /// The most the window may hold.
    pub max: u64,
    /// How much this call takes (1, or the `increment_from` amount).
    pub amount: u64,
    /// The limit's JSON Pointer: the rule if this reservation is refused.
    pub pointer: String,
}

/// A decision: the effect, the rule that made it, and what the agent is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allow, deny or hold.
    pub effect: Effect,
    /// The JSON Pointer into the document, or a label such as `(default deny)`.
    pub rule: String,
    /// The message the agent sees (empty for allow).
    pub message: String,
    /// What exactly failed, for denials by predicates and limits.
    pub detail: Option<String>,
    /// Counts to take before forwarding (allow and approval).
    pub reservations: Vec<Reservation>,
    /// Seconds until a limit-denied call could succeed.
    pub retry_after_secs: Option<u64>,
    /// The tool is hidden: answer as if it did not exist.
    pub hidden: bool,
    /// Approval settings when the effect is [`Effect::RequireApproval`].
    pub approval: Option<ApprovalSpec>,
    /// The tool's own denial message, used if a limit later refuses.
    pub tool_message: Option<String>,
}

impl Decision {
    fn deny(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Decision {
            effect: Effect::Deny,
            rule: rule.into(),
            message: message.into(),
            detail: None,
            reservations: vec![],
            retry_after_secs: None,
            hidden: false,
            approval: None,
            tool_message: None,
        }
    }

    /// A denial with a label rule, for the caller's own reasons (`(no policy)`,
    /// `(approval timed out)`, a store that is down).
    pub fn denied(rule: &str, message: &str) -> Self {
        Self::deny(rule, message)
    }

    /// Turns this decision into the denial of a limit that refused reservation `index`.
    pub fn limited(self, index: usize, retry_after_secs: u64) -> Self {
        let res = self.reservations.get(index);
        let (pointer, detail) = match res {
            Some(r) => (
                r.pointer.clone(),
                format!(
                    "counter `{}` allows {} per {} s ({} scope)",
                    r.key.counter,
                    r.max,
                    r.window_secs,
                    r.key.scope.as_str()
                ),
            ),
            None => (
                "(limit)".to_string(),
                format!("rate limit reached; retry in {retry_after_secs} s"),
            ),
        };
        let message = format!("rate limit reached; retry in {retry_after_secs} s");
        Decision {
            effect: Effect::Deny,
            rule: pointer,
            message,
            detail: Some(detail),
            reservations: vec![],
            retry_after_secs: Some(retry_after_secs),
            hidden: false,
            approval: None,
            tool_message: self.tool_message,
        }
    }

    /// True for [`Effect::Allow`].
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The text an agent reads for a denial: the message, then the rule and why.
    ///
    /// ```text
    /// [toolgate] denied: Checkout sessions over 100.00 need a person.
    /// rule: /tools/create_agent_checkout_session/deny_if/0
    /// why: `args.amount` is 25000, greater than 10000
    /// ```
    pub fn denial_text(&self) -> String {
        let mut s = format!("[toolgate] denied: {}\nrule: {}", self.message, self.rule);
        if let Some(d) = &self.detail {
            s.push_str("\nwhy: ");
            s.push_str(d);
        }
        if let Some(r) = self.retry_after_secs {
            s.push_str(&format!("\nretry after: {r} s"));
        }
        s
    }
}

/// Judges one call. Pure: the same inputs give the same decision.
///
/// `_now_ms` is accepted so that time-dependent rules stay pure; counting happens in
/// [`crate::Counters::reserve`], which takes the same `now`.
pub fn evaluate(call: &Call<'_>, policy: &Policy, facts: &Facts, _now_ms: u64) -> Decision {
    if policy.is_hidden(call.tool) {
        let mut d = Decision::deny(labels::HIDDEN, format!("unknown tool: {}", call.tool));
        d.hidden = true;
        return d;
    }
    let rule = policy.tools.get(call.tool);
    let rule = match (rule, policy.default) {
        (None, DefaultAction::Deny) => {
            return Decision::deny(
                labels::DEFAULT_DENY,
                format!("`{}` is not allowed by this policy", call.tool),
            )
        }
        (rule, _) => rule,
    };
    let tool_message = rule.and_then(|r| r.message.clone());
    if let Some(rule) = rule {
        if rule.action == Action::Deny {
            let msg = tool_message
                .clone()
                .unwrap_or_else(|| format!("`{}` is denied by policy", call.tool));
            return Decision::deny(format!("{}/action", rule.pointer), msg);
        }
        for p in &rule.require {
            let out = check(p, call.args);
            if out != Outcome::True {
                let mut d = Decision::deny(
                    p.pointer.clone(),
                    tool_message
                        .clone()
                        .unwrap_or_else(|| "a required condition does not hold".into()),
                );
                d.detail = Some(describe(p, call.args, out, true));
                return d;
            }
        }
        for p in &rule.deny_if {
            let out = check(p, call.args);
            if matches!(out, Outcome::True | Outcome::WrongType) {
                let mut d = Decision::deny(
                    p.pointer.clone(),
                    tool_message
                        .clone()
                        .unwrap_or_else(|| "the arguments match a deny rule".into()),
                );
                d.detail = Some(describe(p, call.args, out, false));
                return d;
            }
        }
    }
    if facts.definition_changed && facts.definition_new {
        return Decision::deny(
            labels::DEFINITION_CHANGED,
            format!("`{}` is new since pinning (the server did not list it when it was reviewed); an operator must approve it first: toolgate tools approve {} {}", call.tool, call.server, call.tool),
        );
    }
    if facts.definition_changed {
        return Decision::deny(
            labels::DEFINITION_CHANGED,
            format!("the definition of `{}` changed since it was reviewed; an operator must approve it again: toolgate tools approve {} {}", call.tool, call.server, call.tool),
        );
    }
    let own: &[Limit] = rule.map_or(&[], |r| &r.limits);
    let mut reservations = Vec::with_capacity(own.len() + policy.all_limits.len());
    for limit in own.iter().chain(policy.all_limits.iter()) {
        let amount = match &limit.increment_from {
            None => 1,
            Some(path) => match path.lookup(call.args).map(amount_of) {
                Some(Some(a)) => a,
                Some(None) => {
                    let mut d = Decision::deny(
                        limit.pointer.clone(),
                        tool_message
                            .clone()
                            .unwrap_or_else(|| "the amount to count is not a number".into()),
                    );
                    d.detail = Some(format!("`{}` must be a non-negative number", path.text));
                    return d;
                }
                None => {
                    let mut d = Decision::deny(
                        limit.pointer.clone(),
                        tool_message
                            .clone()
                            .unwrap_or_else(|| "the amount to count is missing".into()),
                    );
                    d.detail = Some(format!("`{}` is required by this limit", path.text));
                    return d;
                }
            },
        };
        if amount > limit.max {
            let mut d = Decision::deny(
                limit.pointer.clone(),
                tool_message
                    .clone()
                    .unwrap_or_else(|| "the amount exceeds the limit".into()),
            );
            d.detail = Some(format!(
                "{} = {amount} alone exceeds the max of {} per {} s",
                limit
                    .increment_from
                    .as_ref()
                    .map_or("amount", |p| p.text.as_str()),
                limit.max,
                limit.window_secs
            ));
            return d;
        }
        let key = CounterKey::new(&limit.counter, limit.scope, scope_value(call, limit.scope));
        if reservations.iter().any(|r: &Reservation| r.key == key) {
            continue;
        }
        reservations.push(Reservation {
            key,
            window_secs: limit.window_secs,
            max: limit.max,
            amount,
            pointer: limit.pointer.clone(),
        });
    }
    let (effect, rule_ptr, approval) = match rule {
        Some(r) if r.action == Action::RequireApproval && !facts.approval_granted => (
            Effect::RequireApproval,
            format!("{}/action", r.pointer),
            Some(r.approval.clone()),
        ),
        Some(r) => (Effect::Allow, r.pointer.clone(), None),
        None => (Effect::Allow, labels::DEFAULT_ALLOW.to_string(), None),
    };
    let message = if effect == Effect::RequireApproval {
        tool_message
            .clone()
            .unwrap_or_else(|| format!("`{}` needs a person's approval", call.tool))
    } else {
        String::new()
    };
    Decision {
        effect,
        rule: rule_ptr,
        message,
        detail: None,
        reservations,
        retry_after_secs: None,
        hidden: false,
        approval,
        tool_message,
    }
}

fn scope_value<'a>(call: &Call<'a>, scope: Scope) -> &'a str {
    match scope {
        Scope::Grant => call.grant,
        Scope::Identity => call.identity,
        Scope::Session => call.session,
        Scope::Server => call.server,
        Scope::Global => "",
    }
}

/// The largest amount a limit counts by (as before exact numbers: 9e15).
const MAX_AMOUNT: u64 = 9_000_000_000_000_000;

/// A whole, non-negative amount; fractions round up so that counting never under-counts
/// (`100.00000000000001` counts 101). Read exactly, never through `f64`.
fn amount_of(v: &Value) -> Option<u64> {
    let d = Decimal::from_number(v.as_number()?)?;
    if d.is_negative() {
        return None;
    }
    d.ceil_u64(MAX_AMOUNT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    True,
    False,
    Missing,
    WrongType,
}

/// Equality with numbers compared by exact value at every depth (`1e3` equals `1000`;
/// `1234567890123456789` does not equal `1234567890123456800`). Two numbers that cannot be
/// read exactly (an exponent beyond 10^18) are equal only when written the same.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match toolgate_protocol::number::compare(x, y) {
            Some(o) => o == Ordering::Equal,
            None => x.to_string() == y.to_string(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn check(p: &Predicate, args: &Value) -> Outcome {
    let found = p.path.lookup(args);
    if let Op::Exists(want) = p.op {
        return if found.is_some() == want {
            Outcome::True
        } else {
            Outcome::False
        };
    }
    let Some(v) = found else {
        return Outcome::Missing;
    };
    let b = |x: bool| if x { Outcome::True } else { Outcome::False };
    match &p.op {
        Op::Secret => {
            return b(detect_under(v, KindSet::of(&[Class::Secrets]), &p.path.text).is_some())
        }
        Op::Pii(kinds) => return b(detect_under(v, *kinds, &p.path.text).is_some()),
        _ => {}
    }
    // A number whose value cannot be read exactly is never judged by a guess.
    let exact = v.as_number().map(Decimal::from_number);
    if matches!(exact, Some(None)) {
        return Outcome::WrongType;
    }
    let num = |bound: &serde_json::Number, f: &dyn Fn(Ordering) -> bool| match (
        exact.clone().flatten(),
        Decimal::from_number(bound),
    ) {
        (Some(x), Some(n)) => b(f(x.cmp(&n))),
        _ => Outcome::WrongType,
    };
    match &p.op {
        Op::Eq(want) => b(json_eq(v, want)),
        Op::Neq(want) => b(!json_eq(v, want)),
        Op::Lt(n) => num(n, &|o| o == Ordering::Less),
        Op::Lte(n) => num(n, &|o| o != Ordering::Greater),
        Op::Gt(n) => num(n, &|o| o == Ordering::Greater),
        Op::Gte(n) => num(n, &|o| o != Ordering::Less),
        Op::In(list) => b(list.iter().any(|w| json_eq(v, w))),
        Op::NotIn(list) => b(!list.iter().any(|w| json_eq(v, w))),
        Op::Regex(re) => match v.as_str() {
            Some(s) => b(re.is_match(s)),
            None => Outcome::WrongType,
        },
        Op::Contains(want) => match (v, want) {
            (Value::String(s), Value::String(w)) => b(s.contains(w.as_str())),
            (Value::Array(items), w) => b(items.iter().any(|i| json_eq(i, w))),
            _ => Outcome::WrongType,
        },
        Op::Exists(_) | Op::Secret | Op::Pii(_) => Outcome::False,
    }
}

/// The first finding of `kinds` in any string under `v` (and, for cards, any number):
/// the path of the value (`args.items.0.note`) and what it holds. Never the value.
pub fn detect_under(v: &Value, kinds: KindSet, at: &str) -> Option<(String, Kind)> {
    match v {
        Value::String(s) => toolgate_detect::first(s, kinds).map(|k| (at.to_string(), k)),
        Value::Number(n) => (kinds.contains(Class::Card)
            && toolgate_detect::pii::is_card_number(&n.to_string()))
        .then(|| (at.to_string(), Kind::Card)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| detect_under(item, kinds, &format!("{at}.{i}"))),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, item)| detect_under(item, kinds, &format!("{at}.{k}"))),
        _ => None,
    }
}

/// The detail of a `secret` or `pii` predicate: where and what kind, never the value.
fn describe_detected(p: &Predicate, args: &Value, out: Outcome, required: bool) -> String {
    let path = &p.path.text;
    let (kinds, what) = match &p.op {
        Op::Pii(k) => (*k, "personal data"),
        _ => (KindSet::of(&[Class::Secrets]), "a credential"),
    };
    let names = kinds.iter().map(Class::name).collect::<Vec<_>>().join(", ");
    let wanted = match &p.op {
        Op::Pii(_) => format!("personal data ({names})"),
        _ => "a credential".to_string(),
    };
    match (out, required) {
        (Outcome::Missing, _) => format!("`{path}` is required to hold {wanted}, but it is absent"),
        (_, true) => format!("`{path}` must hold {wanted}, and holds none"),
        (_, false) => match p
            .path
            .lookup(args)
            .and_then(|v| detect_under(v, kinds, path))
        {
            Some((at, kind)) => format!("`{at}` holds {what} ({})", kind.label()),
            None => format!("`{path}` holds {what}"),
        },
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

fn expectation(op: &Op) -> String {
    match op {
        Op::Eq(v) => format!("equal to {}", short(v)),
        Op::Neq(v) => format!("not equal to {}", short(v)),
        Op::Lt(n) => format!("less than {n}"),
        Op::Lte(n) => format!("at most {n}"),
        Op::Gt(n) => format!("greater than {n}"),
        Op::Gte(n) => format!("at least {n}"),
        Op::In(l) => format!("one of {}", short(&Value::Array(l.clone()))),
        Op::NotIn(l) => format!("none of {}", short(&Value::Array(l.clone()))),
        Op::Exists(true) => "present".into(),
        Op::Exists(false) => "absent".into(),
        Op::Regex(re) => format!("matching /{}/", re.as_str()),
        Op::Contains(v) => format!("containing {}", short(v)),
        Op::Secret => "holding a credential".into(),
        Op::Pii(k) => format!(
            "holding personal data ({})",
            k.iter().map(Class::name).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn describe(p: &Predicate, args: &Value, out: Outcome, required: bool) -> String {
    if matches!(p.op, Op::Secret | Op::Pii(_)) {
        return describe_detected(p, args, out, required);
    }
    let path = &p.path.text;
    let got = p
        .path
        .lookup(args)
        .map(short)
        .unwrap_or_else(|| "absent".into());
    match (out, required) {
        (Outcome::Missing, _) => format!(
            "`{path}` is required to be {}, but it is absent",
            expectation(&p.op)
        ),
        (Outcome::WrongType, true) => format!(
            "`{path}` must be {}, got {got} (wrong type)",
            expectation(&p.op)
        ),
        (Outcome::WrongType, false) => {
            format!(
                "`{path}` is {got}, which cannot be compared ({}): denied to be safe",
                expectation(&p.op)
            )
        }
        (_, true) => format!("`{path}` must be {}, got {got}", expectation(&p.op)),
        (_, false) => format!("`{path}` is {got}, {}", expectation(&p.op)),
    }
}
