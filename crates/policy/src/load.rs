//! From raw JSON to a validated [`Policy`], collecting every error with its JSON Pointer.
//!
//! The walk is by hand over a `serde_json::Value` rather than serde derive so that one
//! pass reports every mistake at once, each at its exact place, with what was expected.

use std::collections::HashMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::duration::{duration_secs, window_secs};
use toolgate_detect::{Class, KindSet};

use crate::model::{
    Action, ApprovalSpec, ArgPath, Ask, DefaultAction, Expect, HideEntry, Limit, OnInjection, Op,
    PartialResultRules, Policy, PolicyTest, Predicate, ResultDeny, ResultRules, Scope, ToolRule,
};

/// The longest an approval may wait for a decision (and stay usable once given): 30 days.
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// The most inline `tests` a document may have (more is refused at `/tests`).
pub const MAX_TESTS: usize = 500;

/// The most `calls` one inline test may make (`/tests/N/calls`).
pub const MAX_TEST_CALLS: u32 = 100_000;

/// The most calls all of a document's inline tests may make together: running the tests
/// is work done for whoever sends the document (`POST /api/v1/policies/validate` is open
/// to viewers), so it is bounded. The first test past it is refused at `/tests/N/calls`.
pub const MAX_TOTAL_TEST_CALLS: u64 = 100_000;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The document is refused.
    Error,
    /// Valid, but probably not what was meant.
    Warning,
}

/// One finding about a document, at a JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// JSON Pointer of the offending place (`""` is the whole document).
    pub pointer: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "(document)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// A document that does not validate: every error found, and the warnings.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid policy: {} error(s), first: {}", errors.len(), errors.first().map(ToString::to_string).unwrap_or_default())]
pub struct LoadError {
    /// Every error, in document order.
    pub errors: Vec<Diagnostic>,
    /// Warnings found along the way.
    pub warnings: Vec<Diagnostic>,
}

/// A validated policy with its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled policy.
    pub policy: Policy,
    /// Suspicious but valid things.
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates a policy document from JSON text.
pub fn load_str(text: &str) -> Result<Loaded, LoadError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => load_value(&v),
        Err(e) => Err(LoadError {
            errors: vec![Diagnostic {
                severity: Severity::Error,
                pointer: String::new(),
                message: format!(
                    "not valid JSON at line {} column {}: {}",
                    e.line(),
                    e.column(),
                    strip_position(&e.to_string())
                ),
            }],
            warnings: vec![],
        }),
    }
}

fn strip_position(msg: &str) -> &str {
    msg.find(" at line ")
        .map_or(msg, |i| msg.get(..i).unwrap_or(msg))
}

/// Validates a policy document already parsed as JSON.
pub fn load_value(doc: &Value) -> Result<Loaded, LoadError> {
    let mut cx = Cx::default();
    let policy = cx.document(doc);
    match policy {
        Some(policy) if cx.errors.is_empty() => Ok(Loaded {
            policy,
            warnings: cx.warnings,
        }),
        _ => Err(LoadError {
            errors: cx.errors,
            warnings: cx.warnings,
        }),
    }
}

/// Escapes one JSON Pointer token (`~` → `~0`, `/` → `~1`).
pub fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A short JSON rendering of a value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(c) = cur.get_mut(j + 1) {
                *c = sub.min(del).min(ins);
            }
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[derive(Default)]
struct Cx {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// (counter, scope) -> (window, max, pointer) of its first definition.
    counters: HashMap<(String, Scope), (u64, u64, String)>,
}

impl Cx {
    fn error(&mut self, pointer: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            severity: Severity::Error,
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, pointer: &str, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            severity: Severity::Warning,
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    /// Checks `v` is an object, reports unknown keys, and returns it.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        at: &str,
        what: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = v.as_object() else {
            self.error(at, format!("expected {what} (an object), got {}", show(v)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let near = known
                    .iter()
                    .map(|k| (edit_distance(k, key), *k))
                    .filter(|(d, _)| *d <= 2)
                    .min();
                let hint = match near {
                    Some((_, k)) => format!(" (did you mean `{k}`?)"),
                    None => format!(
                        "; expected one of {}",
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(
                    &format!("{at}/{}", escape_token(key)),
                    format!("unknown key `{key}`{hint}"),
                );
            }
        }
        Some(map)
    }

    fn document(&mut self, doc: &Value) -> Option<Policy> {
        let map = self.object(
            doc,
            "",
            "a policy document",
            &[
                "$schema",
                "version",
                "default",
                "description",
                "hide",
                "all_tools",
                "tools",
                "tests",
                "validate_arguments",
            ],
        )?;
        let version = match map.get("version") {
            Some(Value::String(s)) if s == "1" => Some(s.clone()),
            Some(other) => {
                self.error("/version", format!("expected \"1\", got {}", show(other)));
                None
            }
            None => {
                self.error("/version", "missing: expected \"1\"");
                None
            }
        };
        let default = match map.get("default") {
            Some(Value::String(s)) if s == "allow" => Some(DefaultAction::Allow),
            Some(Value::String(s)) if s == "deny" => Some(DefaultAction::Deny),
            Some(other) => {
                self.error(
                    "/default",
                    format!("expected \"allow\" or \"deny\", got {}", show(other)),
                );
                None
            }
            None => {
                self.error("/default", "missing: expected \"allow\" or \"deny\" (what happens to tools not listed in `tools`)");
                None
            }
        };
        if let Some(d) = map.get("description") {
            if !d.is_string() {
                self.error(
                    "/description",
                    format!("expected a string, got {}", show(d)),
                );
            }
        }
        let validate_arguments = self.flag(map.get("validate_arguments"), "/validate_arguments");
        let hide = self.hide(map.get("hide"));
        let (all_limits, all_results) = match map.get("all_tools") {
            None => (vec![], None),
            Some(v) => self.all_tools(v),
        };
        let mut tools = HashMap::new();
        if let Some(v) = map.get("tools") {
            if let Some(tmap) = v.as_object() {
                for (name, tv) in tmap {
                    let at = format!("/tools/{}", escape_token(name));
                    if name.is_empty() {
                        self.error(&at, "a tool name must not be empty");
                        continue;
                    }
                    if let Some(rule) = self.tool(tv, &at, all_results.as_ref()) {
                        tools.insert(name.clone(), rule);
                    }
                }
            } else {
                self.error(
                    "/tools",
                    format!("expected an object of tool name to rules, got {}", show(v)),
                );
            }
        }
        // Warnings that need the whole document.
        for (i, h) in hide.iter().enumerate() {
            if let HideEntry::Exact(name) = h {
                if tools.contains_key(name) {
                    self.warn(
                        &format!("/tools/{}", escape_token(name)),
                        format!("`{name}` is hidden by /hide/{i}, so these rules never apply"),
                    );
                }
            }
        }
        if default == Some(DefaultAction::Allow) {
            for (name, rule) in &tools {
                if rule.action == Action::Allow
                    && rule.require.is_empty()
                    && rule.deny_if.is_empty()
                    && rule.limits.is_empty()
                    && rule.validate_arguments.is_none()
                    && rule.results == all_results
                {
                    self.warn(&rule.pointer, format!("`{name}` has no rules and `default` is \"allow\": listing it changes nothing"));
                }
            }
        }
        let tests = match map.get("tests") {
            None => vec![],
            Some(v) => self.tests(v),
        };
        Some(Policy {
            version: version?,
            default: default?,
            hide,
            all_limits,
            tools,
            tests,
            validate_arguments,
            all_results,
        })
    }

    /// An optional `true` or `false` at `at`, with its pointer.
    fn flag(&mut self, v: Option<&Value>, at: &str) -> Option<(bool, String)> {
        match v? {
            Value::Bool(b) => Some((*b, at.to_string())),
            other => {
                self.error(at, format!("expected true or false, got {}", show(other)));
                None
            }
        }
    }

    /// A list of detector classes (`"secrets"`, `"email"`, …) at `at`; each unknown one
    /// is an error at its own pointer. `None` when the list itself is malformed.
    fn classes(
        &mut self,
        v: &Value,
        at: &str,
        allow_secrets: bool,
    ) -> Option<Vec<(Class, String)>> {
        let known = if allow_secrets { KINDS } else { PII_KINDS };
        let Some(items) = v.as_array() else {
            self.error(
                at,
                format!("expected an array of kinds ({known}), got {}", show(v)),
            );
            return None;
        };
        if items.is_empty() {
            self.error(at, format!("expected at least one kind ({known}), got []"));
            return None;
        }
        let mut out = vec![];
        let before = self.errors.len();
        for (i, item) in items.iter().enumerate() {
            let iat = format!("{at}/{i}");
            match item.as_str().and_then(Class::parse) {
                Some(Class::Secrets) if !allow_secrets => self.error(
                    &iat,
                    format!("`secrets` is not personal data: use the `secret` op; expected one of {known}"),
                ),
                Some(c) => out.push((c, iat)),
                None => self.error(&iat, format!("expected one of {known}, got {}", show(item))),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// A `results` block (per tool or in `all_tools`).
    fn results(&mut self, v: &Value, at: &str) -> Option<PartialResultRules> {
        let map = self.object(
            v,
            at,
            "result rules {\"redact\", \"deny_if\", \"on_injection\"}",
            &["redact", "deny_if", "on_injection"],
        )?;
        let before = self.errors.len();
        let mut out = PartialResultRules::default();
        if let Some(r) = map.get("redact") {
            if let Some(list) = self.classes(r, &format!("{at}/redact"), true) {
                out.redact = Some(list.iter().fold(KindSet::EMPTY, |s, (c, _)| s.with(*c)));
            }
        }
        if let Some(d) = map.get("deny_if") {
            if let Some(list) = self.classes(d, &format!("{at}/deny_if"), true) {
                out.deny_if = Some(
                    list.into_iter()
                        .map(|(class, pointer)| ResultDeny { class, pointer })
                        .collect(),
                );
            }
        }
        if let Some(o) = map.get("on_injection") {
            let oat = format!("{at}/on_injection");
            let on = match o.as_str() {
                Some("allow") => Some(OnInjection::Allow),
                Some("flag") => Some(OnInjection::Flag),
                Some("strip") => Some(OnInjection::Strip),
                Some("deny") => Some(OnInjection::Deny),
                _ => {
                    self.error(
                        &oat,
                        format!(
                            "expected \"allow\", \"flag\", \"strip\" or \"deny\", got {}",
                            show(o)
                        ),
                    );
                    None
                }
            };
            out.on_injection = on.map(|o| (o, oat));
        }
        if let (Some(redact), Some(deny)) = (out.redact, &out.deny_if) {
            for d in deny {
                if redact.contains(d.class) {
                    self.warn(
                        &d.pointer,
                        format!(
                            "`{}` is also in `redact`: a result holding it is denied, never redacted",
                            d.class.name()
                        ),
                    );
                }
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn hide(&mut self, v: Option<&Value>) -> Vec<HideEntry> {
        let Some(v) = v else { return vec![] };
        let Some(items) = v.as_array() else {
            self.error(
                "/hide",
                format!("expected an array of tool names, got {}", show(v)),
            );
            return vec![];
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let at = format!("/hide/{i}");
            match item {
                Value::String(s) if s.is_empty() => {
                    self.error(&at, "expected a tool name or a pattern with `*`, got \"\"")
                }
                Value::String(s) if s.contains('*') => {
                    let pattern = format!(
                        "^{}$",
                        s.split('*')
                            .map(regex::escape)
                            .collect::<Vec<_>>()
                            .join(".*")
                    );
                    match Regex::new(&pattern) {
                        Ok(re) => out.push(HideEntry::Pattern(re)),
                        Err(e) => self.error(&at, format!("bad pattern: {e}")),
                    }
                }
                Value::String(s) => out.push(HideEntry::Exact(s.clone())),
                other => self.error(
                    &at,
                    format!("expected a tool name (a string), got {}", show(other)),
                ),
            }
        }
        out
    }

    fn all_tools(&mut self, v: &Value) -> (Vec<Limit>, Option<ResultRules>) {
        let Some(map) = self.object(
            v,
            "/all_tools",
            "rules for every tool",
            &["limits", "results", "description"],
        ) else {
            return (vec![], None);
        };
        let limits = match map.get("limits") {
            Some(l) => self.limits(l, "/all_tools/limits"),
            None => vec![],
        };
        let results = map
            .get("results")
            .and_then(|r| self.results(r, "/all_tools/results"))
            .map(|p| ResultRules::default().merged(&p));
        (limits, results)
    }

    fn tool(&mut self, v: &Value, at: &str, shared: Option<&ResultRules>) -> Option<ToolRule> {
        let map = self.object(
            v,
            at,
            "the tool's rules",
            &[
                "action",
                "reason",
                "on_deny",
                "require",
                "deny_if",
                "limits",
                "approval",
                "description",
                "validate_arguments",
                "results",
            ],
        )?;
        let errors_before = self.errors.len();
        let validate_arguments = self.flag(
            map.get("validate_arguments"),
            &format!("{at}/validate_arguments"),
        );
        let results = match (map.get("results"), shared) {
            (Some(r), shared) => self
                .results(r, &format!("{at}/results"))
                .map(|own| shared.cloned().unwrap_or_default().merged(&own)),
            (None, shared) => shared.cloned(),
        };
        let action = match map.get("action") {
            None => Action::Allow,
            Some(Value::String(s)) if s == "allow" => Action::Allow,
            Some(Value::String(s)) if s == "deny" => Action::Deny,
            Some(Value::String(s)) if s == "require_approval" => Action::RequireApproval,
            Some(other) => {
                self.error(
                    &format!("{at}/action"),
                    format!(
                        "expected \"allow\", \"deny\" or \"require_approval\", got {}",
                        show(other)
                    ),
                );
                Action::Deny
            }
        };
        let mut message = None;
        for key in ["reason", "on_deny"] {
            match map.get(key) {
                None => {}
                Some(Value::String(s)) if !s.trim().is_empty() => message = Some(s.clone()),
                Some(other) => self.error(
                    &format!("{at}/{key}"),
                    format!(
                        "expected a non-empty string (the message the agent sees), got {}",
                        show(other)
                    ),
                ),
            }
        }
        if map.contains_key("reason") && map.contains_key("on_deny") {
            self.warn(
                &format!("{at}/reason"),
                "both `reason` and `on_deny` are given; `on_deny` is used",
            );
        }
        if let Some(d) = map.get("description") {
            if !d.is_string() {
                self.error(
                    &format!("{at}/description"),
                    format!("expected a string, got {}", show(d)),
                );
            }
        }
        let require = match map.get("require") {
            Some(r) => self.predicates(r, &format!("{at}/require")),
            None => vec![],
        };
        let deny_if = match map.get("deny_if") {
            Some(r) => self.predicates(r, &format!("{at}/deny_if")),
            None => vec![],
        };
        let limits = match map.get("limits") {
            Some(l) => self.limits(l, &format!("{at}/limits")),
            None => vec![],
        };
        let approval = match map.get("approval") {
            Some(a) => {
                if action != Action::RequireApproval {
                    self.warn(
                        &format!("{at}/approval"),
                        "`approval` has no effect unless `action` is \"require_approval\"",
                    );
                }
                self.approval(a, &format!("{at}/approval"))
            }
            None => ApprovalSpec::default(),
        };
        if action == Action::Deny
            && (!require.is_empty() || !deny_if.is_empty() || !limits.is_empty())
        {
            self.warn(
                &format!("{at}/action"),
                "the tool is always denied, so its `require`, `deny_if` and `limits` never apply",
            );
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(ToolRule {
            action,
            message,
            require,
            deny_if,
            limits,
            approval,
            pointer: at.to_string(),
            validate_arguments,
            results,
        })
    }

    fn approval(&mut self, v: &Value, at: &str) -> ApprovalSpec {
        let mut spec = ApprovalSpec::default();
        let Some(map) = self.object(
            v,
            at,
            "approval settings",
            &["timeout", "approvers", "ask", "session_scope"],
        ) else {
            return spec;
        };
        if let Some(a) = map.get("ask") {
            match a.as_str() {
                Some("operators") => spec.ask = Ask::Operators,
                Some("client") => spec.ask = Ask::Client,
                Some("client_or_operators") => spec.ask = Ask::ClientOrOperators,
                _ => self.error(
                    &format!("{at}/ask"),
                    format!(
                        "expected \"operators\" (CLI, API, dashboard; the default), \"client\" (the person at the agent's client, through elicitation) or \"client_or_operators\", got {}",
                        show(a)
                    ),
                ),
            }
        }
        if let Some(s) = map.get("session_scope") {
            match s.as_bool() {
                Some(true) if !spec.ask.asks_client() => self.error(
                    &format!("{at}/session_scope"),
                    "only the client can allow a tool for its session: set `ask` to \"client\" or \"client_or_operators\"",
                ),
                Some(b) => spec.session_scope = b,
                None => self.error(
                    &format!("{at}/session_scope"),
                    format!("expected true or false, got {}", show(s)),
                ),
            }
        }
        if let Some(t) = map.get("timeout") {
            match duration_secs(t) {
                Some(s) if (1..=MAX_APPROVAL_TIMEOUT_SECS).contains(&s) => spec.timeout_secs = s,
                Some(_) => self.error(&format!("{at}/timeout"), format!("expected a duration from 1s to 30d, got {}", show(t))),
                None => self.error(&format!("{at}/timeout"), format!("expected a duration such as \"10m\", \"1h\" or a whole number of seconds, got {}", show(t))),
            }
        }
        if let Some(a) = map.get("approvers") {
            match a.as_u64().filter(|n| (1..=100).contains(n)) {
                Some(n) => spec.approvers = n as u32,
                None => self.error(
                    &format!("{at}/approvers"),
                    format!("expected a whole number from 1 to 100, got {}", show(a)),
                ),
            }
        }
        spec
    }

    fn arg_path(&mut self, v: Option<&Value>, at: &str) -> Option<ArgPath> {
        self.arg_path_or_whole(v, at, false)
    }

    /// A path into the arguments; with `whole`, `"args"` itself (every argument) too.
    fn arg_path_or_whole(&mut self, v: Option<&Value>, at: &str, whole: bool) -> Option<ArgPath> {
        if whole && v.and_then(Value::as_str) == Some("args") {
            return Some(ArgPath {
                text: "args".to_string(),
                segments: vec![],
            });
        }
        if v.and_then(Value::as_str) == Some("args") {
            self.error(
                at,
                "expected a path starting with \"args.\" (such as \"args.amount\"), got \"args\": the whole arguments are a path only for the `secret` and `pii` ops",
            );
            return None;
        }
        let Some(v) = v else {
            self.error(
                at,
                "missing: expected a path into the arguments such as \"args.amount\"",
            );
            return None;
        };
        let Some(s) = v.as_str() else {
            self.error(
                at,
                format!("expected a path such as \"args.amount\", got {}", show(v)),
            );
            return None;
        };
        let Some(rest) = s.strip_prefix("args.") else {
            self.error(
                at,
                format!(
                    "expected a path starting with \"args.\" (such as \"args.amount\"), got {}",
                    show(v)
                ),
            );
            return None;
        };
        let segments: Vec<String> = rest.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            self.error(
                at,
                format!(
                    "expected dot-separated names after \"args.\", got {}",
                    show(v)
                ),
            );
            return None;
        }
        Some(ArgPath {
            text: s.to_string(),
            segments,
        })
    }

    fn predicates(&mut self, v: &Value, at: &str) -> Vec<Predicate> {
        let Some(items) = v.as_array() else {
            self.error(at, format!("expected an array of predicates like {{\"path\": \"args.x\", \"op\": \"eq\", \"value\": 1}}, got {}", show(v)));
            return vec![];
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let pat = format!("{at}/{i}");
            if let Some(p) = self.predicate(item, &pat) {
                out.push(p);
            }
        }
        out
    }

    fn predicate(&mut self, v: &Value, at: &str) -> Option<Predicate> {
        let map = self.object(
            v,
            at,
            "a predicate {\"path\", \"op\", \"value\"}",
            &["path", "op", "value"],
        )?;
        let whole = matches!(
            map.get("op").and_then(Value::as_str),
            Some("secret" | "pii")
        );
        let path = self.arg_path_or_whole(map.get("path"), &format!("{at}/path"), whole);
        let op_name = match map.get("op") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                self.error(
                    &format!("{at}/op"),
                    format!("expected one of {OPS}, got {}", show(other)),
                );
                None
            }
            None => {
                self.error(
                    &format!("{at}/op"),
                    format!("missing: expected one of {OPS}"),
                );
                None
            }
        };
        let value = map.get("value");
        let vat = format!("{at}/value");
        let op = match op_name? {
            "exists" => match value {
                None => Some(Op::Exists(true)),
                Some(Value::Bool(b)) => Some(Op::Exists(*b)),
                Some(other) => self.bad_value(&vat, "`exists` takes true or false", other),
            },
            "secret" => match value {
                None => Some(Op::Secret),
                Some(other) => {
                    self.error(
                        &vat,
                        format!(
                            "`secret` takes no value (it matches any credential under the path), got {}",
                            show(other)
                        ),
                    );
                    None
                }
            },
            "pii" => match value {
                None => {
                    self.error(
                        &vat,
                        format!("missing: `pii` needs a list of kinds ({PII_KINDS})"),
                    );
                    None
                }
                Some(v) => self
                    .classes(v, &vat, false)
                    .map(|list| Op::Pii(list.iter().fold(KindSet::EMPTY, |s, (c, _)| s.with(*c)))),
            },
            name => {
                let Some(value) = value else {
                    self.error(&vat, format!("missing: `{name}` needs a value"));
                    return None;
                };
                match name {
                    "eq" => Some(Op::Eq(value.clone())),
                    "neq" => Some(Op::Neq(value.clone())),
                    "lt" | "lte" | "gt" | "gte" => match value
                        .as_number()
                        .filter(|n| toolgate_protocol::Decimal::from_number(n).is_some())
                        .cloned()
                    {
                        Some(n) => Some(match name {
                            "lt" => Op::Lt(n),
                            "lte" => Op::Lte(n),
                            "gt" => Op::Gt(n),
                            _ => Op::Gte(n),
                        }),
                        None => self.bad_value(
                            &vat,
                            &format!("`{name}` compares numbers: expected a number"),
                            value,
                        ),
                    },
                    "in" | "not_in" => match value.as_array() {
                        Some(list) => {
                            if list.is_empty() {
                                self.warn(
                                    &vat,
                                    format!(
                                        "an empty list: `{name}` is then always {}",
                                        if name == "in" { "false" } else { "true" }
                                    ),
                                );
                            }
                            Some(if name == "in" {
                                Op::In(list.clone())
                            } else {
                                Op::NotIn(list.clone())
                            })
                        }
                        None => self.bad_value(
                            &vat,
                            &format!("`{name}` expected an array of values"),
                            value,
                        ),
                    },
                    "regex" => match value.as_str() {
                        Some(re) => match RegexBuilder::new(re).size_limit(1 << 20).build() {
                            Ok(re) => Some(Op::Regex(re)),
                            Err(e) => {
                                let text = e.to_string();
                                let last = text.lines().last().unwrap_or("").trim();
                                let first =
                                    last.strip_prefix("error: ").unwrap_or(last).to_string();
                                self.error(&vat, format!("invalid regex {}: {first}", show(value)));
                                None
                            }
                        },
                        None => self.bad_value(
                            &vat,
                            "`regex` expected a regular expression (a string)",
                            value,
                        ),
                    },
                    "contains" => match value {
                        Value::Null | Value::Array(_) | Value::Object(_) => self.bad_value(
                            &vat,
                            "`contains` expected a string, number or boolean",
                            value,
                        ),
                        _ => Some(Op::Contains(value.clone())),
                    },
                    other => {
                        self.error(
                            &format!("{at}/op"),
                            format!("expected one of {OPS}, got \"{other}\""),
                        );
                        None
                    }
                }
            }
        };
        Some(Predicate {
            path: path?,
            op: op?,
            pointer: at.to_string(),
        })
    }

    fn bad_value<T>(&mut self, at: &str, expected: &str, got: &Value) -> Option<T> {
        self.error(at, format!("{expected}, got {} {}", kind(got), show(got)));
        None
    }

    fn limits(&mut self, v: &Value, at: &str) -> Vec<Limit> {
        let Some(items) = v.as_array() else {
            self.error(at, format!("expected an array of limits like {{\"counter\": \"c\", \"window\": \"minute\", \"max\": 30}}, got {}", show(v)));
            return vec![];
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let lat = format!("{at}/{i}");
            if let Some(l) = self.limit(item, &lat) {
                out.push(l);
            }
        }
        out
    }

    fn limit(&mut self, v: &Value, at: &str) -> Option<Limit> {
        let map = self.object(
            v,
            at,
            "a limit {\"counter\", \"window\", \"max\", \"scope\"}",
            &["counter", "window", "max", "scope", "increment_from"],
        )?;
        let counter = match map.get("counter") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(other) => {
                self.error(
                    &format!("{at}/counter"),
                    format!(
                        "expected a counter name (a non-empty string), got {}",
                        show(other)
                    ),
                );
                None
            }
            None => {
                self.error(&format!("{at}/counter"), "missing: expected a counter name (limits with the same counter and scope share one count)");
                None
            }
        };
        let window = match map.get("window") {
            Some(w) => {
                let s = window_secs(w);
                if s.is_none() {
                    self.error(&format!("{at}/window"), format!("expected \"second\", \"minute\", \"hour\", \"day\" or a whole number of seconds, got {}", show(w)));
                }
                s
            }
            None => {
                self.error(&format!("{at}/window"), "missing: expected \"second\", \"minute\", \"hour\", \"day\" or a whole number of seconds");
                None
            }
        };
        let max = match map.get("max") {
            Some(m) => match m.as_u64() {
                Some(n) => {
                    if n == 0 {
                        self.warn(
                            &format!("{at}/max"),
                            "`max` is 0: every call is denied by this limit",
                        );
                    }
                    Some(n)
                }
                None => {
                    self.error(
                        &format!("{at}/max"),
                        format!("expected a whole number (0 or more), got {}", show(m)),
                    );
                    None
                }
            },
            None => {
                self.error(
                    &format!("{at}/max"),
                    "missing: expected a whole number (the most calls, or amount, in any window)",
                );
                None
            }
        };
        let scope = match map.get("scope") {
            None => Some(Scope::Grant),
            Some(Value::String(s)) => match s.as_str() {
                "grant" => Some(Scope::Grant),
                "identity" => Some(Scope::Identity),
                "session" => Some(Scope::Session),
                "server" => Some(Scope::Server),
                "global" => Some(Scope::Global),
                _ => None,
            },
            Some(_) => None,
        };
        if scope.is_none() {
            let got = map.get("scope").map(show).unwrap_or_default();
            self.error(&format!("{at}/scope"), format!("expected \"grant\", \"identity\", \"session\", \"server\" or \"global\", got {got}"));
        }
        let increment_from = match map.get("increment_from") {
            None => None,
            Some(v) => Some(self.arg_path(Some(v), &format!("{at}/increment_from"))?),
        };
        let (counter, window_secs, max, scope) = (counter?, window?, max?, scope?);
        let key = (counter.clone(), scope);
        match self.counters.get(&key) {
            Some((w, m, first)) if *w != window_secs || *m != max => {
                let msg = format!(
                    "counter `{counter}` (scope {}) is already defined at {first} with window {w} s and max {m}; here it has window {window_secs} s and max {max}: limits that share a counter must agree",
                    scope.as_str()
                );
                self.error(at, msg);
                return None;
            }
            Some(_) => {}
            None => {
                self.counters
                    .insert(key, (window_secs, max, at.to_string()));
            }
        }
        Some(Limit {
            counter,
            window_secs,
            max,
            scope,
            increment_from,
            pointer: at.to_string(),
        })
    }

    fn tests(&mut self, v: &Value) -> Vec<PolicyTest> {
        let Some(items) = v.as_array() else {
            self.error("/tests", format!("expected an array of tests like {{\"tool\": \"t\", \"args\": {{}}, \"expect\": \"deny\"}}, got {}", show(v)));
            return vec![];
        };
        if items.len() > MAX_TESTS {
            self.error(
                "/tests",
                format!(
                    "{} tests: a document may have at most {MAX_TESTS} inline tests",
                    items.len()
                ),
            );
            return vec![];
        }
        let mut out = vec![];
        let mut total_calls = 0u64;
        for (i, item) in items.iter().enumerate() {
            let at = format!("/tests/{i}");
            let Some(map) = self.object(
                item,
                &at,
                "a test",
                &[
                    "tool",
                    "args",
                    "expect",
                    "rule",
                    "grant",
                    "calls",
                    "definition_changed",
                    "description",
                ],
            ) else {
                continue;
            };
            let before = self.errors.len();
            let tool = match map.get("tool") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                other => {
                    let got = other.map(show).unwrap_or_else(|| "nothing".into());
                    self.error(
                        &format!("{at}/tool"),
                        format!("expected a tool name, got {got}"),
                    );
                    String::new()
                }
            };
            let args = match map.get("args") {
                None => Value::Object(Map::new()),
                Some(a @ Value::Object(_)) => a.clone(),
                Some(other) => {
                    self.error(
                        &format!("{at}/args"),
                        format!("expected an object of arguments, got {}", show(other)),
                    );
                    Value::Null
                }
            };
            let expect = match map.get("expect").and_then(Value::as_str) {
                Some("allow") => Expect::Allow,
                Some("deny") => Expect::Deny,
                Some("hidden") => Expect::Hidden,
                Some("require_approval") => Expect::RequireApproval,
                _ => {
                    let got = map
                        .get("expect")
                        .map(show)
                        .unwrap_or_else(|| "nothing".into());
                    self.error(&format!("{at}/expect"), format!("expected \"allow\", \"deny\", \"hidden\" or \"require_approval\", got {got}"));
                    Expect::Deny
                }
            };
            let rule = match map.get("rule") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    self.error(&format!("{at}/rule"), format!("expected a rule (a JSON Pointer or a label such as \"(default deny)\"), got {}", show(other)));
                    None
                }
            };
            let grant = match map.get("grant") {
                None => "test".to_string(),
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(other) => {
                    self.error(
                        &format!("{at}/grant"),
                        format!("expected a grant label, got {}", show(other)),
                    );
                    String::new()
                }
            };
            let calls = match map.get("calls") {
                None => 1,
                Some(c) => match c
                    .as_u64()
                    .filter(|n| (1..=u64::from(MAX_TEST_CALLS)).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                {
                    Some(n) => n,
                    None => {
                        self.error(
                            &format!("{at}/calls"),
                            format!(
                                "expected a whole number from 1 to {MAX_TEST_CALLS}, got {}",
                                show(c)
                            ),
                        );
                        1
                    }
                },
            };
            let before_total = total_calls;
            total_calls = total_calls.saturating_add(u64::from(calls));
            if total_calls > MAX_TOTAL_TEST_CALLS && before_total <= MAX_TOTAL_TEST_CALLS {
                self.error(
                    &format!("{at}/calls"),
                    format!(
                        "the inline tests together may make at most {MAX_TOTAL_TEST_CALLS} calls; with this test's {calls} they make {total_calls}"
                    ),
                );
            }
            let definition_changed = match map.get("definition_changed") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    self.error(
                        &format!("{at}/definition_changed"),
                        format!("expected true or false, got {}", show(other)),
                    );
                    false
                }
            };
            if self.errors.len() == before {
                out.push(PolicyTest {
                    tool,
                    args,
                    expect,
                    rule,
                    grant,
                    calls,
                    definition_changed,
                    pointer: at,
                });
            }
        }
        out
    }
}

const OPS: &str = "\"eq\", \"neq\", \"lt\", \"lte\", \"gt\", \"gte\", \"in\", \"not_in\", \"exists\", \"regex\", \"contains\", \"secret\", \"pii\"";

/// The kinds a `results` rule names.
const KINDS: &str = "\"secrets\", \"email\", \"phone\", \"card\", \"iban\", \"ssn\", \"ip\"";

/// The kinds a `pii` predicate names.
const PII_KINDS: &str = "\"email\", \"phone\", \"card\", \"iban\", \"ssn\", \"ip\"";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        load_str(text)
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_example_loads() {
        let p = load_str(r#"{"version":"1","default":"deny","tools":{"create_agent_checkout_session":{"limits":[{"counter":"create_agent_checkout_session_rate","window":"minute","max":30,"scope":"grant"}]}}}"#).unwrap();
        let rule = &p.policy.tools["create_agent_checkout_session"];
        assert_eq!(rule.limits[0].window_secs, 60);
        assert_eq!(rule.limits[0].max, 30);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn window_error_names_the_field() {
        let e = errors(
            r#"{"version":"1","default":"deny","tools":{"refund":{"limits":[{"counter":"c","window":"fortnight","max":3}]}}}"#,
        );
        assert_eq!(
            e,
            vec![
                r#"/tools/refund/limits/0/window: expected "second", "minute", "hour", "day" or a whole number of seconds, got "fortnight""#
            ]
        );
    }

    #[test]
    fn approval_timeout_is_bounded() {
        let e = errors(
            r#"{"version":"1","default":"deny","tools":{"r":{"action":"require_approval","approval":{"timeout":"31d"}},"s":{"action":"require_approval","approval":{"timeout":0}}}}"#,
        );
        assert_eq!(
            e,
            vec![
                r#"/tools/r/approval/timeout: expected a duration from 1s to 30d, got "31d""#,
                r#"/tools/s/approval/timeout: expected a duration such as "10m", "1h" or a whole number of seconds, got 0"#,
            ]
        );
    }

    #[test]
    fn who_is_asked_and_session_scope() {
        let p = load_str(r#"{"version":"1","default":"deny","tools":{"r":{"action":"require_approval","approval":{"ask":"client","session_scope":true,"timeout":"2m"}}}}"#).unwrap();
        let spec = &p.policy.tools["r"].approval;
        assert_eq!(
            (spec.ask, spec.session_scope, spec.timeout_secs),
            (crate::Ask::Client, true, 120)
        );
        let e = errors(
            r#"{"version":"1","default":"deny","tools":{"r":{"action":"require_approval","approval":{"ask":"user"}},"s":{"action":"require_approval","approval":{"session_scope":true}}}}"#,
        );
        assert_eq!(
            e,
            vec![
                r#"/tools/r/approval/ask: expected "operators" (CLI, API, dashboard; the default), "client" (the person at the agent's client, through elicitation) or "client_or_operators", got "user""#,
                r#"/tools/s/approval/session_scope: only the client can allow a tool for its session: set `ask` to "client" or "client_or_operators""#,
            ]
        );
    }

    #[test]
    fn every_error_at_once() {
        let e = errors(
            r#"{"version":"2","default":"maybe","tools":{"a":{"acton":"deny"},"b":{"require":[{"path":"amount","op":"gt","value":"x"}]}}}"#,
        );
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e.iter().any(|m| m.contains("did you mean `action`")));
    }

    #[test]
    fn pointer_escaping() {
        let e = errors(r#"{"version":"1","default":"deny","tools":{"a/b~c":{"action":"nope"}}}"#);
        assert_eq!(e[0].split(':').next().unwrap(), "/tools/a~1b~0c/action");
    }

    #[test]
    fn conflicting_counter() {
        let e = errors(
            r#"{"version":"1","default":"allow","tools":{"a":{"limits":[{"counter":"c","window":"minute","max":3}]},"b":{"limits":[{"counter":"c","window":"hour","max":3}]}}}"#,
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("limits that share a counter must agree"),
            "{e:?}"
        );
    }

    #[test]
    fn same_counter_other_scope_is_fine() {
        load_str(r#"{"version":"1","default":"allow","tools":{"a":{"limits":[{"counter":"c","window":"minute","max":3}]},"b":{"limits":[{"counter":"c","window":"hour","max":3,"scope":"global"}]}}}"#).unwrap();
    }

    #[test]
    fn hidden_rule_warns() {
        let l =
            load_str(r#"{"version":"1","default":"deny","hide":["x"],"tools":{"x":{}}}"#).unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].pointer, "/tools/x");
    }

    #[test]
    fn json_syntax_error() {
        let e = errors("{\"version\": \"1\",\n \"default\": }");
        assert!(
            e[0].starts_with("(document): not valid JSON at line 2 column"),
            "{e:?}"
        );
    }

    #[test]
    fn inline_tests_are_capped_in_number_and_in_calls() {
        let test = r#"{"tool":"t","expect":"deny"}"#;
        let many = vec![test; MAX_TESTS + 1].join(",");
        let e = errors(&format!(
            r#"{{"version":"1","default":"deny","tests":[{many}]}}"#
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/tests: 501 tests: a document may have at most 500"),
            "{e:?}"
        );

        let heavy = r#"{"tool":"t","expect":"deny","calls":60000}"#;
        let e = errors(&format!(
            r#"{{"version":"1","default":"deny","tests":[{heavy},{heavy},{heavy}]}}"#
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/tests/1/calls: the inline tests together may make at most 100000 calls; with this test's 60000 they make 120000"),
            "{e:?}"
        );

        let e = errors(
            r#"{"version":"1","default":"deny","tests":[{"tool":"t","expect":"deny","calls":100001}]}"#,
        );
        assert!(
            e[0].starts_with("/tests/0/calls: expected a whole number from 1 to 100000"),
            "{e:?}"
        );
        load_str(r#"{"version":"1","default":"deny","tests":[{"tool":"t","expect":"deny","calls":100000}]}"#).unwrap();
    }
}
