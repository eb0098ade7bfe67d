//! `toolgate policy replay`: the recorded calls judged again under a draft policy, in the
//! order they happened, with the draft's limits counted as the gateway would have.

use serde::Serialize;
use serde_json::{Map, Value};
use toolgate_policy::{
    evaluate, labels, testing::observed, Call, CounterError, Counters, Effect, Facts,
    MemoryCounters, Policy,
};

use crate::record::{Kind, Record};

/// One call whose decision would change (or that cannot be decided).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The call record.
    pub seq: u64,
    /// When it was made.
    pub at_ms: u64,
    /// The tool.
    pub tool: String,
    /// The grant's label.
    pub grant: String,
    /// What was decided then: `allow`, `deny`, `hidden` or `require_approval`.
    pub old_decision: String,
    /// The rule then.
    pub old_rule: String,
    /// What the draft decides (`undecidable` when it needs values the log lacks).
    pub new_decision: String,
    /// The draft's rule (for an undecidable call: the tool's rules that read values).
    pub new_rule: String,
}

/// What a replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// `tools/call` records judged again.
    pub judged: u64,
    /// Same decision under the draft.
    pub unchanged: u64,
    /// Allowed then, refused now (denied, hidden or held for approval).
    pub newly_denied: Vec<Change>,
    /// Refused then, allowed now.
    pub newly_allowed: Vec<Change>,
    /// Refused both times, but for another reason now (e.g. hidden instead of denied).
    pub other_changes: Vec<Change>,
    /// Only argument keys were recorded and the draft's decision depends on the values.
    pub undecidable: Vec<Change>,
}

fn old_decision(r: &Record) -> String {
    match (r.decision.as_deref(), r.rule.as_deref()) {
        (_, Some(labels::HIDDEN)) => "hidden".into(),
        (Some(d), _) => d.to_string(),
        (None, _) => "unknown".into(),
    }
}

fn is_refusal(decision: &str) -> bool {
    decision != "allow"
}

/// Judges every `tools/call` record in `records` (in order) under `draft`.
pub fn replay<'r>(records: impl IntoIterator<Item = &'r Record>, draft: &Policy) -> ReplayReport {
    let counters = MemoryCounters::new();
    let mut report = ReplayReport::default();
    let empty = Value::Object(Map::new());
    for r in records {
        if r.kind != Kind::Call || r.method.as_deref() != Some("tools/call") {
            continue;
        }
        let Some(tool) = r.tool.as_deref() else {
            continue;
        };
        report.judged += 1;
        let old = old_decision(r);
        let change = |new_decision: &str, new_rule: &str| Change {
            seq: r.seq,
            at_ms: r.at_ms,
            tool: tool.to_string(),
            grant: r.grant_label.clone().unwrap_or_default(),
            old_decision: old.clone(),
            old_rule: r.rule.clone().unwrap_or_default(),
            new_decision: new_decision.to_string(),
            new_rule: new_rule.to_string(),
        };
        let args = match &r.args {
            Some(a) => a,
            None if draft.needs_argument_values(tool) => {
                report.undecidable.push(change(
                    "undecidable",
                    &format!("/tools/{tool} reads argument values, and only keys were recorded"),
                ));
                continue;
            }
            None => &empty,
        };
        let call = Call {
            tool,
            args,
            grant: r.grant_id.as_deref().unwrap_or(""),
            identity: r.identity.as_deref().unwrap_or(""),
            session: r.session.as_deref().unwrap_or(""),
            server: r.server.as_deref().unwrap_or(""),
        };
        let facts = Facts {
            definition_changed: r.rule.as_deref() == Some(labels::DEFINITION_CHANGED),
            definition_new: false,
            approval_granted: false,
        };
        let mut d = evaluate(&call, draft, &facts, r.at_ms);
        if d.effect != Effect::Deny && !d.reservations.is_empty() {
            match counters.reserve(&d.reservations, r.at_ms) {
                Ok(_) => {}
                Err(CounterError::Exceeded(e)) => d = d.limited(e.index, e.retry_after_secs()),
                Err(CounterError::Unavailable(_)) => {}
            }
        }
        let new = observed(&d).as_str().to_string();
        let same = new == old && (new == "allow" || d.rule == r.rule.as_deref().unwrap_or(""));
        if same {
            report.unchanged += 1;
        } else if !is_refusal(&old) && is_refusal(&new) {
            report.newly_denied.push(change(&new, &d.rule));
        } else if is_refusal(&old) && !is_refusal(&new) {
            report.newly_allowed.push(change(&new, &d.rule));
        } else {
            report.other_changes.push(change(&new, &d.rule));
        }
    }
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(seq: u64, tool: &str, decision: &str, rule: &str, args: Option<Value>) -> Record {
        Record {
            seq,
            at_ms: 1_000_000 + seq * 1000,
            kind: Kind::Call,
            method: Some("tools/call".into()),
            tool: Some(tool.into()),
            grant_id: Some("g_1".into()),
            grant_label: Some("alice".into()),
            decision: Some(decision.into()),
            rule: Some(rule.into()),
            arg_keys: args.as_ref().map(crate::arg_keys),
            args,
            ..Record::default()
        }
    }

    fn policy(v: Value) -> Policy {
        toolgate_policy::load_value(&v).unwrap().policy
    }

    #[test]
    fn reports_newly_denied_allowed_and_undecidable() {
        let draft = policy(json!({
            "version": "1", "default": "deny",
            "tools": {
                "read": {},
                "refund": {"deny_if": [{"path": "args.amount", "op": "gt", "value": 100}]},
                "send": {"limits": [{"counter": "s", "window": "minute", "max": 1}]}
            }
        }));
        let records = vec![
            call(1, "read", "allow", "/tools/read", None),
            call(2, "delete", "allow", "(default allow)", None),
            call(3, "refund", "allow", "/tools/refund", None),
            call(
                4,
                "refund",
                "allow",
                "/tools/refund",
                Some(json!({"amount": 500})),
            ),
            call(5, "send", "deny", "(default deny)", None),
            call(6, "send", "allow", "/tools/send", None),
        ];
        let r = replay(&records, &draft);
        assert_eq!(r.judged, 6);
        assert_eq!(r.unchanged, 1);
        let denied: Vec<(u64, &str)> = r
            .newly_denied
            .iter()
            .map(|c| (c.seq, c.new_rule.as_str()))
            .collect();
        assert_eq!(
            denied,
            vec![
                (2, "(default deny)"),
                (4, "/tools/refund/deny_if/0"),
                (6, "/tools/send/limits/0")
            ]
        );
        assert_eq!(r.newly_allowed.len(), 1);
        assert_eq!(r.newly_allowed[0].seq, 5);
        assert_eq!(r.undecidable.len(), 1);
        assert_eq!(r.undecidable[0].seq, 3);
    }
}
