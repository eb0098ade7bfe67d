//! The one composition root: the backends a validated [`Config`] names, opened the same
//! way for `serve`, `run` and every CLI command. State in SQLite or Redis (by `store`),
//! rate-limit counters in Redis (by `counters`, else a Redis `store`) or written behind to
//! the SQLite store, and the audit log in its own SQLite file or PostgreSQL.

use std::sync::Arc;

use toolgate_store::{
    AuditLog, CounterStore, PersistentCounters, RedisCounters, RedisState, SqliteStore, StateStore,
    StoreError,
};

use crate::config::{AuditConfig, AuditStore, Config, StoreUrl};

/// Everything a gateway process keeps its state in.
pub struct Backends {
    /// Grants, admin tokens, pins, approvals, policy history.
    pub store: Arc<dyn StateStore>,
    /// Rate-limit counters.
    pub counters: Arc<dyn CounterStore>,
    /// The audit log; `None` when `[audit] enabled = false`.
    pub audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("store", &self.store.describe())
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// A backend that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The state store.
    #[error("cannot open the store `{url}`: {error}")]
    Store {
        /// The store URL, without its password.
        url: String,
        /// Why.
        error: StoreError,
    },
    /// The counters' Redis.
    #[error("cannot reach the counters' Redis")]
    CountersRedis(#[source] StoreError),
    /// The counters kept in the SQLite store.
    #[error("cannot restore rate-limit counters")]
    CountersRestore(#[source] StoreError),
    /// The audit log.
    #[error("cannot open the audit log `{location}`")]
    Audit {
        /// Where it is (a PostgreSQL URL without its password).
        location: String,
        /// Why.
        #[source]
        error: StoreError,
    },
}

/// Opens the store, the counters and (when on) the audit log; `now_ms` is when counter
/// windows restored from SQLite are read.
pub fn open(cfg: &Config, now_ms: u64) -> Result<Backends, BootstrapError> {
    let opened = state(cfg)?;
    let redis = |url: &str| -> Result<Arc<dyn CounterStore>, BootstrapError> {
        Ok(Arc::new(
            RedisCounters::open(url).map_err(BootstrapError::CountersRedis)?,
        ))
    };
    let counters = match (cfg.counters.as_deref(), &opened) {
        (Some(url), _) => redis(url)?,
        (None, State::Redis(_, url)) => redis(url)?,
        (None, State::Sqlite(sqlite)) => Arc::new(
            PersistentCounters::open(sqlite.clone(), now_ms)
                .map_err(BootstrapError::CountersRestore)?,
        ),
    };
    Ok(Backends {
        store: opened.shared(),
        counters,
        audit: open_audit(cfg)?.map(Arc::new),
    })
}

/// Opens the store only (for commands that keep no counters).
pub fn open_store(cfg: &Config) -> Result<Arc<dyn StateStore>, BootstrapError> {
    Ok(state(cfg)?.shared())
}

/// Opens the audit log, or `None` when `[audit] enabled = false`.
pub fn open_audit(cfg: &Config) -> Result<Option<AuditLog>, BootstrapError> {
    if !cfg.audit.enabled {
        return Ok(None);
    }
    audit_log(&cfg.audit).map(Some)
}

/// Opens the audit log `audit` names, on or off (to read it).
pub fn audit_log(audit: &AuditConfig) -> Result<AuditLog, BootstrapError> {
    match &audit.store {
        AuditStore::Postgres(url) => AuditLog::open_postgres(url),
        AuditStore::Sqlite { path, durability } => AuditLog::open_with(path, *durability),
    }
    .map_err(|error| BootstrapError::Audit {
        location: audit.location(),
        error,
    })
}

/// An opened store, by backend: the SQLite store also keeps the rate-limit entries when no
/// Redis is named for them.
enum State<'a> {
    Sqlite(Arc<SqliteStore>),
    Redis(Arc<RedisState>, &'a str),
}

impl State<'_> {
    fn shared(self) -> Arc<dyn StateStore> {
        match self {
            State::Sqlite(s) => s,
            State::Redis(r, _) => r,
        }
    }
}

fn state(cfg: &Config) -> Result<State<'_>, BootstrapError> {
    let err = |error| BootstrapError::Store {
        url: cfg.store.redacted(),
        error,
    };
    Ok(match &cfg.store {
        StoreUrl::Sqlite { path, .. } => {
            State::Sqlite(Arc::new(SqliteStore::open(path).map_err(err)?))
        }
        StoreUrl::Redis(url) => State::Redis(Arc::new(RedisState::open(url).map_err(err)?), url),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::MemFiles;

    fn config(dir: &Path, text: &str) -> Config {
        Config::parse_with(text, &dir.join("toolgate.toml"), dir, &MemFiles::new()).unwrap()
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("toolgate-bootstrap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sqlite_state_with_the_audit_log_beside_it() {
        let d = dir("sqlite");
        let cfg = config(&d, "store = \"sqlite://state.db\"\n");
        let b = open(&cfg, 1_000).unwrap();
        assert_eq!(
            b.store.describe(),
            format!("sqlite://{}", d.join("state.db").display())
        );
        assert!(b.audit.is_some());
        assert!(d.join("state-audit.db").exists());
        drop(b);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_audit_log_off_opens_none_and_a_bad_store_says_which() {
        let d = dir("off");
        let cfg = config(&d, "[audit]\nenabled = false\n");
        assert!(open(&cfg, 0).unwrap().audit.is_none());
        let cfg = config(&d, "store = \"sqlite://no/such/folder/x.db\"\n");
        let e = open_store(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot open the store `sqlite://no/such/folder/x.db`: "),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
