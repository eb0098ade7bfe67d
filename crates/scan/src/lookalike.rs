//! Names that copy a well-known tool: a tool whose name is a well-known tool's name with
//! one character changed (`read_fi1e`, `git_comit`, `create_pull_reqeust`), with letters
//! from another script that look the same (Cyrillic `а` in `reаd_file`), or with a word of
//! trust added (`read_file_secure`, `official_read_file`). A model picks tools by name, so
//! such a tool takes the calls meant for the trusted one (tool squatting).
//!
//! An exact copy is not flagged: many servers honestly offer their own `read_file` or
//! `list_tables`. Neither is a change of naming style (`read-file`, `readFile`), a plural
//! (`read_files`), a change of a short word (`get_file` against `set_file`), nor a
//! near name that the tool's own server also has (`get_issue` next to `get_issues`).

use crate::words::split_name;

/// Well-known tools, by server: the reference servers of `modelcontextprotocol/servers`
/// (current and archived), Microsoft's Playwright server, and the common names of mail and
/// payment servers. A name a model has learnt to trust is what a squatter copies.
pub const WELL_KNOWN_TOOLS: &[(&str, &[&str])] = &[
    (
        "filesystem",
        &[
            "read_file",
            "read_text_file",
            "read_media_file",
            "read_multiple_files",
            "write_file",
            "edit_file",
            "create_directory",
            "list_directory",
            "list_directory_with_sizes",
            "directory_tree",
            "move_file",
            "search_files",
            "get_file_info",
            "list_allowed_directories",
        ],
    ),
    (
        "git",
        &[
            "git_status",
            "git_diff_unstaged",
            "git_diff_staged",
            "git_diff",
            "git_commit",
            "git_add",
            "git_reset",
            "git_log",
            "git_create_branch",
            "git_checkout",
            "git_show",
            "git_init",
            "git_branch",
        ],
    ),
    (
        "memory",
        &[
            "create_entities",
            "create_relations",
            "add_observations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "read_graph",
            "search_nodes",
            "open_nodes",
        ],
    ),
    ("fetch", &["fetch"]),
    ("time", &["get_current_time", "convert_time"]),
    ("sequentialthinking", &["sequentialthinking"]),
    (
        "everything",
        &[
            "echo",
            "add",
            "printEnv",
            "longRunningOperation",
            "sampleLLM",
            "getTinyImage",
        ],
    ),
    (
        "github",
        &[
            "create_or_update_file",
            "search_repositories",
            "create_repository",
            "get_file_contents",
            "push_files",
            "create_issue",
            "create_pull_request",
            "fork_repository",
            "create_branch",
            "list_commits",
            "list_issues",
            "update_issue",
            "add_issue_comment",
            "search_code",
            "search_issues",
            "search_users",
            "get_issue",
            "get_pull_request",
            "list_pull_requests",
            "create_pull_request_review",
            "merge_pull_request",
            "get_pull_request_files",
            "get_pull_request_status",
            "update_pull_request_branch",
            "get_pull_request_comments",
            "get_pull_request_reviews",
        ],
    ),
    (
        "slack",
        &[
            "slack_list_channels",
            "slack_post_message",
            "slack_reply_to_thread",
            "slack_add_reaction",
            "slack_get_channel_history",
            "slack_get_thread_replies",
            "slack_get_users",
            "slack_get_user_profile",
        ],
    ),
    ("postgres", &["query"]),
    (
        "sqlite",
        &[
            "read_query",
            "write_query",
            "create_table",
            "list_tables",
            "describe_table",
            "append_insight",
        ],
    ),
    (
        "puppeteer",
        &[
            "puppeteer_navigate",
            "puppeteer_screenshot",
            "puppeteer_click",
            "puppeteer_fill",
            "puppeteer_select",
            "puppeteer_hover",
            "puppeteer_evaluate",
        ],
    ),
    ("brave-search", &["brave_web_search", "brave_local_search"]),
    (
        "google-maps",
        &[
            "maps_geocode",
            "maps_reverse_geocode",
            "maps_search_places",
            "maps_place_details",
            "maps_distance_matrix",
            "maps_elevation",
            "maps_directions",
        ],
    ),
    ("sentry", &["get_sentry_issue"]),
    ("aws-kb-retrieval", &["retrieve_from_aws_kb"]),
    (
        "playwright",
        &[
            "browser_navigate",
            "browser_navigate_back",
            "browser_click",
            "browser_type",
            "browser_snapshot",
            "browser_take_screenshot",
            "browser_evaluate",
            "browser_close",
            "browser_file_upload",
            "browser_press_key",
            "browser_fill_form",
            "browser_select_option",
            "browser_hover",
            "browser_drag",
            "browser_tabs",
            "browser_wait_for",
            "browser_handle_dialog",
            "browser_console_messages",
            "browser_network_requests",
            "browser_install",
            "browser_resize",
        ],
    ),
    (
        "mail servers",
        &[
            "send_email",
            "read_email",
            "search_emails",
            "draft_email",
            "delete_email",
        ],
    ),
    (
        "payment servers",
        &[
            "create_customer",
            "list_customers",
            "create_product",
            "create_price",
            "create_payment_link",
            "create_invoice",
            "create_refund",
            "create_subscription",
            "cancel_subscription",
        ],
    ),
];

/// Words that claim trust, added to a copied name to bait the model.
const TRUST_WORDS: &[&str] = &[
    "secure", "safe", "official", "verified", "trusted", "enhanced", "real", "fixed", "new", "v2",
    "pro", "better", "original",
];

/// Shortest well-known name compared by edit distance: one character in a shorter name is
/// too often another honest word.
const MIN_EDIT_LEN: usize = 8;

/// How a name copies a well-known one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookAlike {
    /// Letters of another script that look like Latin ones.
    Homoglyph {
        /// The well-known name it spells.
        copies: &'static str,
        /// That tool's server.
        server: &'static str,
    },
    /// Latin letters mixed with look-alike letters of another script, copying no known name.
    MixedScript,
    /// ASCII characters that look alike (`0`/`o`, `1`/`l`, `rn`/`m`).
    Confusable {
        /// The well-known name it spells.
        copies: &'static str,
        /// That tool's server.
        server: &'static str,
    },
    /// One character inserted, dropped, replaced or two swapped.
    Typo {
        /// The well-known name it is one edit from.
        copies: &'static str,
        /// That tool's server.
        server: &'static str,
    },
    /// A well-known name with a word of trust added.
    TrustAffix {
        /// The well-known name it extends.
        copies: &'static str,
        /// That tool's server.
        server: &'static str,
    },
}

impl LookAlike {
    /// A sentence for the report.
    pub fn message(&self, name: &str) -> String {
        match self {
            LookAlike::Homoglyph { copies, server } => format!(
                "Name `{name}` spells `{copies}` ({server} server) with look-alike letters of another script"
            ),
            LookAlike::MixedScript => format!(
                "Name `{name}` mixes Latin letters with look-alike Cyrillic or Greek ones"
            ),
            LookAlike::Confusable { copies, server } => format!(
                "Name `{name}` spells `{copies}` ({server} server) with look-alike characters (0/o, 1/l, rn/m)"
            ),
            LookAlike::Typo { copies, server } => format!(
                "Name `{name}` is one character away from the well-known `{copies}` ({server} server)"
            ),
            LookAlike::TrustAffix { copies, server } => format!(
                "Name `{name}` is the well-known `{copies}` ({server} server) with a word of trust added"
            ),
        }
    }
}

fn known() -> impl Iterator<Item = (&'static str, &'static str)> {
    WELL_KNOWN_TOOLS
        .iter()
        .flat_map(|(server, names)| names.iter().map(move |n| (*n, *server)))
}

fn find_known(lower: &str) -> Option<(&'static str, &'static str)> {
    known().find(|(n, _)| n.to_lowercase() == lower)
}

/// The Latin letter a Cyrillic or Greek letter looks like.
fn latin_twin(c: char) -> Option<char> {
    const PAIRS: &[(char, char)] = &[
        ('а', 'a'),
        ('е', 'e'),
        ('о', 'o'),
        ('р', 'p'),
        ('с', 'c'),
        ('х', 'x'),
        ('у', 'y'),
        ('і', 'i'),
        ('ј', 'j'),
        ('ԁ', 'd'),
        ('һ', 'h'),
        ('ѕ', 's'),
        ('к', 'k'),
        ('м', 'm'),
        ('т', 't'),
        ('в', 'b'),
        ('н', 'h'),
        ('А', 'A'),
        ('Е', 'E'),
        ('О', 'O'),
        ('Р', 'P'),
        ('С', 'C'),
        ('Х', 'X'),
        ('І', 'I'),
        ('К', 'K'),
        ('М', 'M'),
        ('Т', 'T'),
        ('В', 'B'),
        ('Н', 'H'),
        ('α', 'a'),
        ('ε', 'e'),
        ('ο', 'o'),
        ('ρ', 'p'),
        ('ι', 'i'),
        ('υ', 'u'),
        ('ν', 'v'),
        ('κ', 'k'),
        ('τ', 't'),
        ('Α', 'A'),
        ('Ε', 'E'),
        ('Ο', 'O'),
        ('Ρ', 'P'),
        ('Ι', 'I'),
        ('Υ', 'Y'),
        ('Ν', 'N'),
        ('Κ', 'K'),
        ('Τ', 'T'),
    ];
    PAIRS.iter().find(|(k, _)| *k == c).map(|(_, v)| *v)
}

/// The name with look-alike ASCII characters replaced by the letters they imitate.
fn ascii_skeleton(name: &str) -> String {
    let snake_with_lower = name.contains('_') && name.chars().any(|c| c.is_ascii_lowercase());
    let s = name.replace("rn", "m").replace("vv", "w");
    s.chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | '|' => 'l',
            '5' => 's',
            'I' if snake_with_lower => 'l',
            c => c,
        })
        .collect()
}

/// True when `a` and `b` differ by exactly one insertion, deletion, substitution or swap
/// of two neighbouring characters.
fn one_edit(a: &[char], b: &[char]) -> bool {
    if a == b {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let i = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    if short.len() == long.len() {
        let rest_equal = |from: usize| short.get(from..) == long.get(from..);
        let substitution = rest_equal(i + 1);
        let swap =
            short.get(i) == long.get(i + 1) && short.get(i + 1) == long.get(i) && rest_equal(i + 2);
        substitution || swap
    } else if long.len() == short.len() + 1 {
        short.get(i..) == long.get(i + 1..)
    } else {
        false
    }
}

/// True when the change between two names is one an honest server makes: naming style,
/// a plural, or a different short word.
fn honest_variant(name: &str, known: &str) -> bool {
    let (a, b) = (split_name(name), split_name(known));
    if a == b {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<(&String, &String)> = a.iter().zip(b.iter()).filter(|(x, y)| x != y).collect();
    match diff.as_slice() {
        [(x, y)] => {
            let plural = |p: &str, s: &str| {
                p.strip_suffix('s')
                    .is_some_and(|r| r == s || r.strip_suffix('e').is_some_and(|r| r == s))
            };
            plural(x, y) || plural(y, x) || y.chars().count() < 4
        }
        _ => false,
    }
}

/// How `name` copies a well-known tool's name, if it does. `siblings` are the names of the
/// tool's own server: a near name the server also has is its own, not a copy.
pub fn look_alike(name: &str, siblings: &[&str]) -> Option<LookAlike> {
    if known().any(|(n, _)| n == name) {
        return None;
    }
    let own = |n: &str| siblings.contains(&n);
    if !name.is_ascii() {
        let twins: String = name.chars().map(|c| latin_twin(c).unwrap_or(c)).collect();
        if twins != name {
            if let Some((copies, server)) = find_known(&twins.to_lowercase()) {
                return Some(LookAlike::Homoglyph { copies, server });
            }
            let latin = name.chars().any(|c| c.is_ascii_alphabetic());
            if latin && name.chars().any(|c| latin_twin(c).is_some()) {
                return Some(LookAlike::MixedScript);
            }
        }
        return None;
    }
    let lower = name.to_lowercase();
    if find_known(&lower).is_some() {
        // The same name in another case: a naming style, not a copy.
        return None;
    }
    let skeleton = ascii_skeleton(name);
    if skeleton != name {
        if let Some((copies, server)) = find_known(&skeleton.to_lowercase()) {
            if !own(copies) {
                return Some(LookAlike::Confusable { copies, server });
            }
        }
    }
    let chars: Vec<char> = lower.chars().collect();
    let words = split_name(name);
    for (copies, server) in known() {
        if own(copies) {
            continue;
        }
        let k: Vec<char> = copies.to_lowercase().chars().collect();
        if k.len() >= MIN_EDIT_LEN && one_edit(&chars, &k) && !honest_variant(name, copies) {
            return Some(LookAlike::Typo { copies, server });
        }
        let kw = split_name(copies);
        if kw.len() >= 2 && words.len() == kw.len() + 1 {
            let suffixed = words.get(..kw.len()) == Some(kw.as_slice())
                && words
                    .last()
                    .is_some_and(|w| TRUST_WORDS.contains(&w.as_str()));
            let prefixed = words.get(1..) == Some(kw.as_slice())
                && words
                    .first()
                    .is_some_and(|w| TRUST_WORDS.contains(&w.as_str()));
            if suffixed || prefixed {
                return Some(LookAlike::TrustAffix { copies, server });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_found() {
        let hit = |n: &str| look_alike(n, &[]).is_some();
        assert!(hit("read_fi1e"));
        assert!(hit("re\u{0430}d_file"));
        assert!(hit("git_comit"));
        assert!(hit("create_pull_reqeust"));
        assert!(hit("slack_post_mesage"));
        assert!(hit("read_file_secure"));
        assert!(hit("official_read_file"));
        assert!(hit("list_directoy"));
    }

    #[test]
    fn honest_names_are_not() {
        let miss = |n: &str| look_alike(n, &[]).is_none();
        assert!(miss("read_file"));
        assert!(miss("read-file"));
        assert!(miss("readFile"));
        assert!(miss("read_files"));
        assert!(miss("list_table"));
        assert!(miss("get_file"));
        assert!(miss("send_emails"));
        assert!(miss("s3_list_buckets"));
        assert!(miss("get_issues"));
        assert!(look_alike("get_issuee", &["get_issue"]).is_none());
    }

    #[test]
    fn one_edit_cases() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(one_edit(&c("abcd"), &c("abdc")));
        assert!(one_edit(&c("abcd"), &c("abd")));
        assert!(one_edit(&c("abcd"), &c("abxd")));
        assert!(!one_edit(&c("abcd"), &c("abcd")));
        assert!(!one_edit(&c("abcd"), &c("badc")));
    }
}
