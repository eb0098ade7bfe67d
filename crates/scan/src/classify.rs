//! One tool's category, severity, confidence and signals.
//!
//! The category comes from the name's verbs and nouns first, then the description's,
//! then the input schema and the MCP annotations. When they disagree the more dangerous
//! category wins with a lower confidence: a dangerous tool is never called Read.

use serde::Serialize;

use crate::attack;
use crate::tool::ToolDef;
use crate::words::{split_name, text_words};

/// What a tool does, from least to most dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// Reads, lists, searches: no side effects.
    Read,
    /// Creates, updates, sends.
    Write,
    /// Runs code, commands, queries or browser actions.
    Execute,
    /// Moves money or creates payment objects.
    Financial,
    /// Deletes, drops, revokes, cancels.
    Destructive,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 5] = [
        Category::Read,
        Category::Write,
        Category::Execute,
        Category::Financial,
        Category::Destructive,
    ];

    /// The category's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "Read",
            Category::Write => "Write",
            Category::Execute => "Execute",
            Category::Financial => "Financial",
            Category::Destructive => "Destructive",
        }
    }

    /// The severity a category starts at.
    pub fn base_severity(self) -> Severity {
        match self {
            Category::Read => Severity::Low,
            Category::Write => Severity::Medium,
            Category::Execute => Severity::High,
            Category::Financial | Category::Destructive => Severity::Critical,
        }
    }
}

/// How bad misuse would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    /// Little harm.
    Low,
    /// Changes data.
    Medium,
    /// Runs things.
    High,
    /// Money, deletion, or an attack.
    Critical,
}

impl Severity {
    /// The severity's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

/// One reason behind a conclusion: a stable id and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Stable id (`param-count-high`).
    pub id: &'static str,
    /// The sentence (`High parameter count (13 properties)`).
    pub message: String,
}

impl Signal {
    /// A signal.
    pub fn new(id: &'static str, message: String) -> Self {
        Signal { id, message }
    }

    /// True for tool-poisoning signals.
    pub fn is_attack(&self) -> bool {
        ATTACK_IDS.contains(&self.id)
    }
}

/// The ids of attack signals.
pub const ATTACK_IDS: &[&str] = &[
    "hidden-instructions",
    "secret-access",
    "exfiltration",
    "tool-shadowing",
    "context-harvesting",
    "invisible-characters",
    "ansi-escape",
    "hidden-padding",
];

/// The classifier's conclusion for one tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub category: Category,
    /// How bad misuse would be.
    pub severity: Severity,
    /// 0 to 1.
    pub confidence: f64,
    /// Why: attack signals first.
    pub signals: Vec<Signal>,
}

const DESTRUCTIVE: &[&str] = &[
    "delete",
    "remove",
    "drop",
    "destroy",
    "purge",
    "truncate",
    "revoke",
    "kill",
    "terminate",
    "wipe",
    "erase",
    "unlink",
    "rm",
    "rmdir",
    "cancel",
    "void",
    "uninstall",
    "deprovision",
    "teardown",
    "evict",
    "ban",
    "disable",
    "reset",
    "clear",
    "forget",
    "unpublish",
    "detach",
    "deregister",
    "unregister",
    "unsubscribe",
    "close",
    "archive",
];
const FINANCIAL_NOUNS: &[&str] = &[
    "payment",
    "payments",
    "pay",
    "refund",
    "refunds",
    "charge",
    "charges",
    "invoice",
    "invoices",
    "payout",
    "payouts",
    "transfer",
    "transfers",
    "checkout",
    "subscription",
    "subscriptions",
    "price",
    "prices",
    "coupon",
    "coupons",
    "dispute",
    "disputes",
    "order",
    "orders",
    "billing",
    "purchase",
    "capture",
    "funds",
    "money",
    "wallet",
    "tip",
    "donation",
    "paymentintent",
    "paymentlink",
    "cost",
];
const FINANCIAL_VERBS: &[&str] = &[
    "pay",
    "refund",
    "charge",
    "capture",
    "payout",
    "purchase",
    "buy",
    "transfer",
    "finalize",
    "bill",
    "confirm",
    "authorize",
    "send",
    "create",
    "update",
    "void",
    "accept",
    "remind",
];
const EXECUTE: &[&str] = &[
    "run",
    "execute",
    "exec",
    "eval",
    "evaluate",
    "invoke",
    "trigger",
    "deploy",
    "shell",
    "command",
    "script",
    "spawn",
    "click",
    "navigate",
    "type",
    "fill",
    "hover",
    "press",
    "drag",
    "select",
    "submit",
    "upload",
    "apply",
    "scale",
    "rollout",
    "restart",
    "start",
    "stop",
    "interact",
    "query",
    "sql",
    "migration",
    "migrate",
    "install",
    "build",
    "upgrade",
    "forward",
    "exec",
    "handle",
];
const WRITE: &[&str] = &[
    "create",
    "add",
    "update",
    "set",
    "edit",
    "write",
    "send",
    "post",
    "put",
    "insert",
    "upsert",
    "move",
    "rename",
    "comment",
    "push",
    "merge",
    "commit",
    "label",
    "assign",
    "save",
    "publish",
    "reply",
    "fork",
    "invite",
    "modify",
    "patch",
    "change",
    "mark",
    "append",
    "upload",
    "copy",
    "tag",
    "branch",
    "star",
    "draft",
    "schedule",
    "reschedule",
    "enable",
    "register",
    "subscribe",
    "store",
    "record",
    "notify",
    "share",
    "open",
    "review",
    "approve",
    "dismiss",
    "lock",
    "unlock",
    "import",
    "init",
    "make",
    "new",
    "generate",
    "resize",
    "mkdir",
    "stage",
    "checkout",
    "transition",
    "assign",
    "attach",
    "link",
    "react",
    "pin",
];
const READ: &[&str] = &[
    "get",
    "list",
    "search",
    "find",
    "read",
    "fetch",
    "describe",
    "show",
    "view",
    "count",
    "check",
    "lookup",
    "inspect",
    "status",
    "diff",
    "log",
    "logs",
    "retrieve",
    "query",
    "info",
    "browse",
    "explain",
    "download",
    "summarize",
    "analyze",
    "verify",
    "validate",
    "preview",
    "current",
    "tree",
    "stat",
    "exists",
    "snapshot",
    "screenshot",
    "export",
    "resolve",
    "geocode",
    "directions",
    "distance",
    "autocomplete",
    "convert",
    "whoami",
    "me",
    "who",
];
const CODE_PARAMS: &[&str] = &[
    "command",
    "cmd",
    "script",
    "code",
    "sql",
    "expression",
    "function",
    "shell",
    "program",
    "statement",
];
/// Verbs that, in a description's first sentence, mean the tool runs something.
const DESC_EXECUTE: &[&str] = &[
    "run",
    "runs",
    "execute",
    "executes",
    "exec",
    "eval",
    "evaluate",
    "evaluates",
    "invoke",
    "invokes",
    "trigger",
    "triggers",
    "deploy",
    "deploys",
    "shell",
    "command",
    "script",
];
const MONEY_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "price",
    "unit_amount",
    "total",
    "payment_method",
    "amount_cents",
];

fn has(words: &[String], set: &[&str]) -> bool {
    words.iter().any(|w| set.contains(&w.as_str()))
}

/// Classifies one tool. `siblings` are the other tools of the same server.
pub fn classify(tool: &ToolDef, siblings: &[ToolDef]) -> Assessment {
    let name_words = split_name(&tool.name);
    let desc = tool.description.to_lowercase();
    let first_sentence: String = desc
        .split(['.', '\n'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or("")
        .to_string();
    let desc_words = text_words(&first_sentence);
    let props = tool.properties();
    let prop_names: Vec<String> = tool
        .input_schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|m| m.keys().map(|k| k.to_lowercase()).collect())
        .unwrap_or_default();
    let mut signals: Vec<Signal> = vec![];
    let mut confidence: f64 = 0.9;

    // Verbs and nouns of the name decide first.
    let verb = name_words.iter().find(|w| {
        let w = w.as_str();
        DESTRUCTIVE.contains(&w)
            || EXECUTE.contains(&w)
            || WRITE.contains(&w)
            || READ.contains(&w)
            || FINANCIAL_VERBS.contains(&w)
    });
    let financial_noun = has(&name_words, FINANCIAL_NOUNS);
    let mut category = Category::Read;
    let mut decided = false;
    if has(&name_words, DESTRUCTIVE) && !has(&name_words, &["clear_thought"]) {
        category = Category::Destructive;
        signals.push(Signal::new(
            "name-destructive",
            format!("Name `{}` says it deletes or cancels", tool.name),
        ));
        decided = true;
    } else if financial_noun
        && (has(&name_words, FINANCIAL_VERBS)
            || name_words
                .iter()
                .any(|w| FINANCIAL_VERBS.contains(&w.as_str()) || w == "payout" || w == "refund"))
    {
        category = Category::Financial;
        signals.push(Signal::new(
            "name-financial",
            format!(
                "Name `{}` moves money or creates a payment object",
                tool.name
            ),
        ));
        decided = true;
    } else if has(
        &name_words,
        &["refund", "payout", "charge", "pay", "purchase"],
    ) {
        category = Category::Financial;
        signals.push(Signal::new(
            "name-financial",
            format!("Name `{}` moves money", tool.name),
        ));
        decided = true;
    } else if let Some(v) = verb {
        let v = v.as_str();
        if EXECUTE.contains(&v) && !(READ.contains(&v) && v != "query") {
            category = Category::Execute;
            signals.push(Signal::new(
                "name-execute",
                format!("Name verb `{v}` runs something"),
            ));
        } else if WRITE.contains(&v) {
            category = Category::Write;
            signals.push(Signal::new(
                "name-write",
                format!("Name verb `{v}` changes data"),
            ));
        } else {
            category = Category::Read;
            signals.push(Signal::new("name-read", format!("Name verb `{v}` reads")));
        }
        decided = true;
    }
    let browser = has(&name_words, &["browser", "puppeteer", "playwright", "page"]);
    if browser && decided && category == Category::Write {
        category = Category::Execute;
        signals.push(Signal::new(
            "browser-action",
            "Acts in a browser (clicks, types, navigates)".into(),
        ));
    }
    if !decided {
        confidence = 0.6;
        // The description's first sentence, then the schema.
        if has(&desc_words, DESTRUCTIVE) {
            category = Category::Destructive;
            signals.push(Signal::new(
                "description-destructive",
                "Description says it deletes or cancels".into(),
            ));
        } else if has(&desc_words, DESC_EXECUTE) {
            category = Category::Execute;
            signals.push(Signal::new(
                "description-execute",
                "Description says it runs something".into(),
            ));
        } else if has(&desc_words, WRITE) {
            category = Category::Write;
            signals.push(Signal::new(
                "description-write",
                "Description says it changes data".into(),
            ));
        } else if has(&desc_words, READ) || tool.hint("readOnlyHint") == Some(true) {
            signals.push(Signal::new(
                "description-read",
                "Description says it reads".into(),
            ));
        } else {
            // In doubt, the higher category with a lower confidence: never Read.
            category = Category::Write;
            signals.push(Signal::new(
                "no-verb",
                format!(
                    "No known verb in `{}` or its description: assumed to change data",
                    tool.name
                ),
            ));
            confidence = 0.4;
        }
    }
    // The schema: code and money parameters raise the category.
    // A `query` is code when it is SQL; otherwise it is a search string.
    let code_param = prop_names
        .iter()
        .find(|p| CODE_PARAMS.contains(&p.as_str()))
        .or_else(|| {
            props
                .iter()
                .find(|(k, d)| {
                    k == "query" && (d.to_lowercase().contains("sql") || desc.contains("sql"))
                })
                .map(|(k, _)| k)
        });
    if let Some(p) = code_param {
        signals.push(Signal::new(
            "param-code",
            format!("Takes free-form code or a query (`{p}`)"),
        ));
        if category < Category::Execute {
            category = Category::Execute;
            confidence = confidence.min(0.7);
        }
    }
    let money_param = prop_names
        .iter()
        .find(|p| MONEY_PARAMS.contains(&p.as_str()) || p.contains("cost"));
    if let Some(p) = money_param {
        signals.push(Signal::new(
            "param-money",
            format!("Takes an amount of money (`{p}`)"),
        ));
        if category == Category::Write || (category == Category::Execute && financial_noun) {
            category = Category::Financial;
            confidence = confidence.min(0.7);
        }
    }
    // A mode parameter (`method`, `action`, `operation`) whose values include deleting.
    let deleting_mode = tool
        .input_schema
        .get("properties")
        .and_then(|p| p.as_object())
        .and_then(|m| {
            m.iter().find_map(|(k, v)| {
                let values = v.get("enum")?.as_array()?;
                values
                    .iter()
                    .filter_map(|x| x.as_str())
                    .find(|x| {
                        split_name(x)
                            .iter()
                            .any(|w| DESTRUCTIVE.contains(&w.as_str()))
                    })
                    .map(|x| format!("{k} = {x}"))
            })
        });
    if let Some(mode) = deleting_mode {
        signals.push(Signal::new(
            "param-destructive-mode",
            format!("Has a deleting mode (`{mode}`)"),
        ));
        if category < Category::Destructive {
            category = Category::Destructive;
            confidence = confidence.min(0.7);
        }
    }
    if category == Category::Write && (desc.contains("overwrite") || desc.contains("overwriting")) {
        signals.push(Signal::new(
            "description-overwrites",
            "Description says it overwrites existing data".into(),
        ));
        category = Category::Destructive;
        confidence = confidence.min(0.7);
    }
    if prop_names.iter().any(|p| {
        [
            "to",
            "recipient",
            "recipients",
            "cc",
            "bcc",
            "email",
            "phone",
        ]
        .contains(&p.as_str())
    }) && category >= Category::Write
    {
        signals.push(Signal::new(
            "param-recipient",
            "Sends to a recipient it is given".into(),
        ));
    }
    if prop_names.iter().any(|p| p == "url" || p.ends_with("_url")) {
        signals.push(Signal::new(
            "param-url",
            "Takes a URL (reaches the network)".into(),
        ));
    }
    if prop_names
        .iter()
        .any(|p| p == "path" || p.ends_with("_path") || p == "paths")
    {
        signals.push(Signal::new("param-path", "Takes a file path".into()));
    }
    let n = tool.property_count();
    if n >= 10 {
        signals.push(Signal::new(
            "param-count-high",
            format!("High parameter count ({n} properties)"),
        ));
    }
    let free_strings = props
        .iter()
        .filter(|(k, _)| k.contains("description") || k == "body" || k == "content" || k == "text")
        .count();
    if free_strings > 0 && category >= Category::Write {
        signals.push(Signal::new(
            "param-free-text",
            "Takes free-form text that reaches other people or systems".into(),
        ));
    }
    // Annotations, and where they disagree with the name.
    let read_only = tool.hint("readOnlyHint");
    let destructive = tool.hint("destructiveHint");
    if read_only == Some(true) && category > Category::Read && decided {
        signals.push(Signal::new(
            "annotation-disagrees",
            format!(
                "Declares readOnlyHint but its name says {}",
                category.as_str()
            ),
        ));
        confidence = confidence.min(0.6);
    }
    if read_only == Some(false) && category == Category::Read && decided {
        signals.push(Signal::new(
            "annotation-disagrees",
            "Declares it is not read-only, but its name reads".into(),
        ));
        category = Category::Write;
        confidence = 0.55;
    }
    if destructive == Some(true) && read_only != Some(true) {
        signals.push(Signal::new(
            "annotation-destructive",
            "Declares destructiveHint".into(),
        ));
        if category == Category::Read {
            category = Category::Write;
            confidence = 0.55;
        }
    }
    if !decided && read_only == Some(true) && category == Category::Read {
        confidence = 0.8;
    }
    if tool.hint("openWorldHint") == Some(true) {
        signals.push(Signal::new(
            "open-world",
            "Declares openWorldHint: reaches outside systems".into(),
        ));
    }
    // Siblings: a tool named like a sibling's opposite (e.g. `get_x` beside `delete_x`) keeps its own verb.
    let _ = siblings;

    let mut severity = category.base_severity();
    if signals.iter().any(|s| s.id == "annotation-disagrees")
        || (n >= 10 && category >= Category::Write)
    {
        severity = severity.raised();
    }
    let attacks = attack::signals(tool);
    if !attacks.is_empty() {
        severity = Severity::Critical;
    }
    let mut all = attacks;
    all.extend(signals);
    Assessment {
        name: tool.name.clone(),
        category,
        severity,
        confidence: (confidence * 100.0).round() / 100.0,
        signals: all,
    }
}
