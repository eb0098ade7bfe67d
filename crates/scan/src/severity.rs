//! Severity from what a tool touches (`SCAN-LABELS.md`): secrets, personal data, logs and
//! local files for reads; other people, production and permissions for writes; how far
//! execution reaches; how much a deletion takes.

use crate::classify::{Category, Cx, Severity, Signal};
use crate::words::{self, any_in, split_name, verb, Verb};

/// Secret nouns strict enough to decide severity on their own.
const STRICT_SECRETS: &[&str] = &[
    "secret",
    "secrets",
    "credential",
    "credentials",
    "password",
    "passwords",
    "token",
    "tokens",
    "apikey",
    "apikeys",
    "totp",
    "otp",
    "pat",
    "privatekey",
];
/// Words that turn `key` into a credential.
const KEY_QUALIFIERS: &[&str] = &[
    "api", "ssh", "setup", "access", "private", "signing", "deploy", "license", "secret",
];
/// Verbs that reach other people.
const DELIVER: &[&str] = &[
    "send",
    "post",
    "reply",
    "forward",
    "broadcast",
    "publish",
    "tweet",
    "retweet",
    "share",
    "submit",
    "announce",
    "notify",
    "invite",
];
/// Verbs whose change reaches running systems whatever their object.
const PRODUCTION_VERBS: &[&str] = &[
    "restart",
    "scale",
    "rollout",
    "rollback",
    "deploy",
    "redeploy",
    "drain",
    "cordon",
    "merge",
    "apply",
    "install",
    "upgrade",
    "downgrade",
    "publish",
    "promote",
];
/// Verbs that reach running systems when their object is a production one.
const PRODUCTION_CHANGE: &[&str] = &[
    "stop",
    "set",
    "update",
    "create",
    "suspend",
    "deactivate",
    "disable",
    "enable",
];
/// Trivial, reversible verbs.
const TRIVIAL_VERBS: &[&str] = &[
    "star", "unstar", "vote", "like", "pin", "unpin", "mark", "toggle", "play", "pause", "resume",
    "skip", "next", "previous", "seek", "react", "unsave", "freeze", "mint",
];

fn secret_words(ws: &[String]) -> Option<String> {
    for (i, w) in ws.iter().enumerate() {
        if STRICT_SECRETS.contains(&w.as_str()) {
            let public = i >= 1
                && ws
                    .get(i - 1)
                    .is_some_and(|p| p == "publishable" || p == "public");
            if !public {
                return Some(w.clone());
            }
        }
        if (w == "key" || w == "keys")
            && i >= 1
            && ws
                .get(i - 1)
                .is_some_and(|p| KEY_QUALIFIERS.contains(&p.as_str()))
        {
            return ws.get(i - 1).map(|p| format!("{p} {w}"));
        }
        if (w == "environment" || w == "env")
            && ws
                .get(i + 1)
                .is_some_and(|n| n.starts_with("variable") || n == "vars")
        {
            return Some("environment variables".into());
        }
        if w == "env" && ws.len() <= 2 {
            return Some("env".into());
        }
    }
    None
}

/// The severity of a tool of `category`, with the signal that explains it.
pub(crate) fn of(
    cx: &Cx,
    category: Category,
    signals: &[Signal],
    ops: &[String],
) -> (Severity, Signal) {
    let name = &cx.name;
    let name_and_lead: Vec<String> = name.iter().chain(cx.lead.iter()).cloned().collect();
    let verbs: Vec<&str> = name
        .iter()
        .filter(|w| verb(w).is_some())
        .map(String::as_str)
        .collect();
    let has = |id: &str| signals.iter().any(|s| s.id == id);
    let s = |sev: Severity, id: &'static str, m: String| (sev, Signal::new(id, m));
    match category {
        Category::Read => {
            if let Some(w) = secret_words(&name_and_lead) {
                return s(
                    Severity::High,
                    "touches-secrets",
                    format!("Reads secrets or credentials ({w})"),
                );
            }
            let by_key = any_in(name, &["by"]);
            if any_in(name, &["customers", "contacts", "patients", "employees"]) && !by_key {
                return s(
                    Severity::High,
                    "touches-personal-data",
                    "Bulk read of people's records".into(),
                );
            }
            let personal = name.iter().enumerate().find(|(i, w)| {
                words::PERSONAL.contains(&w.as_str())
                    && !(*i >= 1
                        && name
                            .get(i - 1)
                            .is_some_and(|p| p == "console" || p == "log"))
                    && !name
                        .get(i + 1)
                        .is_some_and(|n| n == "domain" || n == "domains")
            });
            if let Some((_, w)) = personal {
                return s(
                    Severity::Medium,
                    "touches-personal-data",
                    format!("Reads personal or account data ({w})"),
                );
            }
            let log_qualifiers = [
                "build",
                "console",
                "job",
                "deployment",
                "audit",
                "access",
                "error",
                "system",
                "pod",
                "container",
                "server",
                "service",
                "apply",
                "preview",
                "process",
            ];
            let logs = name.iter().enumerate().find(|(i, w)| {
                *w == "logs"
                    || (*w == "log"
                        && *i >= 1
                        && name
                            .get(i - 1)
                            .is_some_and(|p| log_qualifiers.contains(&p.as_str())))
            });
            if let Some((_, w)) = logs {
                return s(Severity::Medium, "touches-logs", format!("Reads {w}"));
            }
            let local_path = cx
                .params
                .iter()
                .any(|(k, _)| k == "path" || k == "paths" || k.ends_with("_path"))
                && cx.has_param(&["owner", "repo", "url"]).is_none();
            if local_path && verbs.first() == Some(&"read") {
                return s(
                    Severity::Medium,
                    "touches-local-files",
                    "Reads local files".into(),
                );
            }
            s(
                Severity::Low,
                "severity-low",
                "Reads non-sensitive data".into(),
            )
        }
        Category::Write => {
            let mode_words: Vec<String> = ops.iter().flat_map(|o| split_name(o)).collect();
            if let Some(w) = secret_words(name) {
                return s(
                    Severity::Critical,
                    "permission-change",
                    format!("Changes credentials ({w})"),
                );
            }
            if let Some(w) = words::first_in(name, words::PERMISSION)
                .or_else(|| words::first_in(&mode_words, words::PERMISSION))
            {
                return s(
                    Severity::Critical,
                    "permission-change",
                    format!("Changes who may do what ({w})"),
                );
            }
            let delivers = verbs.iter().any(|v| DELIVER.contains(v));
            if delivers
                && (has("param-recipient")
                    || any_in(name, words::MESSAGE)
                    || verbs.iter().any(|v| ["publish", "share"].contains(v)))
            {
                return s(
                    Severity::High,
                    "message-outside",
                    "Delivers something to other people".into(),
                );
            }
            if cx.browser && verbs.contains(&"upload") {
                return s(
                    Severity::High,
                    "message-outside",
                    "Sends local files to a web page".into(),
                );
            }
            let all_verbs: Vec<&str> = verbs
                .iter()
                .copied()
                .chain(
                    mode_words
                        .iter()
                        .map(String::as_str)
                        .filter(|w| verb(w).is_some()),
                )
                .chain(
                    cx.lead
                        .iter()
                        .take(8)
                        .map(String::as_str)
                        .filter(|w| verb(w) == Some(Verb::Write) && verbs.is_empty()),
                )
                .collect();
            let production_verb = all_verbs.iter().find(|v| PRODUCTION_VERBS.contains(v));
            if let Some(v) = production_verb.filter(|_| !cx.browser) {
                return s(
                    Severity::High,
                    "touches-production",
                    format!("`{v}` changes running systems"),
                );
            }
            if all_verbs.iter().any(|v| PRODUCTION_CHANGE.contains(v)) {
                if let Some(w) = words::first_in(name, words::PRODUCTION) {
                    return s(
                        Severity::High,
                        "touches-production",
                        format!("Changes a production object ({w})"),
                    );
                }
            }
            if verbs.iter().any(|v| ["dump", "backup"].contains(v)) {
                return s(
                    Severity::High,
                    "bulk-copy",
                    "Copies a whole store out".into(),
                );
            }
            let git_branch =
                any_in(name, &["branch"]) && cx.params.iter().any(|(k, _)| k.contains("repo"));
            if verbs.iter().any(|v| TRIVIAL_VERBS.contains(v))
                || any_in(name, words::TRIVIAL)
                || git_branch
            {
                return s(
                    Severity::Low,
                    "trivial-change",
                    "A trivial, reversible change".into(),
                );
            }
            s(
                Severity::Medium,
                "severity-medium",
                "An ordinary write".into(),
            )
        }
        Category::Execute => {
            let d = &cx.desc;
            let read_only = any_in(name, &["read", "select"])
                || d.contains("read-only")
                || d.contains("read only")
                || d.contains("readonly")
                || d.contains("select query")
                || d.contains("only select");
            let sandboxed =
                d.contains("sandbox") || d.contains("disposable") || d.contains("ephemeral");
            let predefined = has("starts-run")
                || (!has("param-code")
                    && (any_in(name, &["workflow", "job", "pipeline", "build"])
                        || verbs
                            .iter()
                            .any(|v| ["trigger", "rerun", "build"].contains(v))));
            if cx.browser {
                return s(
                    Severity::High,
                    "constrained-execution",
                    "Runs script inside a web page".into(),
                );
            }
            if sandboxed {
                return s(
                    Severity::High,
                    "constrained-execution",
                    "Runs code in a sandbox".into(),
                );
            }
            if read_only {
                return s(
                    Severity::High,
                    "constrained-execution",
                    "Runs read-only query text".into(),
                );
            }
            if predefined {
                return s(
                    Severity::High,
                    "constrained-execution",
                    "Runs a predefined job or workflow".into(),
                );
            }
            s(
                Severity::Critical,
                "host-execution",
                "Runs arbitrary code, commands or queries on a host, cluster or database".into(),
            )
        }
        Category::Financial => s(
            Severity::High,
            "moves-money",
            "Moves money or changes what someone is charged".into(),
        ),
        Category::Destructive => {
            // The object of the deleting operation: its mode's words, else the name's.
            let del_modes: Vec<Vec<String>> = ops
                .iter()
                .map(|o| split_name(o))
                .filter(|ws| ws.iter().any(|w| verb(w) == Some(Verb::Destroy)))
                .collect();
            let mut objects: Vec<Vec<String>> = del_modes
                .iter()
                .map(|ws| {
                    let obj: Vec<String> = ws
                        .iter()
                        .filter(|w| verb(w) != Some(Verb::Destroy))
                        .cloned()
                        .collect();
                    if obj.is_empty() {
                        name.clone()
                    } else {
                        obj
                    }
                })
                .collect();
            if objects.is_empty() {
                let obj: Vec<String> = name
                    .iter()
                    .filter(|w| verb(w) != Some(Verb::Destroy))
                    .cloned()
                    .collect();
                objects.push(if obj.is_empty() { cx.lead.clone() } else { obj });
            }
            let overwrites = has("description-overwrites")
                || ops
                    .iter()
                    .any(|o| o.contains("rewrite") || o.contains("overwrite"));
            let lead_small = words::first_in(
                &cx.lead.iter().take(10).cloned().collect::<Vec<_>>(),
                words::SMALL,
            )
            .map(str::to_string);
            let selector = cx
                .params
                .iter()
                .any(|(k, _)| k.contains("selector") || k.starts_with("all") || k == "filter");
            let mut worst = (
                Severity::Medium,
                Signal::new("limited-delete", String::new()),
            );
            for obj in &objects {
                let sev = if let Some(w) = secret_words(obj)
                    .or_else(|| words::first_in(obj, words::PERMISSION).map(str::to_string))
                {
                    (
                        Severity::Critical,
                        Signal::new(
                            "unbounded-delete",
                            format!("Deletes or revokes credentials or access rules ({w})"),
                        ),
                    )
                } else if let Some(w) = words::first_in(obj, words::LARGE) {
                    (
                        Severity::Critical,
                        Signal::new("unbounded-delete", format!("Deletes a whole {w}")),
                    )
                } else if selector {
                    (
                        Severity::Critical,
                        Signal::new(
                            "unbounded-delete",
                            "Deletes whatever a selector matches".into(),
                        ),
                    )
                } else if overwrites {
                    (
                        Severity::High,
                        Signal::new("overwrites", "Overwrites existing content".into()),
                    )
                } else if let Some(w) = words::first_in(obj, words::SMALL)
                    .map(str::to_string)
                    .or_else(|| lead_small.clone())
                {
                    (
                        Severity::Medium,
                        Signal::new(
                            "limited-delete",
                            format!("Deletes a small, limited thing ({w})"),
                        ),
                    )
                } else {
                    (
                        Severity::High,
                        Signal::new("severity-high", "Deletes or ends something".into()),
                    )
                };
                if sev.0 > worst.0 || worst.1.message.is_empty() {
                    worst = sev;
                }
            }
            worst
        }
    }
}
