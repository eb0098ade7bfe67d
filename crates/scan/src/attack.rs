//! Tool-poisoning signals: text a model reads that a person reviewing the tool would not
//! see or would not expect. Each returns a [`Signal`] with a stable id.

use std::sync::OnceLock;

use regex::Regex;

use crate::classify::Signal;
use crate::tool::ToolDef;

/// Descriptions longer than this are flagged as a place to hide instructions.
pub const LONG_DESCRIPTION: usize = 3000;

fn re(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn hidden_instructions() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?is)<\s*important\s*>|<\s*(system|instructions?|secret)\s*>|ignore (all |any )?(the )?(previous|prior|above|earlier) (instructions|prompts?|rules)|(do not|don't|never) (tell|inform|mention|reveal|notify|alert|show)( this)?( to)? the user|without (telling|informing|notifying|alerting) the user|the user (must|should) not (know|see|be told)|<!--.*-->|this is (very |extremely )?important.{0,40}(otherwise|or else)|(before|prior to) (using|calling) (this|any) tool,? (you must|always|first)|\b(no need to|need not|does not need to be|doesn't need to be|do not|don't|never)\s+(mention|mentioned|tell|told|list|show|disclose|reveal)\b[^.]{0,80}\b(user|receipts?|logs?)\b|\b(all|every) commands? must (include|start with|begin with|be prefixed)",
    )
}

fn secret_access() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?is)\b(read|cat|open|include|pass|send|attach|upload|provide|copy|extract|collect)\b.{0,80}(~/\.ssh|id_rsa|id_ed25519|\.ssh/|\.netrc|mcp\.json|\.cursor/|\.aws/credentials|/etc/passwd|\.env\b|private key|api[_ -]?keys?|access tokens?|credentials)|(~/\.ssh/id_\w+|~/\.netrc)\b.{0,120}\b(übergib|inhalt|feld|field|argument|param\w*|memo|pass)|(~/\.ssh|id_rsa|mcp\.json|\.aws/credentials).{0,80}\b(as|into|in) (the )?[`'\x22]?\w+[`'\x22]? (param|parameter|argument|field)",
    )
}

fn exfiltration() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?is)\b(send|post|forward|upload|transmit|report|copy|bcc|cc|mirror|exfiltrate)\b.{0,60}\b(all|every|each|entire|full|complete|whole|any|copies?|a copy)\b.{0,80}(https?://|\b[\w.+-]+@[\w-]+\.[\w.]+|webhook)|\b(also|secretly|silently|quietly|additionally|always)\b.{0,40}\b(send|post|forward|bcc|cc|upload)\b.{0,80}(https?://|\b[\w.+-]+@[\w-]+\.[\w.]+)",
    )
}

fn shadowing() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?is)\bwhen(ever)?\b.{0,30}[`'\x22]?\b\w+\b[`'\x22]?\s+(tool\s+)?is\s+(called|used|invoked|run)\b.{0,120}\b(must|always|also|instead|change|replace|add|set)\b|\b(all|any|every|other)\s+(\w+\s+){0,2}tools?\b.{0,60}\b(must|should|always)\b.{0,60}\b(send|include|add|bcc|use|redirect|change)\b|\b(instead of|rather than) (using |calling )?(the )?[`'\x22]?\w+[`'\x22]? tool\b.{0,40}\b(from|of) (another|other|the \w+) server|\b(before|after) (any|every|each) (call|calling|execution|use)\b|\bbefore (executing|calling|using|running) any other tool\b|\bnever (call|use) (those|these|the other|other) tools?\b|\breplaces? [`'\x22]?\w+[`'\x22]?( and [`'\x22]?\w+[`'\x22]?)? from the [\w-]+ server\b",
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

/// Invisible or direction-changing characters; a zero-width joiner inside an emoji
/// sequence is not counted.
fn invisible(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = vec![];
    for (i, &c) in chars.iter().enumerate() {
        let cp = c as u32;
        let suspicious = matches!(cp, 0x200B | 0x200C | 0x200E | 0x200F | 0x2060..=0x2064 | 0xFEFF | 0x202A..=0x202E | 0x2066..=0x2069 | 0xE0000..=0xE007F | 0x00AD | 0x180E);
        let zwj_outside_emoji = cp == 0x200D && {
            let prev = i
                .checked_sub(1)
                .and_then(|p| chars.get(p))
                .map_or(0, |c| *c as u32);
            let next = chars.get(i + 1).map_or(0, |c| *c as u32);
            !(prev >= 0x1F000
                || next >= 0x1F000
                || (0x2600..=0x27BF).contains(&prev)
                || (0x2600..=0x27BF).contains(&next))
        };
        if suspicious || zwj_outside_emoji {
            out.push(c);
        }
    }
    out
}

fn padding() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(&R, r"[ \t]{60,}|(\r?\n[ \t]*){15,}")
}

/// Every attack signal in a tool's text: name, title, description, schema text.
pub fn signals(tool: &ToolDef, siblings: &[ToolDef]) -> Vec<Signal> {
    let _ = siblings;
    let mut text = String::new();
    text.push_str(&tool.name);
    text.push('\n');
    if let Some(t) = &tool.title {
        text.push_str(t);
        text.push('\n');
    }
    text.push_str(&tool.description);
    let schema_text = tool.input_schema.to_string();
    let mut props = String::new();
    for (k, d) in tool.properties() {
        props.push_str(&k);
        props.push(' ');
        props.push_str(&d);
        props.push('\n');
    }
    // Defaults and enums can carry text too: search the schema's raw JSON, unescaped.
    let all = format!(
        "{text}\n{props}\n{}",
        schema_text.replace("\\n", "\n").replace("\\\"", "\"")
    );
    let mut out = vec![];
    if hidden_instructions().is_some_and(|r| r.is_match(&all)) {
        out.push(Signal::new("hidden-instructions", "Description or schema text gives the model instructions (\"<IMPORTANT>\", \"ignore previous\", \"do not tell the user\")".to_string()));
    }
    if secret_access().is_some_and(|r| r.is_match(&all)) {
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
    if shadowing().is_some_and(|r| r.is_match(&all)) {
        out.push(Signal::new(
            "tool-shadowing",
            "Tells the model how to use other tools (possibly another server's)".to_string(),
        ));
    }
    // Parameters whose names or descriptions ask the model for its context or for secrets.
    let props_list = tool.properties();
    if props_list
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
    let inv = invisible(&all);
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
    let dlen = tool.description.chars().count();
    if dlen > LONG_DESCRIPTION * 3 || padding().is_some_and(|r| r.is_match(&tool.description)) {
        out.push(Signal::new("hidden-padding", format!("Description of {dlen} characters with long runs of blank space, where instructions can hide past what a reviewer sees")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert!(hidden_instructions().is_some(), "hidden_instructions");
        assert!(secret_access().is_some(), "secret_access");
        assert!(exfiltration().is_some(), "exfiltration");
        assert!(shadowing().is_some(), "shadowing");
        assert!(context_harvest().is_some(), "context_harvest");
        assert!(secret_param().is_some(), "secret_param");
        assert!(padding().is_some(), "padding");
    }
}
