//! The per-tool states the dashboard shows and sets (Allow, Rate limit, Require approval,
//! Deny, Hide), read from and written into a policy document's JSON. Pure: the caller
//! validates the edited document with [`crate::load_value`] before using it.

use serde_json::{json, Map, Value};

use crate::load::escape_token;
use crate::model::Policy;

/// What a policy does with one tool, in the dashboard's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolState {
    /// Allowed, without limits or approval.
    Allow,
    /// Allowed within limits.
    RateLimit,
    /// Held until a person approves.
    RequireApproval,
    /// Denied (by `action: deny` or by `default: deny` for an unlisted tool).
    Deny,
    /// Removed from `tools/list` and denied.
    Hide,
}

impl ToolState {
    /// The API's name: `allow`, `rate_limit`, `require_approval`, `deny`, `hide`.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolState::Allow => "allow",
            ToolState::RateLimit => "rate_limit",
            ToolState::RequireApproval => "require_approval",
            ToolState::Deny => "deny",
            ToolState::Hide => "hide",
        }
    }

    /// Reads an API name.
    pub fn parse(s: &str) -> Option<ToolState> {
        Some(match s {
            "allow" => ToolState::Allow,
            "rate_limit" => ToolState::RateLimit,
            "require_approval" => ToolState::RequireApproval,
            "deny" => ToolState::Deny,
            "hide" => ToolState::Hide,
            _ => return None,
        })
    }
}

/// A tool's state and the place in the document that makes it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOf {
    /// The state.
    pub state: ToolState,
    /// A JSON Pointer into the document, or a label such as `(default deny)`.
    pub rule: String,
}

/// What the document says about `tool`; `policy` is the document compiled (it decides
/// what `hide` patterns cover: a pattern hides only tools not listed in `tools`).
pub fn tool_state(doc: &Value, policy: &Policy, tool: &str) -> StateOf {
    let at = |state, rule: String| StateOf { state, rule };
    if policy.is_hidden(tool) {
        let hide = doc.get("hide").and_then(Value::as_array);
        let i = hide
            .and_then(|h| h.iter().position(|h| h.as_str() == Some(tool)))
            .or_else(|| {
                hide.and_then(|h| {
                    h.iter()
                        .position(|h| h.as_str().is_some_and(|p| p.contains('*')))
                })
            })
            .unwrap_or(0);
        return at(ToolState::Hide, format!("/hide/{i}"));
    }
    let base = format!("/tools/{}", escape_token(tool));
    let Some(rule) = doc.get("tools").and_then(|t| t.get(tool)) else {
        return match doc.get("default").and_then(Value::as_str) {
            Some("allow") => at(ToolState::Allow, "(default allow)".into()),
            _ => at(ToolState::Deny, "(default deny)".into()),
        };
    };
    match rule.get("action").and_then(Value::as_str) {
        Some("deny") => return at(ToolState::Deny, format!("{base}/action")),
        Some("require_approval") => {
            return at(ToolState::RequireApproval, format!("{base}/action"))
        }
        _ => {}
    }
    match rule.get("limits").and_then(Value::as_array) {
        Some(l) if !l.is_empty() => at(ToolState::RateLimit, format!("{base}/limits")),
        _ => at(ToolState::Allow, base),
    }
}

/// A requested state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub state: ToolState,
    /// For `RateLimit`: calls per window (required).
    pub max: Option<u64>,
    /// For `RateLimit`: the window (default `minute`).
    pub window: Option<Value>,
    /// For `Deny`: the reason the agent reads.
    pub reason: Option<String>,
}

/// Why a change cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The document, its `tools` or the tool's rule is not a JSON object.
    #[error("{0} is not a JSON object; edit the policy document instead")]
    NotAnObject(String),
    /// A rate limit without its maximum.
    #[error("a rate limit needs `max`, the calls allowed per window")]
    MissingMax,
}

/// Returns `doc` with `tool` set to `change.state`. Other parts of the tool's rule
/// (`require`, `deny_if`, `on_deny`, tests) are kept; parts that contradict the new
/// state are removed (`limits` for Allow, `action` for Allow and Rate limit, and so on).
pub fn set_tool_state(doc: &Value, tool: &str, change: &Change) -> Result<Value, EditError> {
    let mut doc = doc.clone();
    let root = doc
        .as_object_mut()
        .ok_or_else(|| EditError::NotAnObject("the document".into()))?;
    // Hide: named in `hide` (a pattern there does not hide a listed tool); every other
    // state: not named there, and listed in `tools`, which no pattern hides.
    if let Some(hide) = root.get_mut("hide").and_then(Value::as_array_mut) {
        if change.state != ToolState::Hide {
            hide.retain(|h| h.as_str() != Some(tool));
        }
    }
    if change.state == ToolState::Hide {
        let hide = root.entry("hide").or_insert_with(|| json!([]));
        match hide.as_array_mut() {
            Some(list) => {
                if !list.iter().any(|h| h.as_str() == Some(tool)) {
                    list.push(json!(tool));
                }
            }
            None => return Err(EditError::NotAnObject("`hide`".into())),
        }
        return Ok(doc);
    }
    let tools = root
        .entry("tools")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| EditError::NotAnObject("`tools`".into()))?;
    let rule = tools
        .entry(tool)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| EditError::NotAnObject(format!("`tools.{tool}`")))?;
    match change.state {
        ToolState::Allow => {
            for k in ["action", "reason", "approval", "limits"] {
                rule.shift_remove(k);
            }
        }
        ToolState::RateLimit => {
            let max = change.max.ok_or(EditError::MissingMax)?;
            for k in ["action", "reason", "approval"] {
                rule.shift_remove(k);
            }
            let window = change.window.clone().unwrap_or_else(|| json!("minute"));
            rule.insert(
                "limits".into(),
                json!([{"counter": format!("{tool}_rate"), "window": window, "max": max, "scope": "grant"}]),
            );
        }
        ToolState::RequireApproval => {
            rule.shift_remove("reason");
            rule.insert("action".into(), json!("require_approval"));
            rule.entry("approval")
                .or_insert_with(|| json!({"timeout": "10m"}));
        }
        ToolState::Deny => {
            rule.shift_remove("approval");
            rule.insert("action".into(), json!("deny"));
            if let Some(r) = change.reason.as_ref().filter(|r| !r.trim().is_empty()) {
                rule.insert("reason".into(), json!(r));
            } else if !rule.contains_key("reason") {
                rule.insert("reason".into(), json!("Denied by an operator."));
            }
        }
        ToolState::Hide => {}
    }
    Ok(doc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::load_value;

    fn doc() -> Value {
        json!({"version": "1", "default": "deny", "hide": ["drop_db"],
            "tools": {"a": {}, "b": {"action": "deny", "reason": "no"},
                      "c": {"require": [{"path": "args.x", "op": "eq", "value": 1}],
                            "limits": [{"counter": "c", "window": "minute", "max": 3}]},
                      "d": {"action": "require_approval"}}})
    }

    fn change(state: ToolState) -> Change {
        Change {
            state,
            max: None,
            window: None,
            reason: None,
        }
    }

    fn state(d: &Value, tool: &str) -> StateOf {
        tool_state(d, &load_value(d).unwrap().policy, tool)
    }

    #[test]
    fn states_are_read_with_their_rule() {
        let d = doc();
        let s = |t| state(&d, t);
        assert_eq!(
            s("a"),
            StateOf {
                state: ToolState::Allow,
                rule: "/tools/a".into()
            }
        );
        assert_eq!(s("b").state, ToolState::Deny);
        assert_eq!(s("b").rule, "/tools/b/action");
        assert_eq!(s("c").state, ToolState::RateLimit);
        assert_eq!(s("d").state, ToolState::RequireApproval);
        assert_eq!(s("drop_db").rule, "/hide/0");
        assert_eq!(s("zz").rule, "(default deny)");
        let open = json!({"version": "1", "default": "allow"});
        assert_eq!(state(&open, "zz").state, ToolState::Allow);
        // A pattern hides only tools not listed, as the engine does.
        let all = json!({"version": "1", "default": "allow", "hide": ["admin_*"], "tools": {"admin_ok": {}}});
        assert_eq!(state(&all, "admin_x").state, ToolState::Hide);
        assert_eq!(state(&all, "admin_ok").state, ToolState::Allow);
    }

    #[test]
    fn every_state_round_trips_and_stays_valid() {
        for state in [
            ToolState::Allow,
            ToolState::RateLimit,
            ToolState::RequireApproval,
            ToolState::Deny,
            ToolState::Hide,
        ] {
            for tool in ["a", "b", "c", "d", "drop_db", "new/tool"] {
                let c = Change {
                    state,
                    max: Some(5),
                    window: None,
                    reason: Some("why".into()),
                };
                let edited = set_tool_state(&doc(), tool, &c).unwrap();
                assert!(
                    load_value(&edited).is_ok(),
                    "{tool} -> {state:?} invalid: {edited}"
                );
                assert_eq!(
                    super::tests::state(&edited, tool).state,
                    state,
                    "{tool} -> {state:?}: {edited}"
                );
            }
        }
    }

    #[test]
    fn predicates_survive_and_contradictions_go() {
        let d = set_tool_state(&doc(), "c", &change(ToolState::Deny)).unwrap();
        assert!(d["tools"]["c"]["require"].is_array());
        assert_eq!(d["tools"]["c"]["reason"], "Denied by an operator.");
        let d = set_tool_state(&d, "c", &change(ToolState::Allow)).unwrap();
        assert!(d["tools"]["c"].get("action").is_none());
        assert!(d["tools"]["c"].get("limits").is_none());
        assert!(d["tools"]["c"]["require"].is_array());
        let shown = set_tool_state(&doc(), "drop_db", &change(ToolState::Allow)).unwrap();
        assert_eq!(shown["hide"], json!([]));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            set_tool_state(&doc(), "a", &change(ToolState::RateLimit)),
            Err(EditError::MissingMax)
        );
        // Under `hide: ["*"]` a tool is shown by listing it, and hidden by naming it.
        let all_hidden =
            json!({"version": "1", "default": "deny", "hide": ["*"], "tools": {"a": {}}});
        let shown = set_tool_state(&all_hidden, "b", &change(ToolState::Allow)).unwrap();
        assert_eq!(state(&shown, "b").state, ToolState::Allow);
        let hidden = set_tool_state(&all_hidden, "a", &change(ToolState::Hide)).unwrap();
        assert_eq!(hidden["hide"], json!(["*", "a"]));
        assert_eq!(state(&hidden, "a").state, ToolState::Hide);
        // Keys keep their order when one is removed.
        let ordered = json!({"version": "1", "default": "deny", "tools": {"t": {"action": "deny", "reason": "r", "on_deny": "x", "require": []}}});
        let allowed = set_tool_state(&ordered, "t", &change(ToolState::Allow)).unwrap();
        let keys: Vec<&String> = allowed["tools"]["t"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["on_deny", "require"]);
        assert!(set_tool_state(&json!([]), "a", &change(ToolState::Allow)).is_err());
    }
}
