//! The compiled policy: what [`crate::load`] produces and [`crate::evaluate`] reads.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Number, Value};
use toolgate_detect::{Class, KindSet};

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
    /// Any string under the path looks like a credential (`toolgate_detect::secret`).
    Secret,
    /// Any string under the path holds personal data of one of these classes (card
    /// numbers written as JSON numbers count too).
    Pii(KindSet),
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
            Op::Secret => "secret",
            Op::Pii(_) => "pii",
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
    /// The tool's own `validate_arguments`, if given: `(on, pointer)`.
    pub validate_arguments: Option<(bool, String)>,
    /// The rules for this tool's results: its `results` block merged over
    /// `all_tools.results` (see [`ResultRules`]); `None` when neither is given.
    pub results: Option<ResultRules>,
}

/// What `on_injection` does with a result whose text addresses the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInjection {
    /// Nothing: the result is not scanned (the default).
    #[default]
    Allow,
    /// Record what was found; the result passes unchanged.
    Flag,
    /// Cut the offending spans out of the text.
    Strip,
    /// Withhold the result (an `isError` denial instead).
    Deny,
}

impl OnInjection {
    /// The name in policy documents.
    pub fn as_str(self) -> &'static str {
        match self {
            OnInjection::Allow => "allow",
            OnInjection::Flag => "flag",
            OnInjection::Strip => "strip",
            OnInjection::Deny => "deny",
        }
    }
}

/// One `results.deny_if` entry: a class whose presence withholds the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultDeny {
    /// What must not come back.
    pub class: Class,
    /// Its JSON Pointer (`/tools/T/results/deny_if/0`): the rule of the denial.
    pub pointer: String,
}

/// The rules applied to a tool's results, after merging: a tool's `results` block
/// replaces `all_tools.results` key by key (a tool that gives `redact` replaces the
/// shared `redact` list and keeps the shared `deny_if` and `on_injection` unless it gives
/// those too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultRules {
    /// Classes replaced by `[redacted:KIND]` in the result's text.
    pub redact: KindSet,
    /// Classes that withhold the whole result, in document order.
    pub deny_if: Vec<ResultDeny>,
    /// What to do with injected instructions.
    pub on_injection: OnInjection,
    /// JSON Pointer of the `on_injection` in force (the rule of an injection denial);
    /// empty when it is the default.
    pub on_injection_pointer: String,
}

impl ResultRules {
    /// True when these rules never change or withhold a result.
    pub fn is_noop(&self) -> bool {
        self.redact.is_empty() && self.deny_if.is_empty() && self.on_injection == OnInjection::Allow
    }

    /// The classes any rule looks for.
    pub fn classes(&self) -> KindSet {
        self.deny_if
            .iter()
            .fold(self.redact, |set, d| set.with(d.class))
    }

    /// `over` (a tool's block) key by key over `self` (`all_tools`'): each key the tool
    /// gives replaces the shared one.
    pub fn merged(&self, over: &PartialResultRules) -> ResultRules {
        ResultRules {
            redact: over.redact.unwrap_or(self.redact),
            deny_if: over.deny_if.clone().unwrap_or_else(|| self.deny_if.clone()),
            on_injection: over
                .on_injection
                .as_ref()
                .map_or(self.on_injection, |(o, _)| *o),
            on_injection_pointer: over
                .on_injection
                .as_ref()
                .map_or_else(|| self.on_injection_pointer.clone(), |(_, p)| p.clone()),
        }
    }
}

/// A `results` block as written: each key optional, merged by [`ResultRules::merged`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialResultRules {
    /// `redact`, if given.
    pub redact: Option<KindSet>,
    /// `deny_if`, if given.
    pub deny_if: Option<Vec<ResultDeny>>,
    /// `on_injection` and its pointer, if given.
    pub on_injection: Option<(OnInjection, String)>,
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
    /// The top-level `validate_arguments`, if given: `(on, pointer)`.
    pub validate_arguments: Option<(bool, String)>,
    /// `all_tools.results`: the result rules of tools not listed (listed tools carry
    /// theirs merged in [`ToolRule::results`]).
    pub all_results: Option<ResultRules>,
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

    /// When the call's arguments must be checked against the `inputSchema` of the tool's
    /// pinned definition: `Some(pointer)` of the rule that asks for it (the tool's
    /// `/tools/T/validate_arguments`, else the top-level `/validate_arguments`), the rule
    /// to name when they do not validate. A tool's own setting wins, `false` included.
    pub fn validate_arguments_for(&self, tool: &str) -> Option<&str> {
        let own = self
            .tools
            .get(tool)
            .and_then(|r| r.validate_arguments.as_ref());
        match own.or(self.validate_arguments.as_ref()) {
            Some((true, pointer)) => Some(pointer),
            _ => None,
        }
    }

    /// The rules for `tool`'s results: its own `results` merged over `all_tools.results`
    /// (key by key, the tool's win), or `all_tools.results` for a tool not listed. `None`
    /// when no rule applies: the gateway relays the result untouched.
    pub fn results_rules(&self, tool: &str) -> Option<&ResultRules> {
        let rules = match self.tools.get(tool) {
            Some(rule) => rule.results.as_ref(),
            None => self.all_results.as_ref(),
        };
        rules.filter(|r| !r.is_noop())
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
