//! Tool pinning: each definition (name, title, description, input and output schema,
//! annotations) is hashed over a canonical encoding and pinned in the store when first
//! seen; a changed or new definition is held until `toolgate tools approve`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toolgate_protocol::canonical;

/// The parts of a tool definition that are pinned.
const PINNED: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// The pinned view of a tool: (name, hash, canonical definition).
pub fn fingerprint(tool: &Value) -> Option<(String, String, String)> {
    let name = tool.get("name")?.as_str()?.to_string();
    let mut kept = Map::new();
    for k in PINNED {
        if let Some(v) = tool.get(*k) {
            kept.insert((*k).to_string(), v.clone());
        }
    }
    let def = canonical(&Value::Object(kept));
    let hash = hex_digest(def.as_bytes());
    Some((name, hash, def))
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Removes control characters (except newline and tab), ANSI escape sequences, and
/// invisible or direction-changing characters. Returns `None` when nothing changed.
pub fn sanitize(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut changed = false;
    while let Some(c) = chars.next() {
        let cp = c as u32;
        if c == '\u{1b}' {
            changed = true;
            // Skip an escape sequence: ESC [ params final-byte, or ESC and one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        let invisible = matches!(cp, 0x200B..=0x200F | 0x2060..=0x2064 | 0xFEFF | 0x202A..=0x202E | 0x2066..=0x2069 | 0xE0000..=0xE007F | 0x00AD | 0x180E);
        if invisible || (c.is_control() && c != '\n' && c != '\t') {
            changed = true;
            continue;
        }
        out.push(c);
    }
    changed.then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sanitize_strips_hidden_text() {
        assert_eq!(sanitize("plain text\nok"), None);
        assert_eq!(
            sanitize("a\u{200B}b\u{202E}c\u{E0041}").as_deref(),
            Some("abc")
        );
        assert_eq!(
            sanitize("red \u{1b}[31mtext\u{1b}[0m").as_deref(),
            Some("red text")
        );
    }

    #[test]
    fn key_order_does_not_matter_content_does() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"b": 1, "a": 2}, "_meta": {"x": 1}});
        let b = json!({"inputSchema": {"a": 2, "b": 1}, "description": "d", "name": "t"});
        assert_eq!(fingerprint(&a).unwrap().1, fingerprint(&b).unwrap().1);
        let c = json!({"name": "t", "description": "d!", "inputSchema": {"a": 2, "b": 1}});
        assert_ne!(fingerprint(&a).unwrap().1, fingerprint(&c).unwrap().1);
    }
}
