//! Making agent- and upstream-chosen text safe to print on a terminal or in a log line.
//!
//! Tool names, descriptions, labels, messages and argument keys come from agents and MCP
//! servers. Printed raw, a newline forges a whole table row or log line, an ANSI/OSC
//! escape rewrites the terminal (or its title, or the clipboard), a carriage return
//! overwrites what came before, and a bidirectional override (U+202E) shows text in a
//! different order than it is stored. [`escape`] turns every such character into a
//! visible escape (`\n`, `\x1b`, `\u{202e}`), leaving all other text as it is.
//!
//! Only for human-readable output: JSON output must stay exact (serde escapes what JSON
//! requires).

use std::borrow::Cow;
use std::fmt;

/// True for a character [`escape`] rewrites: C0 controls, DEL, C1 controls, and the
/// bidirectional and invisible formatting characters (U+061C, U+200B–U+200F,
/// U+2028–U+202E, U+2060–U+2069, U+206A–U+206F, U+FEFF).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}')
}

/// `s` with every [`is_unsafe`] character shown as a visible escape: `\n`, `\r`, `\t`,
/// `\xNN` for other C0 controls and DEL, `\u{NNNN}` for C1 controls and formatting
/// characters. Borrowed (no copy) when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    use fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Displays a string escaped by [`escape`]; width and alignment (`{:<28}`) apply to the
/// escaped text. For log fields: `tracing::info!(tool = %Escaped(&name))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "list_patients",
            "café ünïcode 日本語 🙂",
            "a\\nb (a backslash)",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn line_breaks_and_terminal_escapes_become_visible() {
        assert_eq!(escape("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(
            escape("\x1b[31mred\x1b]0;title\x07"),
            "\\x1b[31mred\\x1b]0;title\\x07"
        );
        assert_eq!(escape("\0\x7f"), "\\x00\\x7f");
        assert_eq!(escape("\u{85}\u{9b}"), "\\u{85}\\u{9b}");
    }

    #[test]
    fn bidi_and_invisible_formatting_become_visible() {
        assert_eq!(escape("safe\u{202e}txt.exe"), "safe\\u{202e}txt.exe");
        for c in [
            '\u{061c}', '\u{200b}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}', '\u{202a}',
            '\u{202d}', '\u{2066}', '\u{2069}', '\u{feff}',
        ] {
            let e = escape(&c.to_string()).into_owned();
            assert_eq!(e, format!("\\u{{{:x}}}", c as u32));
        }
    }

    #[test]
    fn escaped_text_has_no_unsafe_character_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!escape(&all).chars().any(is_unsafe));
    }

    #[test]
    fn display_pads_the_escaped_text() {
        assert_eq!(format!("[{:<6}]", Escaped("a\nb")), "[a\\nb  ]");
        assert_eq!(format!("[{:>4}]", Escaped("ok")), "[  ok]");
    }
}
