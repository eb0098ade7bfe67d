//! A server's report: every tool assessed, counts, a grade A to F with its reasons, the
//! recommended rule per tool, and the starter policy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::classify::{classify, Assessment, Category, Severity, Signal};
use crate::tool::ToolDef;
use crate::words::split_name;

/// One tool in a report: its assessment and the rule recommended for it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolReport {
    /// The assessment.
    #[serde(flatten)]
    pub assessment: Assessment,
    /// The starter policy's rule for it (`{}`, a limit, `require_approval`, or `"hide"`).
    pub recommended: Value,
}

/// A server's report.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// The server's name.
    pub server: String,
    /// A to F.
    pub grade: char,
    /// Why that grade.
    pub grade_reasons: Vec<String>,
    /// Tools per category.
    pub by_category: BTreeMap<&'static str, usize>,
    /// Tools per severity.
    pub by_severity: BTreeMap<&'static str, usize>,
    /// Every tool, in the server's order.
    pub tools: Vec<ToolReport>,
}

/// How strict a starter-policy rule is, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    /// `{}`: allowed.
    Allow,
    /// Counted: `limits`.
    Limit,
    /// `require_approval`.
    Approve,
    /// Hidden.
    Hide,
}

fn rule_of(a: &Assessment) -> Rule {
    if a.signals.iter().any(|s| s.is_attack()) {
        return Rule::Hide;
    }
    match (a.category, a.severity) {
        (Category::Read, Severity::Low) => Rule::Allow,
        // Read-only tools are never sent to approval; sensitive reads are counted.
        (Category::Read, _) => Rule::Limit,
        (Category::Write, Severity::Critical) => Rule::Approve,
        (Category::Write, _) => Rule::Limit,
        (Category::Execute | Category::Financial, _) => Rule::Approve,
        (Category::Destructive, Severity::Critical) => Rule::Hide,
        (Category::Destructive, _) => Rule::Approve,
    }
}

fn rule_json(rule: Rule, a: &Assessment) -> Value {
    match rule {
        Rule::Allow => json!({}),
        Rule::Limit if a.category == Category::Read => {
            json!({"limits": [{"counter": format!("{}_reads", a.name), "window": "minute", "max": 60, "scope": "grant"}]})
        }
        Rule::Limit => {
            json!({"limits": [{"counter": format!("{}_writes", a.name), "window": "minute", "max": 30, "scope": "grant"}]})
        }
        Rule::Approve => json!({"action": "require_approval", "approval": {"timeout": "10m"}}),
        Rule::Hide => json!("hide"),
    }
}

/// The rule the starter policy gives a tool on its own: Read/Low `{}`; other reads counted
/// (60 a minute per grant), never sent to approval; Write 30 a minute per grant, and
/// `require_approval` for credential or permission changes (Write/Critical); Execute and
/// Financial `require_approval`; Destructive `require_approval`, hidden when Critical
/// (unbounded deletion, credentials); poisoned tools hidden.
pub fn recommended(a: &Assessment) -> Value {
    rule_json(rule_of(a), a)
}

/// Tools of one server that do the same thing to the same kind of object and declare the
/// same annotations: the key under which the starter policy treats them alike.
fn sibling_key(t: &ToolDef, a: &Assessment) -> Option<String> {
    let hints: Vec<String> = ["readOnlyHint", "destructiveHint"]
        .iter()
        .map(|h| format!("{:?}", t.hint(h)))
        .collect();
    if t.hint("readOnlyHint").is_none() && t.hint("destructiveHint").is_none() {
        return None;
    }
    if a.category == Category::Read || t.hint("readOnlyHint") == Some(true) {
        return None;
    }
    let props = t.input_schema.get("properties").and_then(Value::as_object);
    let writes_files = props.is_some_and(|m| {
        m.keys().any(|k| {
            let k = k.to_lowercase();
            k == "path" || k.ends_with("_path") || k == "source" || k == "destination"
        })
    });
    let object = if writes_files {
        "files".to_string()
    } else {
        let words = split_name(&t.name);
        words.last().cloned().unwrap_or_default()
    };
    Some(format!("{}|{object}", hints.join(",")))
}

/// Assesses every tool of one server.
pub fn report(server: &str, tools: &[ToolDef]) -> ServerReport {
    let assessed: Vec<(Assessment, Rule, Option<String>)> = tools
        .iter()
        .map(|t| {
            let a = classify(t, tools);
            let rule = rule_of(&a);
            let key = sibling_key(t, &a);
            (a, rule, key)
        })
        .collect();
    // Siblings with the same function and annotations get the same rule: the strictest of
    // theirs, but a tool is never hidden only because a sibling is, and a poisoned tool
    // stays hidden.
    let mut strictest: BTreeMap<&str, Rule> = BTreeMap::new();
    for (a, rule, key) in &assessed {
        let Some(k) = key else { continue };
        if a.signals.iter().any(|s| s.is_attack()) {
            continue;
        }
        let r = (*rule).min(Rule::Approve);
        let e = strictest.entry(k.as_str()).or_insert(r);
        *e = (*e).max(r);
    }
    let tools: Vec<ToolReport> = assessed
        .iter()
        .map(|(a, rule, key)| {
            let mut r = *rule;
            let poisoned = a.signals.iter().any(|s| s.is_attack());
            if let Some(group) = key.as_deref().and_then(|k| strictest.get(k)) {
                if !poisoned && *group > Rule::Allow {
                    r = if r == Rule::Hide {
                        Rule::Hide.min(*group)
                    } else {
                        r.max(*group)
                    };
                }
            }
            let mut assessment = a.clone();
            if r != *rule {
                assessment.signals.push(Signal::new(
                    "same-as-siblings",
                    "Given the rule of sibling tools that write the same kind of object with the same annotations".into(),
                ));
            }
            ToolReport {
                recommended: rule_json(r, &assessment),
                assessment,
            }
        })
        .collect();
    let mut by_category = BTreeMap::new();
    let mut by_severity = BTreeMap::new();
    for c in Category::ALL {
        by_category.insert(c.as_str(), 0);
    }
    for s in [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ] {
        by_severity.insert(s.as_str(), 0);
    }
    for t in &tools {
        *by_category
            .entry(t.assessment.category.as_str())
            .or_insert(0) += 1;
        *by_severity
            .entry(t.assessment.severity.as_str())
            .or_insert(0) += 1;
    }
    let attacked: Vec<&str> = tools
        .iter()
        .filter(|t| t.assessment.signals.iter().any(|s| s.is_attack()))
        .map(|t| t.assessment.name.as_str())
        .collect();
    let n = tools.len().max(1);
    let risky = tools
        .iter()
        .filter(|t| t.assessment.severity >= Severity::High)
        .count();
    let share = risky as f64 / n as f64;
    let mut reasons = vec![];
    let grade = if !attacked.is_empty() {
        reasons.push(format!(
            "{} tool(s) carry attack signals: {}",
            attacked.len(),
            attacked.join(", ")
        ));
        'F'
    } else {
        reasons.push(format!(
            "{risky} of {} tools are High or Critical ({:.0}%)",
            tools.len(),
            share * 100.0
        ));
        match share {
            _ if risky == 0 => 'A',
            s if s <= 0.2 => 'B',
            s if s <= 0.4 => 'C',
            s if s <= 0.6 => 'D',
            _ => 'E',
        }
    };
    let disagree = tools
        .iter()
        .filter(|t| {
            t.assessment
                .signals
                .iter()
                .any(|s| s.id == "annotation-disagrees")
        })
        .count();
    if disagree > 0 {
        reasons.push(format!(
            "{disagree} tool(s) declare annotations that disagree with their names"
        ));
    }
    ServerReport {
        server: server.to_string(),
        grade,
        grade_reasons: reasons,
        by_category,
        by_severity,
        tools,
    }
}

/// The starter policy for the scanned tools: `default: deny` and each tool's rule (see
/// [`recommended`]), siblings with the same function and annotations treated alike.
pub fn starter_policy(reports: &[ServerReport]) -> Value {
    let mut tools = Map::new();
    let mut hide = vec![];
    for r in reports {
        for t in &r.tools {
            if t.recommended == json!("hide") {
                hide.push(Value::String(t.assessment.name.clone()));
            } else {
                tools.insert(t.assessment.name.clone(), t.recommended.clone());
            }
        }
    }
    // With several servers, a name hidden for any of them is hidden: hiding wins.
    tools.retain(|name, _| !hide.iter().any(|h| h.as_str() == Some(name.as_str())));
    hide.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    hide.dedup();
    json!({
        "version": "1",
        "default": "deny",
        "description": "Starter policy written by `toolgate scan`: review it before use.",
        "hide": hide,
        "tools": tools,
    })
}
