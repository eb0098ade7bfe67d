//! `toolgate.toml`, in two stages: serde reads the raw shape (unknown keys refused), then
//! [`Config::validate`] checks meaning and collects every error with its path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::Digest as _;
use toolgate_audit::{ArgumentsMode, Redactor};
use toolgate_policy::duration::parse_duration;
use toolgate_policy::Policy;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8555";
/// The default request body limit: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// The hard maximum of `upstream_timeout`.
pub const MAX_UPSTREAM_TIMEOUT_SECS: u64 = 600;
/// The default cap on an upstream answer toolgate reads whole: 64 MiB.
pub const DEFAULT_MAX_ANSWER: usize = 64 * 1024 * 1024;
/// The default cap on open client connections (lowered below the file limit at start).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The default time request headers have to arrive, seconds.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// The default cap on open sessions of one grant on a stdio or legacy SSE server (each
/// session is a child process or a connection).
pub const DEFAULT_SESSIONS_PER_GRANT: usize = 16;
/// The default cap on open sessions of a stdio or legacy SSE server.
pub const DEFAULT_SESSIONS_PER_SERVER: usize = 64;
/// The default cap on open sessions of one grant on a Streamable HTTP server (a session
/// costs toolgate a table entry).
pub const DEFAULT_HTTP_SESSIONS_PER_GRANT: usize = 256;
/// The default cap on open sessions of a Streamable HTTP server.
pub const DEFAULT_HTTP_SESSIONS_PER_SERVER: usize = 4096;
/// The default idle time after which a session is closed, seconds (30 minutes).
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 30 * 60;
/// The default idle time after which a one-shot session (at most one request after
/// `initialize`) is closed, seconds.
pub const DEFAULT_SESSION_IDLE_BRIEF_SECS: u64 = 60;
/// At a session cap, a session idle at least this long is closed to make room.
pub const SESSION_EVICT_AFTER_SECS: u64 = 60;

/// A config that could not be used: every problem, one line each.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid config `{}`:\n  {}", file.display(), errors.join("\n  "))]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Each error, prefixed with its path (`servers[0].url: ...`).
    pub errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    store: Option<String>,
    counters: Option<String>,
    max_body: Option<toml::Value>,
    upstream_timeout: Option<toml::Value>,
    body_timeout: Option<toml::Value>,
    header_timeout: Option<toml::Value>,
    max_answer: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    max_sessions_per_grant: Option<toml::Value>,
    max_sessions_per_server: Option<toml::Value>,
    session_idle: Option<toml::Value>,
    session_idle_brief: Option<toml::Value>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allow_private_upstreams: bool,
    #[serde(default)]
    policies: BTreeMap<String, String>,
    #[serde(default)]
    servers: Vec<RawServer>,
    audit: Option<RawAudit>,
    approvals: Option<RawApprovals>,
    auth: Option<RawAuth>,
    tracing: Option<RawTracing>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    audience: String,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    identity_claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    webhook: Option<String>,
    webhook_secret: Option<String>,
    max_pending_per_grant: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    enabled: Option<bool>,
    path: Option<String>,
    retention: Option<String>,
    sync: Option<String>,
    flush_interval: Option<toml::Value>,
    store: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    url: Option<String>,
    sse_url: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    policy: Option<String>,
    pinning: Option<String>,
    state_fail_mode: Option<String>,
    #[serde(default)]
    sanitize_descriptions: bool,
    audit_arguments: Option<String>,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    audit_allow_secrets: Vec<String>,
}

/// What toolgate does when a tool's definition changes after it was pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pinning {
    /// Hold the tool (hidden, calls denied with `(definition changed)`) until
    /// `toolgate tools approve` (the default).
    #[default]
    Enforce,
    /// Record and log the change, but let the tool through.
    Warn,
    /// Do not pin.
    Off,
}

/// What a call does when shared state (Redis counters, the PostgreSQL audit log) cannot
/// be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse the call with a clear reason (the default).
    #[default]
    Closed,
    /// Let it through without counting it (limits not enforced) and without a durable
    /// audit record; each such call is logged as an error and counted in
    /// `toolgate_store_errors_total`.
    Open,
}

/// How toolgate reaches an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP at this URL.
    Http {
        /// The endpoint URL.
        url: String,
        /// Headers sent upstream (credentials); the agent's `Authorization` never is.
        headers: Vec<(String, String)>,
    },
    /// A legacy HTTP+SSE server (2024-11-05 transport): the event stream's URL.
    Sse {
        /// The GET event stream; its `endpoint` event names where messages are POSTed.
        url: String,
        /// Headers sent upstream on the GET and every POST.
        headers: Vec<(String, String)>,
    },
    /// A local process over stdio, started by toolgate (never from agent input).
    Stdio {
        /// The program (`toolgate` means this binary).
        command: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment.
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: PathBuf,
    },
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Name, served at `/mcp/{name}`.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// The policy of grants created without one.
    pub policy: Option<String>,
    /// Tool pinning.
    pub pinning: Pinning,
    /// What a call does when the counter store or the audit log cannot be reached.
    pub state_fail_mode: FailMode,
    /// Strip control and invisible characters from tool descriptions sent to agents.
    pub sanitize_descriptions: bool,
    /// What audit records keep of arguments.
    pub audit_arguments: ArgumentsMode,
    /// Redaction applied to argument values kept in the audit (and shown to approvers).
    pub redactor: Redactor,
}

/// The `[audit]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Record every judged request (default on). Off only for measuring its cost.
    pub enabled: bool,
    /// The audit log's file (default: beside the store, `toolgate-audit.db`).
    pub path: PathBuf,
    /// Delete records older than this many milliseconds (default: keep forever).
    pub retention_ms: Option<u64>,
    /// When a record counts as written: `batched` (in the OS before the call is forwarded,
    /// on disk within `flush_interval`: the default), `full` (fsync) or `normal`.
    pub durability: toolgate_store::Durability,
    /// `postgres://…`: the log lives in PostgreSQL (shared by replicas), not in `path`.
    pub postgres: Option<String>,
}

impl AuditConfig {
    /// Opens the audit log this config names.
    pub fn open(&self) -> Result<toolgate_store::AuditLog, toolgate_store::StoreError> {
        match &self.postgres {
            Some(url) => toolgate_store::AuditLog::open_postgres(url),
            None => toolgate_store::AuditLog::open_with(&self.path, self.durability),
        }
    }

    /// Where the log is, for messages (a PostgreSQL URL without its password).
    pub fn location(&self) -> String {
        match &self.postgres {
            Some(url) => toolgate_store::redact_url(url),
            None => self.path.display().to_string(),
        }
    }
}

/// A validated config with its policies loaded.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub file: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Store URL.
    pub store: String,
    /// Where rate-limit counters live when not in the store: `redis://…` (shared by
    /// replicas). `None`: in the SQLite store.
    pub counters: Option<String>,
    /// The folder relative paths are taken from.
    pub base: PathBuf,
    /// Request body limit in bytes.
    pub max_body: usize,
    /// Per-request upstream timeout, seconds.
    pub upstream_timeout_secs: u64,
    /// How long a request body may take to arrive, seconds (slow senders get 408).
    pub body_timeout_secs: u64,
    /// How long request headers may take to arrive, seconds (then the connection is closed).
    pub header_timeout_secs: u64,
    /// The largest upstream answer toolgate reads whole (JSON bodies, SSE events, stdio
    /// lines), bytes; a larger one is refused with an error naming the limit.
    pub max_answer: usize,
    /// Open client connections at most (read at start).
    pub max_connections: usize,
    /// Session caps.
    pub sessions: SessionLimits,
    /// Extra accepted `Origin` values.
    pub allowed_origins: Vec<String>,
    /// Extra accepted `Host` names (`"*"`: any); see [`crate::host`].
    pub allowed_hosts: Vec<String>,
    /// Servers added through the admin API may point at loopback and private addresses
    /// (default: refused, so an admin token cannot aim the gateway at internal services).
    pub allow_private_upstreams: bool,
    /// Servers by name, in file order.
    pub servers: Vec<ServerConfig>,
    /// Loaded policies by name.
    pub policies: BTreeMap<String, Arc<Policy>>,
    /// The policy files, by name (for watching).
    pub policy_files: BTreeMap<String, PathBuf>,
    /// Each policy's version: the first 16 hex digits of the SHA-256 of its file.
    pub policy_versions: BTreeMap<String, String>,
    /// The audit log.
    pub audit: AuditConfig,
    /// The approval queue.
    pub approvals: ApprovalsConfig,
    /// JWT identities, when configured.
    pub jwt: Option<JwtConfig>,
    /// `[tracing]`: spans exported over OTLP/HTTP, when configured.
    pub tracing: Option<TracingConfig>,
}

/// The bounds on agent sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Open sessions one grant may hold on one server (`None`: by transport, see
    /// [`SessionLimits::caps`]).
    pub per_grant: Option<usize>,
    /// Open sessions on one server, all grants together (`None`: by transport).
    pub per_server: Option<usize>,
    /// Idle sessions are closed after this many seconds.
    pub idle_secs: u64,
    /// One-shot sessions (at most one request after `initialize`) are closed after this
    /// many idle seconds.
    pub idle_brief_secs: u64,
}

impl SessionLimits {
    /// The caps for a server reached over `transport`, as
    /// [`crate::session::Sessions::reserve`] takes them: the configured ones, else the
    /// defaults for what a session costs there (a child process or a connection for
    /// stdio and legacy SSE; a table entry for Streamable HTTP).
    pub fn caps(&self, transport: &Transport) -> crate::session::Caps {
        let (grant, server) = match transport {
            Transport::Http { .. } => (
                DEFAULT_HTTP_SESSIONS_PER_GRANT,
                DEFAULT_HTTP_SESSIONS_PER_SERVER,
            ),
            Transport::Stdio { .. } | Transport::Sse { .. } => {
                (DEFAULT_SESSIONS_PER_GRANT, DEFAULT_SESSIONS_PER_SERVER)
            }
        };
        crate::session::Caps {
            per_grant: self.per_grant.unwrap_or(grant),
            per_server: self.per_server.unwrap_or(server),
            evict_after: std::time::Duration::from_secs(SESSION_EVICT_AFTER_SECS),
        }
    }
}

/// `[tracing]`: where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`).
    pub otlp_endpoint: String,
    /// `service.name` of the spans (default `toolgate`).
    pub service_name: String,
}

/// Where the issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file.
    File(PathBuf),
    /// A JWKS URL (fetched at start, and again for an unknown key id).
    Url(String),
}

/// `[auth.jwt]`: agents may present JWTs from this issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `iss` must equal this.
    pub issuer: String,
    /// `aud` must contain this.
    pub audience: String,
    /// The issuer's keys.
    pub jwks: JwksSource,
    /// The claim naming the identity (default `sub`).
    pub identity_claim: String,
}

/// The default cap on calls of one grant waiting for approval at once.
pub const DEFAULT_PENDING_PER_GRANT: usize = 20;

/// The `[approvals]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// Where held calls are announced.
    pub webhook: Option<Webhook>,
    /// Calls of one grant waiting for approval at once; a new one over it is denied.
    pub max_pending_per_grant: usize,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            webhook: None,
            max_pending_per_grant: DEFAULT_PENDING_PER_GRANT,
        }
    }
}

/// A webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The URL POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key of `X-Toolgate-Signature`.
    pub secret: String,
}

/// A policy file's version: the first 16 hex digits of the SHA-256 of its text.
pub fn policy_version(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
        .chars()
        .take(16)
        .collect()
}

/// A timeout setting: seconds as an integer or a duration such as `"60s"` or `"2m"`, above
/// zero and at most the hard maximum (10 minutes); `default` when absent or wrong (and the
/// error recorded).
fn timeout_setting(
    key: &str,
    value: Option<&toml::Value>,
    default: u64,
    errors: &mut Vec<String>,
) -> u64 {
    duration_setting(key, value, default, MAX_UPSTREAM_TIMEOUT_SECS, errors)
}

/// A positive count setting (`max_connections = 1024`), at most `max`.
fn count_setting(
    key: &str,
    value: Option<&toml::Value>,
    default: usize,
    max: usize,
    errors: &mut Vec<String>,
) -> usize {
    match value {
        None => default,
        Some(toml::Value::Integer(n)) if *n > 0 && usize::try_from(*n).is_ok_and(|n| n <= max) => {
            usize::try_from(*n).unwrap_or(default)
        }
        Some(v) => {
            errors.push(format!(
                "{key}: expected a whole number from 1 to {max}, got {v}"
            ));
            default
        }
    }
}

/// A duration in milliseconds: `"10ms"`, `"1s"`, or a whole number of milliseconds.
fn millis(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(s) => {
            let s = s.trim();
            if let Some(n) = s.strip_suffix("ms") {
                n.trim().parse().ok()
            } else if let Some(n) = s.strip_suffix('s') {
                n.trim().parse::<u64>().ok()?.checked_mul(1000)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn duration_setting(
    key: &str,
    value: Option<&toml::Value>,
    default: u64,
    max_secs: u64,
    errors: &mut Vec<String>,
) -> u64 {
    let Some(v) = value else { return default };
    let secs = match v {
        toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|n| *n > 0),
        toml::Value::String(s) => parse_duration(s),
        _ => None,
    };
    match secs {
        Some(s) if s <= max_secs => s,
        Some(s) => {
            errors.push(format!(
                "{key}: {s} s is above the hard maximum of {max_secs} s"
            ));
            default
        }
        None => {
            errors.push(format!(
                "{key}: expected a duration such as \"30s\" or \"2m\", got {v}"
            ));
            default
        }
    }
}

fn parse_size(v: &toml::Value) -> Option<usize> {
    match v {
        toml::Value::Integer(n) => usize::try_from(*n).ok().filter(|n| *n > 0),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "B" => 1,
                "KiB" | "KB" | "K" => 1024,
                "MiB" | "MB" | "M" => 1024 * 1024,
                "GiB" | "GB" | "G" => 1024 * 1024 * 1024,
                _ => return None,
            };
            n.checked_mul(mult).filter(|n| *n > 0)
        }
        _ => None,
    }
}

/// True for a server or policy name: letters, digits, `-` and `_`, at most 64.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Config {
    /// Reads, parses and validates a config file and the policies it names.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let err = |errors: Vec<String>| ConfigError {
            file: file.to_path_buf(),
            errors,
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| err(vec![format!("cannot read the file: {e}")]))?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Self::parse(&text, file, &base)
    }

    /// Parses and validates config text; `file` names it in errors, `base` is the folder
    /// relative paths are taken from.
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
        let err = |errors: Vec<String>| ConfigError {
            file: file.to_path_buf(),
            errors,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| err(vec![e.to_string().trim().replace('\n', "\n  ")]))?;
        Self::validate(raw, file, base).map_err(err)
    }

    fn validate(raw: RawConfig, file: &Path, base: &Path) -> Result<Config, Vec<String>> {
        let mut errors = vec![];
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!(
                    "listen: expected an address such as \"127.0.0.1:8555\", got {listen_text:?}"
                ));
                None
            }
        };
        let store = raw
            .store
            .unwrap_or_else(|| "sqlite://toolgate.db".to_string());
        let store_ok = ["sqlite://", "redis://", "redis+unix://"]
            .iter()
            .any(|p| store.starts_with(p) && store.len() > p.len());
        if !store_ok {
            errors.push(format!("store: expected \"sqlite://PATH\" (one machine, the default) or \"redis://HOST:PORT/DB\" (grants, approvals, pins and counters shared by replicas), got {:?}", toolgate_store::redact_url(&store)));
        }
        let max_body = match &raw.max_body {
            None => DEFAULT_MAX_BODY,
            Some(v) => parse_size(v).unwrap_or_else(|| {
                errors.push(format!(
                    "max_body: expected a size such as \"4MiB\" or a number of bytes, got {v}"
                ));
                DEFAULT_MAX_BODY
            }),
        };
        let upstream_timeout_secs = timeout_setting(
            "upstream_timeout",
            raw.upstream_timeout.as_ref(),
            60,
            &mut errors,
        );
        let counters = raw.counters.clone();
        if let Some(c) = &counters {
            if !(c.starts_with("redis://") || c.starts_with("redis+unix://"))
                || c.len() <= "redis://".len()
            {
                errors.push(format!("counters: expected \"redis://HOST:PORT/DB\" (counters shared by replicas), got {:?}; leave it out to keep counters in the store", toolgate_store::redact_url(c)));
            }
        }
        let audit = Self::audit_config(raw.audit.as_ref(), &store, base, &mut errors);
        let tracing = match raw.tracing.as_ref().and_then(|t| t.otlp_endpoint.clone()) {
            None => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(TracingConfig {
                    otlp_endpoint: u,
                    service_name: raw
                        .tracing
                        .as_ref()
                        .and_then(|t| t.service_name.clone())
                        .unwrap_or_else(|| "toolgate".into()),
                })
            }
            Some(u) => {
                errors.push(format!(
                    "tracing.otlp_endpoint: expected an OTLP/HTTP URL such as \"http://127.0.0.1:4318\", got {u:?}"
                ));
                None
            }
        };
        let jwt = raw
            .auth
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|j| {
                let jwks = match (&j.jwks_file, &j.jwks_url) {
                    (Some(f), None) => JwksSource::File(base.join(f)),
                    (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
                        JwksSource::Url(u.clone())
                    }
                    (None, Some(u)) => {
                        errors.push(format!(
                            "auth.jwt.jwks_url: expected an https:// URL, got {u:?}"
                        ));
                        return None;
                    }
                    _ => {
                        errors.push(
                            "auth.jwt: give exactly one of `jwks_file` and `jwks_url`".into(),
                        );
                        return None;
                    }
                };
                if j.issuer.trim().is_empty() || j.audience.trim().is_empty() {
                    errors.push("auth.jwt: `issuer` and `audience` must not be empty".into());
                }
                Some(JwtConfig {
                    issuer: j.issuer.clone(),
                    audience: j.audience.clone(),
                    jwks,
                    identity_claim: j.identity_claim.clone().unwrap_or_else(|| "sub".into()),
                })
            });
        let approvals = match raw.approvals.as_ref() {
            None => ApprovalsConfig::default(),
            Some(a) => match (&a.webhook, &a.webhook_secret) {
                (None, None) => ApprovalsConfig::default(),
                (Some(url), Some(secret)) => {
                    if reqwest::Url::parse(url).is_err() || !url.starts_with("http") {
                        errors.push(format!(
                            "approvals.webhook: expected an http:// or https:// URL, got {url:?}"
                        ));
                    }
                    if secret.len() < 16 {
                        errors.push("approvals.webhook_secret: use at least 16 characters".into());
                    }
                    ApprovalsConfig {
                        webhook: Some(Webhook {
                            url: url.clone(),
                            secret: secret.clone(),
                        }),
                        ..ApprovalsConfig::default()
                    }
                }
                (Some(_), None) => {
                    errors.push("approvals.webhook_secret: required with `webhook` (the key that signs each POST)".into());
                    ApprovalsConfig::default()
                }
                (None, Some(_)) => {
                    errors.push(
                        "approvals.webhook: `webhook_secret` is set but `webhook` is not".into(),
                    );
                    ApprovalsConfig::default()
                }
            },
        };
        let approvals = ApprovalsConfig {
            max_pending_per_grant: count_setting(
                "approvals.max_pending_per_grant",
                raw.approvals
                    .as_ref()
                    .and_then(|a| a.max_pending_per_grant.as_ref()),
                DEFAULT_PENDING_PER_GRANT,
                100_000,
                &mut errors,
            ),
            ..approvals
        };
        let body_timeout_secs =
            timeout_setting("body_timeout", raw.body_timeout.as_ref(), 30, &mut errors);
        let header_timeout_secs = timeout_setting(
            "header_timeout",
            raw.header_timeout.as_ref(),
            DEFAULT_HEADER_TIMEOUT_SECS,
            &mut errors,
        );
        let max_answer = match &raw.max_answer {
            None => DEFAULT_MAX_ANSWER,
            Some(v) => parse_size(v).unwrap_or_else(|| {
                errors.push(format!(
                    "max_answer: expected a size such as \"64MiB\" or a number of bytes, got {v}"
                ));
                DEFAULT_MAX_ANSWER
            }),
        };
        let max_connections = count_setting(
            "max_connections",
            raw.max_connections.as_ref(),
            DEFAULT_MAX_CONNECTIONS,
            1 << 20,
            &mut errors,
        );
        let sessions = SessionLimits {
            per_grant: raw
                .max_sessions_per_grant
                .as_ref()
                .map(|v| count_setting("max_sessions_per_grant", Some(v), 1, 100_000, &mut errors)),
            per_server: raw.max_sessions_per_server.as_ref().map(|v| {
                count_setting("max_sessions_per_server", Some(v), 1, 100_000, &mut errors)
            }),
            idle_secs: duration_setting(
                "session_idle",
                raw.session_idle.as_ref(),
                DEFAULT_SESSION_IDLE_SECS,
                7 * 24 * 3600,
                &mut errors,
            ),
            idle_brief_secs: duration_setting(
                "session_idle_brief",
                raw.session_idle_brief.as_ref(),
                DEFAULT_SESSION_IDLE_BRIEF_SECS,
                7 * 24 * 3600,
                &mut errors,
            ),
        };
        let mut policies = BTreeMap::new();
        let mut policy_files = BTreeMap::new();
        let mut policy_versions = BTreeMap::new();
        for (name, path) in &raw.policies {
            if !valid_name(name) {
                errors.push(format!(
                    "policies.{name}: a policy name uses letters, digits, '-' and '_' only"
                ));
                continue;
            }
            let p = base.join(path);
            policy_files.insert(name.clone(), p.clone());
            match std::fs::read_to_string(&p) {
                Err(e) => errors.push(format!(
                    "policies.{name}: cannot read `{}`: {e}",
                    p.display()
                )),
                Ok(text) => match toolgate_policy::load_str(&text) {
                    Ok(l) => {
                        policy_versions.insert(name.clone(), policy_version(&text));
                        policies.insert(name.clone(), Arc::new(l.policy));
                    }
                    Err(e) => {
                        for d in e.errors {
                            errors.push(format!("policies.{name} (`{}`) {d}", p.display()));
                        }
                    }
                },
            }
        }
        let mut servers: Vec<ServerConfig> = vec![];
        for (i, s) in raw.servers.into_iter().enumerate() {
            let at = format!("servers[{i}]");
            if !valid_name(&s.name) {
                errors.push(format!("{at}.name: expected letters, digits, '-' and '_' (it becomes the path /mcp/NAME), got {:?}", s.name));
            }
            if servers.iter().any(|o| o.name == s.name) {
                errors.push(format!("{at}.name: `{}` is declared twice", s.name));
            }
            if let Some(p) = &s.policy {
                if !raw.policies.contains_key(p) {
                    errors.push(format!("{at}.policy: no policy named `{p}` in [policies]"));
                }
            }
            let url_count = usize::from(s.url.is_some())
                + usize::from(s.sse_url.is_some())
                + usize::from(s.command.is_some());
            if url_count > 1 {
                errors.push(format!(
                    "{at}: give one of `url` (Streamable HTTP), `sse_url` (legacy HTTP+SSE) or `command` (stdio)"
                ));
            }
            let transport = match (s.url.or(s.sse_url.clone()), s.command) {
                (Some(url), None) => {
                    let key = if s.sse_url.is_some() {
                        "sse_url"
                    } else {
                        "url"
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://"))
                        || reqwest::Url::parse(&url).is_err()
                    {
                        errors.push(format!(
                            "{at}.{key}: expected an http:// or https:// URL, got {url:?}"
                        ));
                    }
                    if !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                        errors.push(format!(
                            "{at}: `args`, `env` and `cwd` go with `command`, not `{key}`"
                        ));
                    }
                    let headers = s.headers.into_iter().collect();
                    Some(if s.sse_url.is_some() {
                        Transport::Sse { url, headers }
                    } else {
                        Transport::Http { url, headers }
                    })
                }
                (None, Some(command)) => {
                    if command.trim().is_empty() {
                        errors.push(format!("{at}.command: must not be empty"));
                    }
                    if !s.headers.is_empty() {
                        errors.push(format!("{at}.headers: headers go with `url` or `sse_url`; give a stdio server credentials through `env`"));
                    }
                    let command = if command == "toolgate" {
                        std::env::current_exe().unwrap_or_else(|_| PathBuf::from(command))
                    } else if command.contains('/') && !Path::new(&command).is_absolute() {
                        base.join(command)
                    } else {
                        PathBuf::from(command)
                    };
                    let cwd = s
                        .cwd
                        .map(|c| base.join(c))
                        .unwrap_or_else(|| base.to_path_buf());
                    Some(Transport::Stdio {
                        command,
                        args: s.args,
                        env: s.env.into_iter().collect(),
                        cwd,
                    })
                }
                (Some(_), Some(_)) => None,
                (None, None) => {
                    errors.push(format!(
                        "{at}: missing `url` (Streamable HTTP), `sse_url` (legacy HTTP+SSE) or `command` (stdio)"
                    ));
                    None
                }
            };
            let pinning = match s.pinning.as_deref() {
                None | Some("enforce") => Pinning::Enforce,
                Some("warn") => Pinning::Warn,
                Some("off") => Pinning::Off,
                Some(other) => {
                    errors.push(format!(
                        "{at}.pinning: expected \"enforce\", \"warn\" or \"off\", got {other:?}"
                    ));
                    Pinning::Enforce
                }
            };
            let state_fail_mode = match s.state_fail_mode.as_deref() {
                None | Some("closed") => FailMode::Closed,
                Some("open") => FailMode::Open,
                Some(other) => {
                    errors.push(format!(
                        "{at}.state_fail_mode: expected \"closed\" (refuse calls while the counter store or audit log is unreachable, the default) or \"open\" (let them through uncounted and unaudited), got {other:?}"
                    ));
                    FailMode::Closed
                }
            };
            let audit_arguments = match s.audit_arguments.as_deref() {
                None | Some("keys") => ArgumentsMode::Keys,
                Some("full") => ArgumentsMode::Full,
                Some(other) => {
                    errors.push(format!(
                        "{at}.audit_arguments: expected \"keys\" (names and a hash, the default) or \"full\" (values, redacted), got {other:?}"
                    ));
                    ArgumentsMode::Keys
                }
            };
            let redactor = Redactor::new(&s.redact, &s.audit_allow_secrets).unwrap_or_else(|e| {
                errors.push(format!("{at}.redact: {e}"));
                Redactor::default()
            });
            if let Some(transport) = transport {
                servers.push(ServerConfig {
                    name: s.name,
                    transport,
                    policy: s.policy,
                    pinning,
                    state_fail_mode,
                    sanitize_descriptions: s.sanitize_descriptions,
                    audit_arguments,
                    redactor,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(listen) = listen else {
            return Err(vec!["listen: invalid".into()]);
        };
        Ok(Config {
            file: file.to_path_buf(),
            listen,
            store,
            counters,
            base: base.to_path_buf(),
            max_body,
            upstream_timeout_secs,
            body_timeout_secs,
            header_timeout_secs,
            max_answer,
            max_connections,
            sessions,
            allowed_origins: raw.allowed_origins,
            allowed_hosts: raw.allowed_hosts,
            allow_private_upstreams: raw.allow_private_upstreams,
            servers,
            policies,
            policy_files,
            policy_versions,
            audit,
            approvals,
            jwt,
            tracing,
        })
    }

    fn audit_config(
        raw: Option<&RawAudit>,
        store: &str,
        base: &Path,
        errors: &mut Vec<String>,
    ) -> AuditConfig {
        let store_file = base.join(store.strip_prefix("sqlite://").unwrap_or("toolgate.db"));
        let path = match raw.and_then(|a| a.path.as_deref()) {
            Some(p) if !p.trim().is_empty() => base.join(p),
            Some(_) => {
                errors.push("audit.path: must not be empty".into());
                toolgate_store::AuditLog::path_beside(&store_file)
            }
            None => toolgate_store::AuditLog::path_beside(&store_file),
        };
        let retention_ms = match raw.and_then(|a| a.retention.as_deref()) {
            None => None,
            Some(text) => match parse_duration(text) {
                Some(secs) if secs >= 3600 => Some(secs.saturating_mul(1000)),
                Some(_) => {
                    errors.push(format!(
                        "audit.retention: {text:?} is under the minimum of 1h"
                    ));
                    None
                }
                None => {
                    errors.push(format!(
                        "audit.retention: expected a duration such as \"90d\", got {text:?}"
                    ));
                    None
                }
            },
        };
        let flush_ms = match raw.and_then(|a| a.flush_interval.as_ref()) {
            None => toolgate_store::DEFAULT_FLUSH_MS,
            Some(v) => match millis(v) {
                Some(ms) if (1..=1000).contains(&ms) => ms,
                _ => {
                    errors.push(format!(
                        "audit.flush_interval: expected a duration from \"1ms\" to \"1s\" (such as \"10ms\"), got {v}"
                    ));
                    toolgate_store::DEFAULT_FLUSH_MS
                }
            },
        };
        let sync = raw.and_then(|a| a.sync.as_deref());
        if sync.is_some_and(|s| s != "batched") && raw.is_some_and(|a| a.flush_interval.is_some()) {
            errors.push(
                "audit.flush_interval: only used with sync = \"batched\" (the default); remove it or the `sync` line".into(),
            );
        }
        let durability = match sync {
            None | Some("batched") => toolgate_store::Durability::Batched { flush_ms },
            Some("full") => toolgate_store::Durability::Full,
            Some("normal") => toolgate_store::Durability::Normal,
            Some(other) => {
                errors.push(format!(
                    "audit.sync: expected \"batched\" (the default: in the OS before a call is forwarded, on disk within flush_interval), \"full\" (on disk before a call is forwarded) or \"normal\" (survives a gateway crash, on disk when SQLite checkpoints), got {other:?}"
                ));
                toolgate_store::Durability::default()
            }
        };
        let postgres = match raw.and_then(|a| a.store.as_deref()) {
            None => None,
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Some(u.to_string())
            }
            Some(u) if u.starts_with("sqlite://") => {
                errors.push(format!(
                    "audit.store: leave it out for SQLite and use `audit.path`; got {u:?}"
                ));
                None
            }
            Some(u) => {
                errors.push(format!(
                    "audit.store: expected \"postgres://USER@HOST:PORT/DB\", got {:?}",
                    toolgate_store::redact_url(u)
                ));
                None
            }
        };
        AuditConfig {
            enabled: raw.and_then(|a| a.enabled).unwrap_or(true),
            path,
            retention_ms,
            durability,
            postgres,
        }
    }

    /// A server by name.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The files whose change triggers a reload: the config and every policy.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.file.clone()];
        v.extend(self.policy_files.values().cloned());
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("toolgate-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_good_config() {
        let d = dir("good");
        write(&d, "p.json", r#"{"version":"1","default":"deny"}"#);
        let f = write(&d, "toolgate.toml", "[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\ncommand = \"toolgate\"\nargs = [\"demo\", \"--stdio\"]\npolicy = \"p\"\n[[servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer x\" }\n");
        let c = Config::load(&f).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_body, DEFAULT_MAX_BODY);
        assert_eq!(c.servers.len(), 2);
        assert!(c.policies.contains_key("p"));
    }

    #[test]
    fn every_error_with_its_path() {
        let d = dir("bad");
        write(&d, "p.json", r#"{"version":"1","default":"sometimes"}"#);
        let f = write(&d, "toolgate.toml", "listen = \"nowhere\"\nmax_body = \"lots\"\nupstream_timeout = \"11m\"\nbody_timeout = \"forever\"\nstore = \"mysql://x\"\n[policies]\np = \"p.json\"\nq = \"missing.json\"\n[[servers]]\nname = \"a b\"\nurl = \"ftp://x\"\n[[servers]]\nname = \"c\"\n[[servers]]\nname = \"d\"\ncommand = \"x\"\npolicy = \"zz\"\n");
        let e = Config::load(&f).unwrap_err();
        let all = e.errors.join("\n");
        for needle in [
            "listen:",
            "max_body:",
            "upstream_timeout: 660 s is above the hard maximum of 600 s",
            "body_timeout: expected a duration",
            "store: expected \"sqlite://PATH\"",
            "policies.p",
            "/default",
            "policies.q: cannot read",
            "servers[0].name",
            "servers[0].url",
            "servers[1]: missing `url`",
            "servers[2].policy: no policy named `zz`",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let d = dir("unknown");
        let f = write(
            &d,
            "toolgate.toml",
            "[[servers]]\nname = \"a\"\nurll = \"http://x\"\n",
        );
        let e = Config::load(&f).unwrap_err();
        assert!(e.errors[0].contains("unknown field `urll`"), "{e}");
    }

    #[test]
    fn a_redis_store_keeps_the_audit_log_beside_the_config() {
        let d = dir("redis-store");
        let f = write(
            &d,
            "toolgate.toml",
            "store = \"redis://127.0.0.1:6379/3\"\n",
        );
        let c = Config::load(&f).unwrap();
        assert_eq!(c.store, "redis://127.0.0.1:6379/3");
        assert_eq!(
            c.audit.location(),
            d.join("toolgate-audit.db").display().to_string()
        );
    }
}
