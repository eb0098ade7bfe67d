//! One tool's category, severity, confidence and signals.
//!
//! The category comes from the verb of the name read with its object (`cancel` of a
//! subscription moves money, `cancel` of a build does not; `apply` of a manifest is a
//! write), then the description's lead when the name has no verb; then the schema (a
//! free-form code, query or command string; an amount that is paid; a mode parameter
//! whose values delete; a file written over), and the annotations where they settle an
//! ambiguity or disagree. Sibling tools of the same server tell a namespace prefix
//! (`pay_status`, `tmc_get_stack`) from a verb. When rules disagree the more dangerous
//! category wins with a lower confidence: a dangerous tool is never called Read.
//! Severity comes from what is touched ([`crate::severity`]).

use serde::Serialize;

use crate::attack;
use crate::severity;
use crate::tool::ToolDef;
use crate::words::{self, any_in, split_name, text_words, verb, Verb};

/// What a tool does, from least to most dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// Reads, lists, searches: no side effects.
    Read,
    /// Creates, updates, sends, applies declarative state.
    Write,
    /// Runs code, commands or query text the caller writes.
    Execute,
    /// Moves money or changes what someone is charged.
    Financial,
    /// Deletes, drops, revokes, overwrites irreversibly.
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

    /// The severity a category starts at before what is touched is considered.
    pub fn base_severity(self) -> Severity {
        match self {
            Category::Read => Severity::Low,
            Category::Write => Severity::Medium,
            Category::Execute | Category::Financial | Category::Destructive => Severity::High,
        }
    }
}

/// How bad misuse would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    /// Non-sensitive reads; trivial reversible changes.
    Low,
    /// Ordinary writes; sensitive single records, logs, local files; limited deletes.
    Medium,
    /// Destructive and financial actions, messages to people, bulk secrets or personal
    /// data, constrained execution, production changes.
    High,
    /// Arbitrary execution, credential or permission changes, unbounded deletion, attacks.
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
    "instruction-override",
    "tool-preference",
    "annotation-injection",
    "lookalike-name",
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

/// Parameter names that carry code, commands or query text.
const CODE_PARAMS: &[&str] = &[
    "command",
    "commands",
    "cmd",
    "script",
    "code",
    "sql",
    "shell",
    "program",
    "statement",
    "statements",
    "executable",
    "cypher",
    "hogql",
    "python",
    "javascript",
    "js",
];
/// Words in a `query` parameter's or tool's description that make the query code.
const QUERY_LANGUAGES: &[&str] = &[
    "sql",
    "select",
    "cypher",
    "hogql",
    "ddl",
    "dml",
    "sparql",
    "gremlin",
    "graphql",
    "aggregation",
    "pipeline",
    "mongo",
    "insert",
];
/// Parameter names that carry an amount of money.
const MONEY_PARAMS: &[&str] = &[
    "amount",
    "amount_sats",
    "amountsats",
    "unit_amount",
    "amount_cents",
    "amount_off",
    "max_charge",
    "price",
    "currency",
    "total",
    "payment_method",
    "sats",
    "value_usd",
];
/// Parameter names of a mode whose values are the operations a tool offers.
const MODE_PARAMS: &[&str] = &[
    "action",
    "method",
    "operation",
    "op",
    "mode",
    "subcommand",
    "sub_command",
    "command",
];
/// Parameter names that name who receives what is sent.
const RECIPIENT_PARAMS: &[&str] = &[
    "to",
    "recipient",
    "recipients",
    "cc",
    "bcc",
    "email",
    "phone",
    "phone_number",
    "channel",
    "channel_id",
    "chat_id",
    "additional_recipients",
    "primary_recipients",
];
/// Nouns whose creation starts a predefined run (a CI build, a workflow run).
const RUN_OBJECTS: &[&str] = &["build", "run", "workflow", "pipeline"];
/// Verbs that create or change (for billed objects and price lists).
const CREATE_VERBS: &[&str] = &["create", "add", "new", "make", "generate", "register"];

/// What the classifier reads of one tool, computed once.
pub(crate) struct Cx<'a> {
    pub(crate) tool: &'a ToolDef,
    /// Name words with a namespace shared by the server's tools removed.
    pub(crate) name: Vec<String>,
    /// The removed namespace, if any.
    pub(crate) namespace: Option<String>,
    /// Lowercase description.
    pub(crate) desc: String,
    /// Words of the description's first sentence.
    pub(crate) lead: Vec<String>,
    /// Top-level parameters: lowercase name and lowercase description.
    pub(crate) params: Vec<(String, String)>,
    /// Acts in a web page.
    pub(crate) browser: bool,
}

impl<'a> Cx<'a> {
    fn new(tool: &'a ToolDef, siblings: &[ToolDef]) -> Self {
        let mut name = split_name(&tool.name);
        let namespace = namespace(&name, siblings);
        if namespace.is_some() && name.len() > 1 {
            name.remove(0);
        }
        let desc = tool.description.to_lowercase();
        let first: String = desc
            .split(". ")
            .next()
            .unwrap_or("")
            .split('\n')
            .find(|s| !s.trim().is_empty())
            .unwrap_or("")
            .to_string();
        let lead = text_words(&first);
        let params: Vec<(String, String)> = tool
            .input_schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.to_lowercase(),
                            v.get("description")
                                .and_then(|d| d.as_str())
                                .unwrap_or("")
                                .to_lowercase(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let browserish = |n: &str| {
            let w = split_name(n);
            any_in(&w, &["browser", "puppeteer", "playwright", "page"])
        };
        let browser = browserish(&tool.name)
            || (siblings.len() >= 3
                && siblings.iter().filter(|s| browserish(&s.name)).count() * 2 >= siblings.len());
        Cx {
            tool,
            name,
            namespace,
            desc,
            lead,
            params,
            browser,
        }
    }

    /// True when a top-level parameter has one of these names.
    pub(crate) fn has_param(&self, names: &[&str]) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(k, _)| k.as_str())
    }
}

/// The first word shared by most of a server's tool names, when it is not a read verb:
/// `pay` in `pay_send`, `pay_status`; `tmc` in `tmc_get_stack`.
fn namespace(name: &[String], siblings: &[ToolDef]) -> Option<String> {
    let first = name.first()?;
    if siblings.len() < 4 || name.len() < 2 || verb(first) == Some(Verb::Read) {
        return None;
    }
    let shared = siblings
        .iter()
        .filter(|s| split_name(&s.name).first() == Some(first))
        .count();
    (shared * 4 >= siblings.len() * 3).then(|| first.clone())
}

/// A category with its signal and confidence.
struct Finding {
    category: Category,
    id: &'static str,
    message: String,
}

fn finding(category: Category, id: &'static str, message: String) -> Finding {
    Finding {
        category,
        id,
        message,
    }
}

/// The category one verb gives with the words around it (`objects`).
fn act(cx: &Cx, v: Verb, word: &str, objects: &[String]) -> Finding {
    let billed = any_in(objects, words::BILLED);
    let price_list = any_in(objects, words::PRICE_LIST);
    let money_param = cx.has_param(MONEY_PARAMS).is_some();
    let moneyish = any_in(objects, words::MONEY) || money_param;
    match v {
        Verb::Read => finding(Category::Read, "name-read", format!("`{word}` reads")),
        Verb::Navigate => finding(
            Category::Read,
            "browser-navigation",
            format!("`{word}` loads or moves within a page"),
        ),
        Verb::Input if cx.browser || word != "submit" => finding(
            Category::Write,
            "browser-input",
            format!("`{word}` acts on a page as the user would"),
        ),
        Verb::Input => finding(Category::Write, "name-write", format!("`{word}` sends")),
        Verb::Pay if word == "capture" && !billed => {
            finding(Category::Read, "name-read", format!("`{word}` of a page"))
        }
        Verb::Pay => finding(
            Category::Financial,
            "name-financial",
            format!("`{word}` moves money"),
        ),
        Verb::Cancel if billed || any_in(&cx.lead, words::BILLED) => finding(
            Category::Financial,
            "cancel-billed",
            format!("`{word}` of something billed changes what someone is charged"),
        ),
        Verb::Cancel => finding(
            Category::Write,
            "cancel-run",
            format!("`{word}` of something that is not billed: it can be started again"),
        ),
        Verb::Run => finding(
            Category::Execute,
            "name-execute",
            format!("`{word}` runs something"),
        ),
        Verb::Destroy if word == "reset" && cx.desc.contains("unstag") => finding(
            Category::Write,
            "name-write",
            "`reset` only unstages: the work is kept".into(),
        ),
        Verb::Destroy => finding(
            Category::Destructive,
            "name-destructive",
            format!("`{word}` deletes, revokes or ends something"),
        ),
        Verb::Write => {
            if (word == "transfer" || word == "send" || word == "exchange") && moneyish {
                return finding(
                    Category::Financial,
                    "name-financial",
                    format!("`{word}` of money"),
                );
            }
            if word == "send" && any_in(objects, &["reminder"]) {
                return finding(
                    Category::Write,
                    "name-write",
                    "a reminder is a message, not a charge".into(),
                );
            }
            if CREATE_VERBS.contains(&word) && price_list {
                return finding(
                    Category::Write,
                    "price-list",
                    format!("`{word}` of a price, coupon, plan or product: nobody is charged yet"),
                );
            }
            if billed {
                return finding(
                    Category::Financial,
                    "object-billed",
                    format!("`{word}` of a billed object (invoice, subscription, order, payment)"),
                );
            }
            if (CREATE_VERBS.contains(&word) || word == "start" || word == "queue")
                && any_in(objects, RUN_OBJECTS)
            {
                return finding(
                    Category::Execute,
                    "starts-run",
                    format!("`{word}` of a build or run starts a predefined job"),
                );
            }
            let declarative = [
                "apply", "install", "upgrade", "scale", "rollout", "deploy", "redeploy",
            ];
            if declarative.contains(&word) {
                return finding(
                    Category::Write,
                    "declarative-apply",
                    format!("`{word}` applies declarative state (a manifest, chart, template or release)"),
                );
            }
            finding(
                Category::Write,
                "name-write",
                format!("`{word}` changes data"),
            )
        }
    }
}

/// The verbs of a list of words: the first, and any joined to it by `and` / `or`.
fn verbs_of(ws: &[String]) -> Vec<(usize, Verb)> {
    let mut found: Vec<(usize, Verb)> = vec![];
    for (i, w) in ws.iter().enumerate() {
        let Some(v) = verb(w) else { continue };
        let joined = i >= 1
            && ws
                .get(i - 1)
                .is_some_and(|p| p == "and" || p == "or" || p == "then");
        if found.is_empty() || joined {
            found.push((i, v));
        } else if let [first] = found.as_mut_slice() {
            // `query-run`: the noun `query` and the verb `run`.
            if ws.get(first.0).is_some_and(|f| f == "query") && v != Verb::Read {
                *first = (i, v);
            }
        }
    }
    found
}

/// The most dangerous finding of a list of words read as a name.
fn read_words(cx: &Cx, ws: &[String], context: &[String], join: bool) -> Option<Finding> {
    let mut found = verbs_of(ws);
    if !join {
        found.truncate(1);
    }
    found
        .into_iter()
        .filter_map(|(i, v)| {
            let w = ws.get(i)?;
            // The verb's objects: the other words of the name, and the context.
            let objects: Vec<String> = ws
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.clone())
                .chain(context.iter().cloned())
                .collect();
            Some(act(cx, v, w, &objects))
        })
        .max_by_key(|f| f.category)
}

/// The operations a mode parameter offers (its enum, or `- op:` lines in the description
/// when the mode parameter has no enum).
fn modes(cx: &Cx) -> Vec<String> {
    let props = cx.tool.input_schema.get("properties");
    let mut out: Vec<String> = vec![];
    let mut mode_param = false;
    if let Some(m) = props.and_then(|p| p.as_object()) {
        for (k, v) in m {
            let k = k.to_lowercase();
            if !MODE_PARAMS.contains(&k.as_str()) {
                continue;
            }
            mode_param = true;
            if let Some(values) = v.get("enum").and_then(|e| e.as_array()) {
                out.extend(values.iter().filter_map(|x| x.as_str()).map(str::to_string));
            }
        }
    }
    if mode_param && out.is_empty() {
        for line in cx.tool.description.lines() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("- ") {
                if let Some((op, _)) = rest.split_once(':') {
                    if !op.is_empty()
                        && op.len() < 60
                        && op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        out.push(op.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Classifies one tool. `siblings` are the tools of the same server (itself included).
pub fn classify(tool: &ToolDef, siblings: &[ToolDef]) -> Assessment {
    let cx = Cx::new(tool, siblings);
    let mut signals: Vec<Signal> = vec![];
    let mut confidence: f64;

    // 1. The verb of the name, read with its object.
    let from_name = read_words(&cx, &cx.name, &[], true);
    let mut category = match from_name {
        Some(f) => {
            confidence = 0.9;
            let ns = cx
                .namespace
                .as_deref()
                .map(|n| format!(" (after the server's shared prefix `{n}`)"))
                .unwrap_or_default();
            signals.push(Signal::new(
                f.id,
                format!("Name `{}`{ns}: {}", tool.name, f.message),
            ));
            f.category
        }
        None => {
            // 2. The description's lead, then the annotations, then: assume a change.
            let lead: Vec<String> = cx.lead.iter().take(25).cloned().collect();
            match read_words(&cx, &lead, &cx.name, false) {
                Some(f) => {
                    confidence = 0.6;
                    signals.push(Signal::new(
                        description_id(f.category),
                        format!("Description: {}", f.message),
                    ));
                    f.category
                }
                None if tool.hint("readOnlyHint") == Some(true) => {
                    confidence = 0.7;
                    signals.push(Signal::new(
                        "annotation-read-only",
                        "No verb in the name or description; declares readOnlyHint".into(),
                    ));
                    Category::Read
                }
                None => {
                    confidence = 0.4;
                    signals.push(Signal::new(
                        "no-verb",
                        format!(
                            "No known verb in `{}` or its description: assumed to change data",
                            tool.name
                        ),
                    ));
                    Category::Write
                }
            }
        }
    };
    if category == Category::Write && from_name_is_strong(&signals) {
        if let Some((i, Verb::Destroy)) = verbs_of(&cx.lead).first().copied() {
            let w = cx.lead.get(i).cloned().unwrap_or_default();
            raise(
                &mut category,
                &mut confidence,
                Category::Destructive,
                "description-destructive",
                format!("Its description says it does more: `{w}`"),
                &mut signals,
            );
        }
    }
    let name_reads = cx
        .name
        .iter()
        .any(|w| matches!(verb(w), Some(Verb::Read | Verb::Navigate)));

    // 3. The schema.
    let ops = modes(&cx);
    let mut worst_mode: Option<(Finding, String)> = None;
    for op in &ops {
        let ws = split_name(op);
        if let Some(f) = read_words(&cx, &ws, &cx.name, true) {
            if worst_mode
                .as_ref()
                .is_none_or(|(w, _)| f.category > w.category)
            {
                worst_mode = Some((f, op.clone()));
            }
        }
    }
    if let Some((f, op)) = worst_mode {
        if f.category > Category::Read {
            raise(
                &mut category,
                &mut confidence,
                f.category,
                "param-mode",
                format!(
                    "Offers {} operations; the most dangerous, `{op}`, is {}",
                    ops.len(),
                    f.category.as_str()
                ),
                &mut signals,
            );
        }
    }
    let query_is_code = |d: &str| {
        let ws = text_words(d);
        any_in(&ws, QUERY_LANGUAGES)
    };
    let code_param = cx
        .params
        .iter()
        .find(|(k, d)| {
            ((ops.is_empty() || k != "command") && CODE_PARAMS.contains(&k.as_str()))
                || ((k == "query" || k.ends_with("_query"))
                    && (query_is_code(d)
                        || query_is_code(&cx.desc)
                        || any_in(&cx.name, &["sql", "cypher"])))
                || ((k == "expression" || k == "function")
                    && (cx.desc.contains("javascript")
                        || cx.desc.contains("eval")
                        || d.contains("javascript")
                        || d.contains("() =>")))
        })
        .map(|(k, _)| k.clone());
    if let Some(p) = code_param {
        raise(
            &mut category,
            &mut confidence,
            Category::Execute,
            "param-code",
            format!("Takes free-form code, a command or query text (`{p}`)"),
            &mut signals,
        );
    }
    if let Some((k, _)) = cx.params.iter().find(|(k, d)| {
        k == "image"
            && (d.contains("container")
                || d.contains("docker")
                || cx.desc.contains("container")
                || cx.desc.contains("sandbox"))
    }) {
        raise(
            &mut category,
            &mut confidence,
            Category::Execute,
            "param-container-image",
            format!("Starts a container from an image the caller names (`{k}`)"),
            &mut signals,
        );
    }
    if cx.params.iter().any(|(k, d)| {
        k.contains("launchoptions") || k.contains("launch_options") || d.contains("executablepath")
    }) {
        raise(
            &mut category,
            &mut confidence,
            Category::Execute,
            "param-launch-options",
            "Launches a program with options the caller sets".into(),
            &mut signals,
        );
    }
    let code_files = cx
        .has_param(&["files", "source", "source_code", "entrypoint"])
        .is_some();
    if code_files
        && category == Category::Write
        && (any_in(&cx.name, &["deploy", "redeploy"])
            || any_in(&cx.name, &["function", "worker", "lambda"]))
    {
        raise(
            &mut category,
            &mut confidence,
            Category::Execute,
            "deploys-code",
            "Deploys code the caller writes".into(),
            &mut signals,
        );
    }
    let process_input = any_in(
        &cx.name,
        &["process", "stdin", "terminal", "repl", "pty", "shell"],
    ) && (any_in(&cx.name, &["send", "interact", "write", "input"])
        || cx.has_param(&["input", "stdin"]).is_some());
    if process_input {
        raise(
            &mut category,
            &mut confidence,
            Category::Execute,
            "process-input",
            "Sends caller input to a running process (a shell or REPL runs it)".into(),
            &mut signals,
        );
    }
    let testnet = cx.desc.contains("testnet") || cx.desc.contains("no real value");
    if let Some(p) = cx.has_param(MONEY_PARAMS) {
        let price_list = any_in(&cx.name, words::PRICE_LIST);
        if category == Category::Write && !price_list && !testnet {
            raise(
                &mut category,
                &mut confidence,
                Category::Financial,
                "param-money",
                format!("Takes an amount of money (`{p}`) and changes something"),
                &mut signals,
            );
        } else {
            signals.push(Signal::new(
                "param-money",
                format!("Takes an amount of money (`{p}`)"),
            ));
        }
    }
    if category == Category::Write && cx.params.iter().any(|(k, _)| k.contains("cost")) {
        raise(
            &mut category,
            &mut confidence,
            Category::Financial,
            "cost-confirmed",
            "Needs a cost confirmation: it creates something billed".into(),
            &mut signals,
        );
    }
    let pays = {
        let d = &cx.desc;
        (d.contains("automatic") || d.contains("handled automatically"))
            && (d.contains("payment") || d.contains(" pay") || d.contains("402"))
    };
    if pays && !testnet {
        raise(
            &mut category,
            &mut confidence,
            Category::Financial,
            "pays-automatically",
            "Pays what the service asks, automatically".into(),
            &mut signals,
        );
    }
    if let Some((k, _)) = cx.params.iter().find(|(k, _)| {
        ["save", "output", "dest", "target", "download"]
            .iter()
            .any(|p| k.contains(p))
            && ["path", "dir", "file", "location"]
                .iter()
                .any(|p| k.contains(p))
    }) {
        raise(
            &mut category,
            &mut confidence,
            Category::Write,
            "param-written-path",
            format!("Writes to a path the caller gives (`{k}`)"),
            &mut signals,
        );
    }
    let writes_file = cx
        .params
        .iter()
        .any(|(k, _)| k == "path" || k.ends_with("_path") || k == "filename" || k == "file");
    let overwrite_mode = ops
        .iter()
        .any(|o| o.contains("rewrite") || o.contains("overwrite"));
    let overwrite_text = cx.desc.contains("overwrite");
    if category == Category::Write && writes_file && (overwrite_mode || overwrite_text) {
        raise(
            &mut category,
            &mut confidence,
            Category::Destructive,
            "description-overwrites",
            "Writes a file over an existing one".into(),
            &mut signals,
        );
    }
    if let Some(p) = cx.has_param(RECIPIENT_PARAMS) {
        if category >= Category::Write {
            signals.push(Signal::new(
                "param-recipient",
                format!("Sends to a recipient it is given (`{p}`)"),
            ));
        }
    }
    if cx
        .params
        .iter()
        .any(|(k, _)| k == "url" || k.ends_with("_url"))
    {
        signals.push(Signal::new(
            "param-url",
            "Takes a URL (reaches the network)".into(),
        ));
    }
    if writes_file {
        signals.push(Signal::new("param-path", "Takes a file path".into()));
    }
    let n = tool.property_count();
    if n >= 10 {
        signals.push(Signal::new(
            "param-count-high",
            format!("High parameter count ({n} properties)"),
        ));
    }

    // 4. Annotations: they settle a name with both a read and a write verb, and are
    // reported where they disagree.
    let read_only = tool.hint("readOnlyHint");
    let only_verbs = signals.iter().all(|s| {
        matches!(
            s.id,
            "name-write"
                | "name-read"
                | "param-url"
                | "param-path"
                | "param-count-high"
                | "description-write"
                | "description-read"
                | "no-verb"
        )
    });
    if read_only == Some(true)
        && category == Category::Write
        && only_verbs
        && (name_reads || from_name_is_weak(&signals))
    {
        category = Category::Read;
        confidence = 0.7;
        signals.push(Signal::new(
            "annotation-read-only",
            "Declares readOnlyHint, and its name or description also reads".into(),
        ));
    } else if read_only == Some(true) && category > Category::Read {
        signals.push(Signal::new(
            "annotation-disagrees",
            format!("Declares readOnlyHint but does {}", category.as_str()),
        ));
        confidence = confidence.min(0.6);
    }
    if read_only == Some(false) && category == Category::Read {
        signals.push(Signal::new(
            "annotation-disagrees",
            "Declares it is not read-only, but it reads".into(),
        ));
        confidence = confidence.min(0.6);
    }
    if tool.hint("destructiveHint") == Some(true) && read_only != Some(true) {
        signals.push(Signal::new(
            "annotation-destructive",
            "Declares destructiveHint".into(),
        ));
        if category == Category::Read && !from_name_is_strong(&signals) {
            category = Category::Write;
            confidence = 0.55;
        }
    }
    if tool.hint("openWorldHint") == Some(true) {
        signals.push(Signal::new(
            "open-world",
            "Declares openWorldHint: reaches outside systems".into(),
        ));
    }

    let (mut severity, why) = severity::of(&cx, category, &signals, &ops);
    signals.push(why);
    let attacks = attack::signals(tool, siblings);
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

/// True when the category came from the description or from no verb at all.
fn from_name_is_weak(signals: &[Signal]) -> bool {
    signals
        .first()
        .is_some_and(|s| s.id.starts_with("description-") || s.id == "no-verb")
}

fn description_id(c: Category) -> &'static str {
    match c {
        Category::Read => "description-read",
        Category::Write => "description-write",
        Category::Execute => "description-execute",
        Category::Financial => "description-financial",
        Category::Destructive => "description-destructive",
    }
}

/// Raises the category to `to` (never lowers it), with its signal.
fn raise(
    category: &mut Category,
    confidence: &mut f64,
    to: Category,
    id: &'static str,
    message: String,
    signals: &mut Vec<Signal>,
) {
    signals.push(Signal::new(id, message));
    if *category < to {
        *category = to;
        *confidence = confidence.min(0.7);
    }
}

/// True when the category came from a verb of the name.
fn from_name_is_strong(signals: &[Signal]) -> bool {
    signals.first().is_some_and(|s| {
        !s.id.starts_with("description-") && s.id != "no-verb" && s.id != "annotation-read-only"
    })
}
