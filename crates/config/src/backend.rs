//! Where state lives, as the config names it: the store ([`StoreUrl`]), the audit log
//! ([`AuditStore`], [`Durability`]), and [`redact_url`] for every message naming a URL.

use std::fmt;
use std::path::{Path, PathBuf};

/// `store = "…"`: where grants, approvals, pins (and, without `counters`, rate-limit
/// counters) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: one file on this machine (the default).
    Sqlite {
        /// The URL as written.
        url: String,
        /// The file; a relative path is taken from the config's folder.
        path: PathBuf,
    },
    /// `redis://HOST:PORT/DB` or `redis+unix://…`: shared by replicas.
    Redis(String),
}

impl StoreUrl {
    /// Reads a store URL; `None` when it is neither SQLite nor Redis (or names nothing).
    pub fn parse(url: &str, base: &Path) -> Option<StoreUrl> {
        if let Some(rest) = url.strip_prefix("sqlite://").filter(|r| !r.is_empty()) {
            return Some(StoreUrl::Sqlite {
                url: url.to_string(),
                path: base.join(rest),
            });
        }
        is_redis(url).then(|| StoreUrl::Redis(url.to_string()))
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        match self {
            StoreUrl::Sqlite { url, .. } | StoreUrl::Redis(url) => url,
        }
    }

    /// The URL for messages and logs ([`redact_url`]).
    pub fn redacted(&self) -> String {
        redact_url(self.as_str())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for `redis://HOST…` and `redis+unix://PATH…`.
pub(crate) fn is_redis(url: &str) -> bool {
    ["redis://", "redis+unix://"]
        .iter()
        .any(|p| url.starts_with(p) && url.len() > p.len())
}

/// Where the audit log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditStore {
    /// Its own SQLite file (by default beside the store, `toolgate-audit.db`).
    Sqlite {
        /// The file.
        path: PathBuf,
        /// When a record counts as written.
        durability: Durability,
    },
    /// `postgres://…`: in PostgreSQL, shared by replicas.
    Postgres(String),
}

/// When an audit commit counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fsync) before a record is reported written: survives a power loss.
    Full,
    /// Written to the operating system before it is reported (survives a crash or SIGKILL
    /// of the gateway), and on disk within `flush_ms`: a flusher thread, off the calls'
    /// path, fsyncs the log at most that long after a commit. A power loss loses at most
    /// the records of the last `flush_ms` (plus the fsync's own time). The default.
    Batched {
        /// The longest a committed record waits for its fsync, in milliseconds.
        flush_ms: u64,
    },
    /// Written to the operating system before it is reported: survives a crash or SIGKILL
    /// of the gateway, not of the machine. About half the added latency at low load.
    Normal,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Batched {
            flush_ms: DEFAULT_FLUSH_MS,
        }
    }
}

/// The default bound of [`Durability::Batched`]: 10 ms.
pub const DEFAULT_FLUSH_MS: u64 = 10;

/// The audit file that goes with a store file: `toolgate.db` → `toolgate-audit.db`.
pub fn audit_path_beside(store_file: &Path) -> PathBuf {
    let stem = store_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "toolgate".into());
    store_file.with_file_name(format!("{stem}-audit.db"))
}

/// A store URL fit for messages and logs: a password in the user part becomes `…`, and a
/// query string (where `redis+unix://` and PostgreSQL URLs may carry one) is cut.
pub fn redact_url(url: &str) -> String {
    let (url, cut) = match url.split_once('?') {
        Some((base, _)) => (base, "?…"),
        None => (url, ""),
    };
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}://{name}:…@{}", &url[..s], &url[at + 1..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    format!("{shown}{cut}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_query_strings_never_reach_a_message() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "redis://:hunter2@r.internal:6379/1",
                "redis://:…@r.internal:6379/1",
            ),
            ("rediss://app:hunter2@r:6380/0", "rediss://app:…@r:6380/0"),
            (
                "redis+unix:///run/redis.sock?pass=hunter2&db=3",
                "redis+unix:///run/redis.sock?…",
            ),
            ("postgres://tg@db:5432/audit", "postgres://tg@db:5432/audit"),
            (
                "postgres://tg:p%40ss@db:5432/audit?sslmode=require",
                "postgres://tg:…@db:5432/audit?…",
            ),
            (
                "postgres://db/audit?password=hunter2",
                "postgres://db/audit?…",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("hunter2") && !redact_url(url).contains("p%40ss"));
        }
    }

    #[test]
    fn store_urls() {
        let base = Path::new("/etc/tg");
        assert_eq!(
            StoreUrl::parse("sqlite://x.db", base),
            Some(StoreUrl::Sqlite {
                url: "sqlite://x.db".into(),
                path: "/etc/tg/x.db".into()
            })
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/x.db", base).map(|s| match s {
                StoreUrl::Sqlite { path, .. } => path,
                StoreUrl::Redis(_) => PathBuf::new(),
            }),
            Some(PathBuf::from("/var/x.db"))
        );
        assert!(matches!(
            StoreUrl::parse("redis+unix:///run/r.sock", base),
            Some(StoreUrl::Redis(_))
        ));
        for bad in ["sqlite://", "redis://", "mysql://x", ""] {
            assert_eq!(StoreUrl::parse(bad, base), None, "{bad}");
        }
    }
}
