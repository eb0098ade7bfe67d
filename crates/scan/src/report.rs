//! A server's report: every tool assessed, counts, a grade A to F with its reasons, the
//! recommended rule per tool, and the starter policy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::classify::{classify, Assessment, Category, Severity};
use crate::tool::ToolDef;

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

/// The rule the starter policy gives a tool.
pub fn recommended(a: &Assessment) -> Value {
    if a.signals.iter().any(|s| s.is_attack()) {
        return json!("hide");
    }
    match a.category {
        Category::Read => json!({}),
        Category::Write => {
            json!({"limits": [{"counter": format!("{}_writes", a.name), "window": "minute", "max": 30, "scope": "grant"}]})
        }
        Category::Execute | Category::Financial => {
            json!({"action": "require_approval", "approval": {"timeout": "10m"}})
        }
        Category::Destructive => json!("hide"),
    }
}

/// Assesses every tool of one server.
pub fn report(server: &str, tools: &[ToolDef]) -> ServerReport {
    let tools: Vec<ToolReport> = tools
        .iter()
        .map(|t| {
            let assessment = classify(t, tools);
            let recommended = recommended(&assessment);
            ToolReport {
                assessment,
                recommended,
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

/// The starter policy for the scanned tools: `default: deny`; Read `{}`; Write 30 a minute
/// per grant; Execute and Financial `require_approval`; Destructive and poisoned tools hidden.
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
