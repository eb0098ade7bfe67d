//! The compiled policy: what [`crate::load`] produces and [`crate::evaluate`] reads.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Number, Value};

/// What happens to a tool that `tools` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Unlisted tools are allowed (subject to `all_tools` limits).
    Allow,
    /// Unlisted tools are denied by `(default deny)`.
    Deny,
}

/// A tool's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward the call (after the rules pass).
    Allow,
    /// Never forward.
    Deny,
    /// Hold the call until a person approves it.
    RequireApproval,
}

/// Whose calls share one count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One count per grant (the default).
    Grant,
    /// One count per identity (who holds the grant).
    Identity,
    /// One count per MCP session.
    Session,
    /// One count per upstream server.
    Server,
    /// One count for everyone.
    Global,
}

impl Scope {
    /// The name used in policy documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Grant => "grant",
            Scope::Identity => "identity",
            Scope::Session => "session",
            Scope::Server => "server",
            Scope::Global => "global",
        }
    }
}

/// A path into the call's arguments: `args.a.b` is `["a", "b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgPath {
    /// The text as written (`args.amount`).
    pub text: String,
    /// The segments after `args.`.
    pub segments: Vec<String>,
}

impl ArgPath {
    /// Looks the path up in an arguments object. Numeric segments index arrays.
    pub fn lookup<'v>(&self, args: &'v Value) -> Option<&'v Value> {
        let mut cur = args;
        for seg in &self.segments {
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// A predicate's operator with its checked value.
#[derive(Debug, Clone)]
pub enum Op {
    /// Equal (numbers compared by exact value: `1e3` equals `1000`, integers of any size
    /// are compared digit for digit).
    Eq(Value),
    /// Not equal.
    Neq(Value),
    /// Less than a number (compared exactly, as written; never rounded through `f64`).
    Lt(Number),
    /// Less than or equal to a number.
    Lte(Number),
    /// Greater than a number.
    Gt(Number),
    /// Greater than or equal to a number.
    Gte(Number),
    /// One of the listed values.
    In(Vec<Value>),
    /// None of the listed values.
    NotIn(Vec<Value>),
    /// The path exists (`true`) or does not (`false`).
    Exists(bool),
    /// A string matching the regex (compiled once, at load).
    Regex(Regex),
    /// A string containing a substring, or an array containing a value.
    Contains(Value),
}

impl Op {
    /// The operator's name in policy documents.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "eq",
            Op::Neq(_) => "neq",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Exists(_) => "exists",
            Op::Regex(_) => "regex",
            Op::Contains(_) => "contains",
        }
    }
}

/// One `{"path", "op", "value"}` check.
#[derive(Debug, Clone)]
pub struct Predicate {
    /// Where in the arguments.
    pub path: ArgPath,
    /// What to check.
    pub op: Op,
    /// JSON Pointer of this predicate in the document.
    pub pointer: String,
}

/// One rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The counter's name; limits with the same name and scope share one count.
    pub counter: String,
    /// The sliding window, in seconds.
    pub window_secs: u64,
    /// Never more than this in any span of `window_secs`.
    pub max: u64,
    /// Whose calls share the count.
    pub scope: Scope,
    /// Count by this numeric argument instead of by call.
    pub increment_from: Option<ArgPath>,
    /// JSON Pointer of this limit in the document.
    pub pointer: String,
}

/// Who is asked to approve a held call (`approval.ask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ask {
    /// The operators: CLI, admin API, dashboard, webhook (the default).
    #[default]
    Operators,
    /// The person using the agent's client, through the client (elicitation).
    Client,
    /// Both; the first answer wins.
    ClientOrOperators,
}

impl Ask {
    /// The value in policy documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Ask::Operators => "operators",
            Ask::Client => "client",
            Ask::ClientOrOperators => "client_or_operators",
        }
    }

    /// True when the client is asked.
    pub fn asks_client(self) -> bool {
        self != Ask::Operators
    }
}

/// Settings of `"action": "require_approval"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// How long a held call waits, in seconds (default 600).
    pub timeout_secs: u64,
    /// How many distinct approvers are needed (default 1; the client's answer counts as
    /// all of them).
    pub approvers: u32,
    /// Who is asked.
    pub ask: Ask,
    /// The client may answer "allow this tool for this session" (`session_scope`).
    pub session_scope: bool,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            timeout_secs: 600,
            approvers: 1,
            ask: Ask::Operators,
            session_scope: false,
        }
    }
}

/// The rules of one listed tool.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// The tool's `action`.
    pub action: Action,
    /// `reason` or `on_deny`: the message the agent sees when this tool's rules deny.
    pub message: Option<String>,
    /// All must hold.
    pub require: Vec<Predicate>,
    /// Any match denies.
    pub deny_if: Vec<Predicate>,
    /// The tool's own limits.
    pub limits: Vec<Limit>,
    /// Approval settings, when `action` is `require_approval`.
    pub approval: ApprovalSpec,
    /// JSON Pointer of the tool in the document (`/tools/name`).
    pub pointer: String,
}

/// A hide entry: an exact name, or a pattern with `*`.
#[derive(Debug, Clone)]
pub enum HideEntry {
    /// Hides exactly this tool, listed or not.
    Exact(String),
    /// Hides every tool matching it that `tools` does not list (`*` alone hides all unlisted tools).
    Pattern(Regex),
}

/// A test case from the document's `tests`.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    /// The tool called.
    pub tool: String,
    /// Its arguments.
    pub args: Value,
    /// The expected outcome.
    pub expect: Expect,
    /// The expected rule (a pointer or label), if given.
    pub rule: Option<String>,
    /// The grant label to call as (default `test`).
    pub grant: String,
    /// How many calls in a row; the expectation is about the last one (default 1).
    pub calls: u32,
    /// Treat the tool's pinned definition as changed.
    pub definition_changed: bool,
    /// JSON Pointer of the test.
    pub pointer: String,
}

/// What a test expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Forwarded.
    Allow,
    /// Denied (any denial other than hidden).
    Deny,
    /// Hidden: answered as an unknown tool.
    Hidden,
    /// Held for approval.
    RequireApproval,
}

impl Expect {
    /// The name used in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Hidden => "hidden",
            Expect::RequireApproval => "require_approval",
        }
    }
}

/// A validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document's `version` (always `"1"`).
    pub version: String,
    /// For tools not listed.
    pub default: DefaultAction,
    /// `hide` entries.
    pub hide: Vec<HideEntry>,
    /// `all_tools.limits`: taken by every call that reaches the limit stage.
    pub all_limits: Vec<Limit>,
    /// `tools`, by name.
    pub tools: HashMap<String, ToolRule>,
    /// Inline `tests`.
    pub tests: Vec<PolicyTest>,
}

impl Policy {
    /// True when `tool` is hidden by this policy.
    pub fn is_hidden(&self, tool: &str) -> bool {
        self.hide.iter().any(|h| match h {
            HideEntry::Exact(n) => n == tool,
            HideEntry::Pattern(re) => !self.tools.contains_key(tool) && re.is_match(tool),
        })
    }

    /// True when judging `tool` may read argument values (a `require` or `deny_if`
    /// predicate, or an `increment_from` limit, that evaluation would reach). A replay of
    /// records that kept only argument keys cannot decide such a call.
    pub fn needs_argument_values(&self, tool: &str) -> bool {
        if self.is_hidden(tool) {
            return false;
        }
        let rule = self.tools.get(tool);
        if rule.is_none() && self.default == DefaultAction::Deny {
            return false;
        }
        if rule.is_some_and(|r| r.action == Action::Deny) {
            return false;
        }
        let own = rule.map_or(&[][..], |r| &r.limits[..]);
        rule.is_some_and(|r| !r.require.is_empty() || !r.deny_if.is_empty())
            || own
                .iter()
                .chain(self.all_limits.iter())
                .any(|l| l.increment_from.is_some())
    }

    /// True when an agent should see `tool` in `tools/list`: not hidden and not denied
    /// whatever its arguments (`default: deny` and unlisted, or `action: deny`).
    pub fn is_visible(&self, tool: &str) -> bool {
        if self.is_hidden(tool) {
            return false;
        }
        match self.tools.get(tool) {
            Some(rule) => rule.action != Action::Deny,
            None => self.default == DefaultAction::Allow,
        }
    }
}
