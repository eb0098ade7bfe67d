//! Tool-poisoning signals: text a model reads that a person reviewing the tool would not
//! see or would not expect. Each returns a [`Signal`] with a stable id.
//!
//! The text read is the name, the title, the description, every parameter's name,
//! description, default and enum values, and the string values of the annotations. The
//! families follow `SCAN-LABELS.md`: markup that addresses the model (`<IMPORTANT>`, fake
//! `<system>` or `[SYSTEM]` blocks, uppercase tags), instructions to override the model's
//! rules or hide what it does, requests to read credentials or send data out, text that
//! changes how other tools are used or steers the model to prefer this one, instructions in
//! annotations, invisible and bidirectional characters, ANSI escapes, padding (a run of
//! blank characters that pushes text out of sight; length alone is not padding), and names
//! that copy a well-known tool's ([`crate::lookalike`]).
//!
//! The patterns that also apply to any text (markup, concealment, overrides, exfiltration,
//! shadowing, preference, invisible characters) live in `toolgate_detect::injection`, which
//! finds them in tool results too.
//!
//! An honest description of a dangerous function is not an attack: a tool that says in its
//! first sentence that it returns secrets, or that refuses to read them, is not flagged.

use std::sync::OnceLock;

use regex::Regex;

use toolgate_detect::injection::{
    concealment, exfiltration, html_comment, invisible_chars, markup, override_rules, preference,
    quoted, shadowing,
};

use crate::classify::Signal;
use crate::lookalike::look_alike;
use crate::tool::ToolDef;
use crate::words::split_name;

/// A run of this many blank characters on one line is padding. The training set's
/// padded definitions use runs of hundreds; its longest honest indentation is 31.
pub const PADDING_RUN: usize = 60;

/// This many line breaks with only blanks between them are padding. The training set's
/// padded definitions use 60; honest descriptions separate paragraphs by at most two.
pub const PADDING_LINES: usize = 15;

use toolgate_detect::lazy_regex as re;

fn secret_target() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)(~/\.ssh|id_rsa|id_ed25519(\b|[^.]|\.[^p])|\.ssh/|\.netrc|mcp\.json|\.cursor/|\.aws/credentials|\.aws/|/etc/passwd|/etc/shadow|\.env\b|\.gitconfig|_history\b|hosts\.yml|\.kube/config|private keys?|api[_ -]?keys?|access[_ ]keys?|access tokens?|oauth[_ ]tokens?|credentials|passwords?|secrets?\b|cookies|keychain|wallet seed|seed phrase|environment variables)",
    )
}

fn secret_verb() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)\b(read|reading|cat|open|include|including|pass|send|attach|upload|provide|copy|extract|collect|collecting|access|accessing|harvest|put|append|retrieve|lies|übergib|search for|look for)\b",
    )
}

fn context_harvest() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)\b(system[ _]?prompt|conversation[ _]history|chat[ _]history|previous messages|full history|complete conversation|conversation so far|(full|complete|entire) (conversation )?transcript|every tool available|tools available to you|the model you are)\b",
    )
}

fn secret_param() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)(id_rsa|id_ed25519|netrc|ssh_key_content|private_key_content|mcp_json|aws_credentials|content_from_reading)",
    )
}

/// Characters that render as blank: whitespace, and the fillers and blanks of other
/// scripts (Hangul fillers, the braille blank, Mongolian vowel separator).
fn blank(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{180E}'
        )
}

/// Padding: a run of at least [`PADDING_RUN`] blank characters, or of [`PADDING_LINES`]
/// line breaks with nothing but blanks between them, followed by more text. That pushes
/// the text after it past what a client shows; a long description without such a run is
/// documentation, however long. Returns the signal's sentence.
fn hidden_padding(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars.get(i).is_some_and(|c| blank(*c)) {
            i += 1;
            continue;
        }
        let start = i;
        while chars.get(i).is_some_and(|c| blank(*c)) {
            i += 1;
        }
        let run = chars.get(start..i).unwrap_or(&[]);
        let lines = run.iter().filter(|c| **c == '\n').count();
        let longest_line_run = run
            .split(|c| *c == '\n')
            .map(<[char]>::len)
            .max()
            .unwrap_or(0);
        let followed = i < chars.len();
        if followed && (longest_line_run >= PADDING_RUN || lines >= PADDING_LINES) {
            return Some(format!(
                "{} blank characters ({lines} line breaks) push the text after them past what a reviewer sees",
                run.len()
            ));
        }
    }
    None
}

/// True when the text just before `at` negates or forbids what follows ("never read",
/// "are refused", "do not upload").
fn negated(text: &str, at: usize) -> bool {
    let start = text
        .char_indices()
        .rev()
        .find(|(i, _)| *i + 60 <= at)
        .map_or(0, |(i, _)| i);
    let before = text.get(start..at).unwrap_or("").to_lowercase();
    let clause = before
        .rsplit(['.', ';', ':', '!', '?', '\n'])
        .next()
        .unwrap_or("");
    [
        "never",
        "not ",
        "n't",
        "refuse",
        "avoid",
        "only ever",
        "no ",
    ]
    .iter()
    .any(|n| clause.contains(n))
}

/// Secret files named by path: any reading or passing verb near them is a request.
fn secret_path() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)^(~/\.ssh|id_rsa|id_ed25519|\.ssh/|\.netrc|mcp\.json|\.cursor/|\.aws/|/etc/passwd|/etc/shadow|\.env|\.gitconfig|_history|hosts\.yml|\.kube/config)",
    )
}

/// Words that address the model: an order, not a description of the tool.
fn model_cue() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)\b(you|your|must|first|before|also|as the|into the|in the|argument|parameter|field|response|reply|otherwise)\b",
    )
}

/// The sentence around byte `at`.
fn sentence_at(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or("");
    let lo = [before.rfind(". "), before.rfind('\n'), before.rfind("; ")]
        .into_iter()
        .flatten()
        .max()
        .map_or(0, |i| i + 1);
    let after = text.get(at..).unwrap_or("");
    let hi = [after.find(". "), after.find('\n')]
        .into_iter()
        .flatten()
        .min()
        .map_or(text.len(), |i| at + i);
    (lo, hi)
}

/// Requests to read secrets: a secret target and a reading or passing verb in one
/// sentence, outside the description's first sentence (where an honest tool states its
/// own function), not negated ("never read", "are refused"), not a public key (`.pub`);
/// a secret named only by a word (credentials, API keys) also needs words that address
/// the model.
fn asks_for_secrets(text: &str, skip: (usize, usize)) -> bool {
    let (Some(target), Some(verbs), Some(path), Some(cue)) =
        (secret_target(), secret_verb(), secret_path(), model_cue())
    else {
        return false;
    };
    for m in target.find_iter(text) {
        if m.start() >= skip.0 && m.start() < skip.1 {
            continue;
        }
        let token_rest: String = text
            .get(m.end()..)
            .unwrap_or("")
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ')')
            .collect();
        let just_before: String = text
            .get(..m.start())
            .unwrap_or("")
            .chars()
            .rev()
            .take(14)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
            .to_lowercase();
        if token_rest.contains(".pub")
            || ["e.g.", "such as", "i.e.", "like "]
                .iter()
                .any(|x| just_before.contains(x))
        {
            continue;
        }
        let (lo, hi) = sentence_at(text, m.start());
        let sentence = text.get(lo..hi).unwrap_or("");
        let after = text.get(m.end()..hi).unwrap_or("").to_lowercase();
        if [
            "are refused",
            "is refused",
            "are rejected",
            "are blocked",
            "is blocked",
            "are never",
        ]
        .iter()
        .any(|n| after.contains(n))
        {
            continue;
        }
        let is_path = path.is_match(m.as_str());
        let ordered = is_path || cue.is_match(sentence);
        let verb = verbs
            .find_iter(sentence)
            .map(|v| (lo + v.start(), lo + v.end()))
            .find(|(s, e)| *e <= m.start() || *s >= m.end());
        if let Some((at, _)) = verb {
            if ordered && !negated(text, at) && !negated(text, m.start()) {
                return true;
            }
        }
    }
    false
}

/// Every attack signal in a tool's text. `siblings` are the tools of the same server:
/// naming one of them is not a reference to another server's tool.
pub fn signals(tool: &ToolDef, siblings: &[ToolDef]) -> Vec<Signal> {
    let mut text = String::new();
    text.push_str(&tool.name);
    text.push('\n');
    if let Some(t) = &tool.title {
        text.push_str(t);
        text.push('\n');
    }
    let desc_at = text.len();
    text.push_str(&tool.description);
    let first_sentence_end = desc_at
        + tool
            .description
            .find(". ")
            .or_else(|| tool.description.find('\n'))
            .unwrap_or(tool.description.len());
    // The name, title and first sentence: where a tool says what it does.
    let own_function = (0, first_sentence_end);
    let mut props = String::new();
    for (k, d) in tool.properties() {
        props.push_str(&k);
        props.push(' ');
        props.push_str(&d);
        props.push('\n');
    }
    // Defaults and enums can carry text too: search the schema's raw JSON, unescaped.
    let schema_text = tool.input_schema.to_string();
    let mut annotation_text = String::new();
    let mut odd_annotations = vec![];
    if let Some(m) = tool.annotations.as_object() {
        for (k, v) in m {
            let standard = matches!(
                k.as_str(),
                "title" | "readOnlyHint" | "destructiveHint" | "idempotentHint" | "openWorldHint"
            );
            if !standard {
                odd_annotations.push(k.clone());
            }
            if k == "title" && tool.title.as_deref() == v.as_str() {
                continue;
            }
            if !k.ends_with("Hint") {
                annotation_text.push_str(&v.to_string().replace("\\n", "\n"));
                annotation_text.push('\n');
            }
        }
    }
    let all = format!(
        "{text}\n{props}\n{}\n{annotation_text}",
        schema_text.replace("\\n", "\n").replace("\\\"", "\"")
    );
    let mut out = vec![];
    let comment_orders = html_comment().is_some_and(|r| {
        r.captures_iter(&all).any(|c| {
            let inner = c.get(1).map_or("", |m| m.as_str());
            inner.split_whitespace().count() >= 6
        })
    });
    if markup().is_some_and(|r| r.is_match(&all))
        || comment_orders
        || concealment().is_some_and(|r| {
            r.find_iter(&all).any(|m| {
                let after = all.get(m.end()..).unwrap_or("");
                let rest: String = after.chars().take(40).collect();
                !rest.contains("until") && !quoted(&all, m.start())
            })
        })
    {
        out.push(Signal::new("hidden-instructions", "Description or schema text gives the model hidden instructions (\"<IMPORTANT>\", a fake system block, \"do not tell the user\")".to_string()));
    }
    if override_rules().is_some_and(|r| {
        r.find_iter(&all).any(|m| {
            let before: String = all
                .get(..m.start())
                .unwrap_or("")
                .chars()
                .rev()
                .take(12)
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            !quoted(&all, m.start()) && !before.contains("such as") && !before.contains("like ")
        })
    }) {
        out.push(Signal::new(
            "instruction-override",
            "Tells the model to drop its rules or take more power (\"ignore previous instructions\", \"disable safety checks\")".to_string(),
        ));
    }
    if asks_for_secrets(&all, own_function) {
        out.push(Signal::new(
            "secret-access",
            "Asks the model to read or pass secrets (SSH keys, .env, credentials, MCP config)"
                .to_string(),
        ));
    }
    if exfiltration().is_some_and(|r| r.is_match(&all)) {
        out.push(Signal::new(
            "exfiltration",
            "Asks the model to send data to an outside address or URL".to_string(),
        ));
    }
    if shadowing().is_some_and(|r| r.is_match(&all)) || names_foreign_tool(tool, siblings) {
        out.push(Signal::new(
            "tool-shadowing",
            "Tells the model how to use other tools (possibly another server's)".to_string(),
        ));
    }
    if preference().is_some_and(|r| r.is_match(&all)) {
        out.push(Signal::new(
            "tool-preference",
            "Tells the model to prefer this tool over every other one".to_string(),
        ));
    }
    let name_words = split_name(&tool.name);
    let is_chat = name_words.iter().any(|w| {
        matches!(
            w.as_str(),
            "chat" | "completion" | "completions" | "conversation" | "message" | "messages"
        )
    });
    let props_list = tool.properties();
    if !is_chat
        && props_list
            .iter()
            .any(|(k, d)| context_harvest().is_some_and(|r| r.is_match(k) || r.is_match(d)))
    {
        out.push(Signal::new(
            "context-harvesting",
            "A parameter asks the model for its system prompt, conversation or other tools"
                .to_string(),
        ));
    }
    if props_list
        .iter()
        .any(|(k, _)| secret_param().is_some_and(|r| r.is_match(k)))
        && !out.iter().any(|s| s.id == "secret-access")
    {
        out.push(Signal::new(
            "secret-access",
            "A parameter's name asks for a secret file's content".to_string(),
        ));
    }
    let odd: Vec<&String> = odd_annotations
        .iter()
        .filter(|k| {
            let w = split_name(k);
            w.iter().any(|w| {
                matches!(
                    w.as_str(),
                    "prompt"
                        | "instruction"
                        | "instructions"
                        | "command"
                        | "bypass"
                        | "privilege"
                        | "override"
                        | "trust"
                        | "system"
                        | "hidden"
                        | "security"
                )
            })
        })
        .collect();
    if !odd.is_empty() {
        out.push(Signal::new(
            "annotation-injection",
            format!(
                "Non-standard annotations that address the model or its safety ({})",
                odd.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let inv: Vec<char> = invisible_chars(&all).into_iter().map(|(_, c)| c).collect();
    if !inv.is_empty() {
        let mut cps: Vec<String> = inv.iter().map(|c| format!("U+{:04X}", *c as u32)).collect();
        cps.sort();
        cps.dedup();
        out.push(Signal::new(
            "invisible-characters",
            format!(
                "{} invisible or bidi control characters ({})",
                inv.len(),
                cps.join(", ")
            ),
        ));
    }
    if all.contains('\u{1b}') || all.contains('\u{9b}') || all.contains("\\u001b") {
        out.push(Signal::new(
            "ansi-escape",
            "ANSI escape sequences (can hide text in terminals)".to_string(),
        ));
    }
    if let Some(run) = std::iter::once(tool.description.as_str())
        .chain(props_list.iter().map(|(_, d)| d.as_str()))
        .find_map(hidden_padding)
    {
        out.push(Signal::new("hidden-padding", run));
    }
    let others: Vec<&str> = siblings
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| *n != tool.name)
        .collect();
    if let Some(l) = look_alike(&tool.name, &others) {
        out.push(Signal::new("lookalike-name", l.message(&tool.name)));
    }
    out
}

/// True when the description orders the model to use a tool by a name that none of the
/// server's tools has (`use the read_file tool to ...`, `when send_email is called`).
fn names_foreign_tool(tool: &ToolDef, siblings: &[ToolDef]) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(r) = re(
        &R,
        r"(?i)\b(using|use|call|calling|invoke|via|with) (the )?[`'\x22]?([a-z][a-z0-9]*_[a-z0-9_]+)[`'\x22]? tool\b",
    ) else {
        return false;
    };
    r.captures_iter(&tool.description).any(|c| {
        let Some(name) = c.get(3).map(|m| m.as_str().to_lowercase()) else {
            return false;
        };
        let orders = {
            let at = c.get(0).map_or(0, |m| m.start());
            let before = tool.description.get(..at).unwrap_or("").to_lowercase();
            let clause = before.rsplit(['.', '\n']).next().unwrap_or("").to_string();
            ["must", "first", "before", "always", "silently"]
                .iter()
                .any(|w| clause.contains(w))
        };
        orders
            && name != tool.name.to_lowercase()
            && !siblings.iter().any(|s| s.name.to_lowercase() == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert!(secret_target().is_some(), "secret_target");
        assert!(secret_verb().is_some(), "secret_verb");
        assert!(secret_path().is_some(), "secret_path");
        assert!(model_cue().is_some(), "model_cue");
        assert!(context_harvest().is_some(), "context_harvest");
        assert!(secret_param().is_some(), "secret_param");
    }
}
