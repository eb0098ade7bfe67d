//! `[[virtual_servers]]`: one endpoint combining tools from several `[[servers]]`.
//!
//! A virtual server is a [`crate::ServerConfig`] whose transport is
//! [`crate::Transport::Virtual`]: its includes say which tools of which servers it exposes
//! and under which names. The mapping is pure and lives here, so the gateway, the scanner
//! and the CLI read one definition: [`Include::expose`] (original → exposed) and
//! [`Include::original`] (exposed → original).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One `[[virtual_servers.include]]`: tools of one server, under their exposed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The `[[servers]]` entry they come from.
    pub server: String,
    /// Names or `*` patterns of the tools included; empty: all of them.
    pub tools: Vec<String>,
    /// Put before every exposed name that is not renamed (and before prompt names).
    pub prefix: String,
    /// Original name → exposed name (the prefix is not applied to these).
    pub rename: Vec<(String, String)>,
    /// Exposed name → the description agents see instead of the upstream's.
    pub describe: Vec<(String, String)>,
}

impl Include {
    /// True when the include takes the tool named `original`.
    pub fn includes(&self, original: &str) -> bool {
        self.tools.is_empty() || self.tools.iter().any(|p| glob(p, original))
    }

    /// The exposed name of the upstream's tool `original`, if the include takes it.
    pub fn expose(&self, original: &str) -> Option<String> {
        if !self.includes(original) {
            return None;
        }
        Some(
            match self.rename.iter().find(|(from, _)| from == original) {
                Some((_, to)) => to.clone(),
                None => format!("{}{original}", self.prefix),
            },
        )
    }

    /// The upstream's name of the exposed tool `exposed`, if it is one of this include's.
    pub fn original(&self, exposed: &str) -> Option<String> {
        if let Some((from, _)) = self.rename.iter().find(|(_, to)| to == exposed) {
            return Some(from.clone());
        }
        let name = exposed.strip_prefix(self.prefix.as_str())?;
        // A renamed tool is exposed only under its new name.
        if self.rename.iter().any(|(from, _)| from == name) {
            return None;
        }
        self.includes(name).then(|| name.to_string())
    }

    /// The description override of the exposed tool `exposed`.
    pub fn description(&self, exposed: &str) -> Option<&str> {
        self.describe
            .iter()
            .find(|(name, _)| name == exposed)
            .map(|(_, d)| d.as_str())
    }

    /// The exposed name of a prompt of this server (the prefix, no renames).
    pub fn expose_prompt(&self, original: &str) -> String {
        format!("{}{original}", self.prefix)
    }

    /// The upstream's name of an exposed prompt, if it carries this include's prefix.
    pub fn original_prompt(&self, exposed: &str) -> Option<String> {
        exposed
            .strip_prefix(self.prefix.as_str())
            .map(str::to_string)
    }

    /// The exposed names this include gives for certain, without asking the upstream: its
    /// explicit (non-pattern) tool names and its renames.
    fn known_names(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .tools
            .iter()
            .filter(|t| !t.contains('*'))
            .filter_map(|t| self.expose(t).map(|e| (t.clone(), e)))
            .collect();
        for (from, to) in &self.rename {
            if !out.iter().any(|(o, _)| o == from) {
                out.push((from.clone(), to.clone()));
            }
        }
        out
    }
}

/// Resolves an exposed tool name to the include that serves it and the original name: the
/// first include (in config order) that claims it.
pub fn route<'a>(includes: &'a [Include], exposed: &str) -> Option<(&'a Include, String)> {
    includes
        .iter()
        .find_map(|inc| inc.original(exposed).map(|o| (inc, o)))
}

/// True when `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The raw `[[virtual_servers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVirtual {
    pub(crate) name: String,
    pub(crate) policy: Option<String>,
    pub(crate) state_fail_mode: Option<String>,
    #[serde(default)]
    pub(crate) sanitize_descriptions: Option<bool>,
    pub(crate) audit_arguments: Option<String>,
    #[serde(default)]
    pub(crate) include: Vec<RawInclude>,
}

/// The raw `[[virtual_servers.include]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInclude {
    server: String,
    tools: Option<Vec<String>>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    describe: BTreeMap<String, String>,
}

/// Checks the includes of the virtual server at `at` against the servers declared
/// (`real`: names of `[[servers]]`), recording every error with its path.
pub(crate) fn includes(
    at: &str,
    raw: Vec<RawInclude>,
    real: &[String],
    errors: &mut Vec<String>,
) -> Vec<Include> {
    if raw.is_empty() {
        errors.push(format!(
            "{at}.include: a virtual server needs at least one [[virtual_servers.include]] naming a server"
        ));
    }
    let mut out: Vec<Include> = vec![];
    for (j, r) in raw.into_iter().enumerate() {
        let at = format!("{at}.include[{j}]");
        if !real.contains(&r.server) {
            errors.push(format!(
                "{at}.server: no [[servers]] entry named `{}` (a virtual server includes real servers only)",
                r.server
            ));
        }
        if out.iter().any(|o| o.server == r.server) {
            errors.push(format!(
                "{at}.server: `{}` is included twice; list all its tools in one include",
                r.server
            ));
        }
        let tools = r.tools.unwrap_or_default();
        for t in &tools {
            if t.is_empty() {
                errors.push(format!("{at}.tools: an empty name"));
            }
        }
        if !r.prefix.is_empty() && !r.prefix.chars().all(name_char) {
            errors.push(format!(
                "{at}.prefix: expected letters, digits, '-', '_' and '.', got {:?}",
                r.prefix
            ));
        }
        let inc = Include {
            server: r.server,
            tools,
            prefix: r.prefix,
            rename: r.rename.into_iter().collect(),
            describe: r.describe.into_iter().collect(),
        };
        for (from, to) in &inc.rename {
            if !inc.includes(from) {
                errors.push(format!(
                    "{at}.rename.{from}: `{from}` is not among this include's tools"
                ));
            }
            if to.is_empty() {
                errors.push(format!("{at}.rename.{from}: the new name is empty"));
            }
        }
        let known = inc.known_names();
        for (name, _) in &inc.describe {
            let named = known.iter().any(|(_, e)| e == name) || inc.original(name).is_some();
            if !named {
                errors.push(format!(
                    "{at}.describe.{name}: `{name}` is not an exposed name of this include (describe is keyed by the name agents see, after prefix and rename)"
                ));
            }
        }
        out.push(inc);
    }
    // Collisions among the names known without asking the upstreams.
    let mut seen: Vec<(String, String, usize)> = vec![];
    for (j, inc) in out.iter().enumerate() {
        let mut mine: Vec<String> = vec![];
        for (original, exposed) in inc.known_names() {
            if let Some((other, _, k)) = seen.iter().find(|(e, _, _)| *e == exposed) {
                let (o_server, o_tool) = other_of(&seen, other);
                errors.push(format!(
                    "{at}.include[{j}]: the exposed name `{exposed}` of {}.{original} collides with {o_server}.{o_tool} (include[{k}]); give one a prefix or a rename",
                    inc.server
                ));
            } else if mine.contains(&exposed) {
                errors.push(format!(
                    "{at}.include[{j}]: two tools of {} are exposed as `{exposed}`",
                    inc.server
                ));
            }
            mine.push(exposed.clone());
        }
        for (original, exposed) in inc.known_names() {
            if !seen.iter().any(|(e, _, _)| *e == exposed) {
                seen.push((exposed, format!("{}.{original}", inc.server), j));
            }
        }
    }
    out
}

fn other_of<'a>(seen: &'a [(String, String, usize)], exposed: &str) -> (&'a str, &'a str) {
    seen.iter()
        .find(|(e, _, _)| e == exposed)
        .and_then(|(_, full, _)| full.split_once('.'))
        .unwrap_or(("?", "?"))
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inc(tools: &[&str], prefix: &str, rename: &[(&str, &str)]) -> Include {
        Include {
            server: "s".into(),
            tools: tools.iter().map(|t| t.to_string()).collect(),
            prefix: prefix.into(),
            rename: rename
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            describe: vec![],
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("read_*", "read_file"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxcyyb"));
        assert!(!glob("read_*", "write_file"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn names_map_both_ways() {
        let i = inc(
            &["read_*", "list_directory"],
            "fs_",
            &[("read_file", "cat")],
        );
        assert_eq!(i.expose("read_text"), Some("fs_read_text".into()));
        assert_eq!(i.expose("read_file"), Some("cat".into()));
        assert_eq!(i.expose("write_file"), None);
        assert_eq!(i.original("fs_read_text"), Some("read_text".into()));
        assert_eq!(i.original("cat"), Some("read_file".into()));
        // The renamed tool is not reachable under its prefixed name.
        assert_eq!(i.original("fs_read_file"), None);
        assert_eq!(i.original("fs_write_file"), None);
        assert_eq!(i.original("read_text"), None);
    }

    #[test]
    fn the_first_include_that_claims_a_name_serves_it() {
        let a = inc(&["x"], "", &[]);
        let mut b = inc(&[], "", &[]);
        b.server = "t".into();
        let all = [a, b];
        assert_eq!(
            route(&all, "x").map(|(i, o)| (i.server.as_str(), o)),
            Some(("s", "x".into()))
        );
        assert_eq!(
            route(&all, "y").map(|(i, o)| (i.server.as_str(), o)),
            Some(("t", "y".into()))
        );
    }

    #[test]
    fn collisions_and_unknown_servers_are_errors_naming_both() {
        let raw: Vec<RawInclude> = toml::from_str::<BTreeMap<String, Vec<RawInclude>>>(
            r#"
            include = [
              { server = "fs", tools = ["x", "y"] },
              { server = "demo", tools = ["z"], rename = { z = "x" } },
              { server = "nope" },
            ]"#,
        )
        .unwrap()
        .remove("include")
        .unwrap();
        let mut errors = vec![];
        includes(
            "virtual_servers[0]",
            raw,
            &["fs".into(), "demo".into()],
            &mut errors,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("no [[servers]] entry named `nope`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("`x` of demo.z collides with fs.x (include[0])"),
            "{errors:?}"
        );
    }
}
