//! Changes an operator makes, shared by the admin API and the CLI: grants, and policy
//! documents put with their history (validated and tested first, written atomically,
//! swapped in at once). Changes made through the API are recorded in the audit log as
//! `kind = "admin"`, naming the admin token's holder.

use std::path::Path;

use serde_json::{json, Value};
use toolgate_audit::{Kind, Record};
use toolgate_policy::duration::parse_duration;
use toolgate_policy::testing::{observed, run_tests};
use toolgate_policy::{load_value, Loaded};
use toolgate_protocol::Escaped;
use toolgate_store::{Grant, NewGrant, PolicyVersion, StateStore, StoreError};

use crate::clock::now_ms;
use crate::config::{policy_version, Config};
use crate::state::AppState;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request is wrong (the message says how).
    #[error("{0}")]
    BadRequest(String),
    /// No such server, policy, grant or version.
    #[error("{0}")]
    NotFound(String),
    /// The policy document does not validate, or its inline tests fail.
    #[error("{message}")]
    Invalid {
        /// One line.
        message: String,
        /// Every finding: `{"pointer", "message"}`.
        errors: Vec<Value>,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A file could not be written, or the config would not reload.
    #[error("{0}")]
    Io(String),
}

/// A grant to create.
#[derive(Debug, Clone, Default)]
pub struct GrantRequest {
    /// The server it opens.
    pub server: String,
    /// Its label.
    pub label: String,
    /// Its policy (default: the server's).
    pub policy: Option<String>,
    /// The identity bound to it (default: the label).
    pub identity: Option<String>,
    /// How long it lives (`30d`, `12h`); default forever.
    pub expires: Option<String>,
}

/// Checks a grant request against the config and creates the grant. Returns it and its
/// token (shown once).
pub fn create_grant(
    cfg: &Config,
    store: &dyn StateStore,
    req: GrantRequest,
    now_ms: u64,
) -> Result<(Grant, String), ManageError> {
    let Some(srv) = cfg.server(&req.server) else {
        let names: Vec<_> = cfg.servers.iter().map(|s| s.name.as_str()).collect();
        return Err(ManageError::NotFound(format!(
            "no server named `{}` in `{}` (servers: {})",
            req.server,
            cfg.file.display(),
            names.join(", ")
        )));
    };
    let policy = req.policy.or_else(|| srv.policy.clone());
    if let Some(p) = &policy {
        if !cfg.policies.contains_key(p) {
            return Err(ManageError::NotFound(format!(
                "no policy named `{p}` in [policies] of `{}`",
                cfg.file.display()
            )));
        }
    }
    if req.label.trim().is_empty() {
        return Err(ManageError::BadRequest(
            "the label must not be empty".into(),
        ));
    }
    let expires_at_ms = match req.expires {
        None => None,
        Some(e) => match parse_duration(&e) {
            Some(secs) => Some(now_ms.saturating_add(secs.saturating_mul(1000))),
            None => {
                return Err(ManageError::BadRequest(format!(
                    "expires `{e}`: expected a duration such as 30d, 12h or 90m"
                )))
            }
        },
    };
    let new = NewGrant {
        label: req.label,
        server: req.server,
        policy,
        identity: req.identity.filter(|i| !i.trim().is_empty()),
        expires_at_ms,
    };
    Ok(store.create_grant(&new, now_ms)?)
}

/// A grant as the API and `grants … --json` show it (the token only right after it was
/// made).
pub fn grant_json(g: &Grant, token: Option<&str>, now_ms: u64) -> Value {
    json!({
        "id": g.id, "label": g.label, "server": g.server, "policy": g.policy, "identity": g.identity,
        "token": token, "token_prefix": g.token_prefix, "created_at_ms": g.created_at_ms,
        "expires_at": g.expires_at_ms, "revoked_at_ms": g.revoked_at_ms, "status": g.status(now_ms).as_str(),
    })
}

/// How many policy documents may be checked (their inline tests run) at once; see
/// [`AppState::validations`]. Each check is bounded by the policy crate's caps
/// (`MAX_TESTS`, `MAX_TOTAL_TEST_CALLS`, `DEFAULT_STEP_BUDGET`), so one takes about a
/// second of CPU at most, on a blocking thread.
pub use crate::state::MAX_CONCURRENT_VALIDATIONS;

/// Validates a policy document and runs its inline tests (within the policy crate's
/// step budget). CPU-bound: call it off the async threads, holding a permit of
/// [`AppState::validations`]. `Err` lists every error and every failed test as
/// `{"pointer", "message"}`.
pub fn check_policy(doc: &Value) -> Result<Loaded, ManageError> {
    let loaded = load_value(doc).map_err(|e| ManageError::Invalid {
        message: e.to_string(),
        errors: e
            .errors
            .iter()
            .map(|d| json!({"pointer": d.pointer, "message": d.message}))
            .collect(),
    })?;
    let failed: Vec<Value> = run_tests(&loaded.policy)
        .into_iter()
        .filter_map(|o| {
            o.failure.map(|why| {
                json!({"pointer": o.pointer, "message": format!("{}: {why} (got {} by {})", o.tool, observed(&o.decision).as_str(), o.decision.rule)})
            })
        })
        .collect();
    if !failed.is_empty() {
        return Err(ManageError::Invalid {
            message: format!("{} inline test(s) failed", failed.len()),
            errors: failed,
        });
    }
    Ok(loaded)
}

/// What a policy put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The policy's name.
    pub name: String,
    /// Its version now.
    pub version: String,
    /// Its version before.
    pub previous: String,
}

/// Replaces `path`'s content: a temporary file beside it (same permissions), synced, then
/// renamed over it, so a reader sees the old text or the new, never half of one. A
/// symlink is followed: its target is replaced.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = toolgate_store::grants::random_hex(4).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces the named policy with `doc`: validated and tested first, the file it
/// replaces kept in the history, the new text written atomically (pretty JSON), and the
/// config reloaded at once so the next call is judged by it. Blocking (file and store
/// writes): call it off the async threads; the caller audits the change.
pub fn put_policy(
    st: &AppState,
    name: &str,
    doc: &Value,
    author: &str,
) -> Result<PutOutcome, ManageError> {
    check_policy(doc)?;
    let _one_at_a_time = st.admin_lock.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = st.config();
    let Some(file) = cfg.policy_files.get(name).cloned() else {
        return Err(ManageError::NotFound(format!("no policy named `{name}`")));
    };
    let now = now_ms();
    let old_text = std::fs::read_to_string(&file)
        .map_err(|e| ManageError::Io(format!("cannot read `{}`: {e}", file.display())))?;
    let previous = policy_version(&old_text);
    st.store.record_policy_version(&PolicyVersion {
        name: name.to_string(),
        version: previous.clone(),
        document: old_text.clone(),
        author: "(file)".into(),
        created_at_ms: now,
    })?;
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(doc).map_err(|e| ManageError::Io(e.to_string()))?
    );
    let version = policy_version(&text);
    let record_new = || {
        st.store.record_policy_version(&PolicyVersion {
            name: name.to_string(),
            version: version.clone(),
            document: text.clone(),
            author: author.to_string(),
            created_at_ms: now,
        })
    };
    if version == previous {
        record_new()?;
    } else {
        write_atomically(&file, &text)
            .map_err(|e| ManageError::Io(format!("cannot write `{}`: {e}", file.display())))?;
        match Config::load(&cfg.file) {
            Ok(new) => {
                st.set_config(new);
                // Live now; a history row that fails to be written does not undo that.
                if let Err(e) = record_new() {
                    tracing::error!(
                        "policy history: version {version} of `{name}` not recorded: {e}"
                    );
                }
            }
            Err(e) => {
                // Another part of the config is broken: put the old file back.
                let _ = write_atomically(&file, &old_text);
                return Err(ManageError::Io(format!(
                    "the policy is valid, but the config no longer loads, so nothing was changed: {e}"
                )));
            }
        }
    }
    Ok(PutOutcome {
        name: name.to_string(),
        version,
        previous,
    })
}

/// Records an admin change in the audit log (`kind = "admin"`, `approver` = who) and waits
/// until it is committed, without blocking a thread (a failure is logged: the change is
/// made already).
pub async fn audit_admin(st: &AppState, who: &str, message: String, server: Option<String>) {
    tracing::info!(by = %Escaped(who), "{}", Escaped(&message));
    if let Some(log) = &st.audit {
        let r = Record {
            kind: Kind::Admin,
            at_ms: now_ms(),
            approver: Some(who.to_string()),
            message: Some(message),
            server,
            ..Record::default()
        };
        if let Err(e) = crate::trail::append_durable(log, r).await {
            tracing::error!("audit log: the admin change was made but not recorded: {e}");
        }
    }
}
