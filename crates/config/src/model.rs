//! The validated config: what the gateway runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::Digest as _;
use toolgate_audit::{ArgumentsMode, Redactor};
use toolgate_policy::Policy;

use crate::backend::{redact_url, AuditStore, StoreUrl};

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

/// Which protocol era an upstream speaks (`era` on a server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraSetting {
    /// Found out: a Streamable HTTP server is asked (`server/discover`) the first time a
    /// 2026-07-28 request needs to know, and the answer kept for a while; stdio and legacy
    /// SSE servers speak the legacy era (the default).
    #[default]
    Auto,
    /// The legacy era only (`initialize` and sessions): 2026-07-28 requests are relayed over
    /// a legacy session toolgate holds.
    Legacy,
    /// The 2026-07-28 era: its requests are forwarded as they are.
    Modern,
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
    /// A virtual server (`[[virtual_servers]]`): tools of other servers under one
    /// endpoint; toolgate answers `initialize` itself and opens a session per included
    /// server when first needed.
    Virtual {
        /// What it exposes, in config order (the first include that claims a name serves it).
        includes: Vec<crate::virtual_server::Include>,
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
    /// The protocol era it speaks (found out by default).
    pub era: EraSetting,
    /// `auth = "oauth"`: toolgate is its OAuth client, with one token set per identity
    /// (`None`: credentials, if any, are the static `headers`).
    pub oauth: Option<UpstreamOAuth>,
}

/// A server toolgate reaches as an OAuth client (`auth = "oauth"` or `"token_exchange"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamOAuth {
    /// Scopes asked for (none: what the server's challenge asks, if anything).
    pub scopes: Vec<String>,
    /// A client id registered beforehand (none: dynamic registration).
    pub client_id: Option<String>,
    /// The environment variable holding that client's secret, if it has one.
    pub client_secret_env: Option<String>,
    /// A Client ID Metadata Document toolgate is known by (an https URL the user hosts);
    /// `None`: toolgate's own at `{public_url}/oauth/client-metadata.json` when `public_url`
    /// is https. Used when the authorization server supports such documents.
    pub client_metadata_url: Option<String>,
    /// The authorization server (its issuer URL) toolgate trusts for this server; the one
    /// the server's metadata names must be it. `None`: the one discovered, except that
    /// `token_exchange` sends an agent's JWT only to the `[auth.jwt]` issuer unless this
    /// names another.
    pub authorization_server: Option<String>,
    /// `auth = "token_exchange"`: the agent's own JWT is exchanged (RFC 8693) for each
    /// call's token, with no consent step (`false`: `auth = "oauth"`, consent once).
    pub exchange: bool,
}

/// Where toolgate's token key comes from (`[oauth]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKeySource {
    /// A file holding 64 hex digits.
    File(PathBuf),
    /// An environment variable holding 64 hex digits.
    Env(String),
}

/// The `[oauth]` table: what toolgate needs as the OAuth client of its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The key token sets are sealed with at rest.
    pub token_key: TokenKeySource,
    /// The URL people's browsers reach toolgate at (`/oauth/callback` is under it);
    /// `None`: `http://` and the listen address.
    pub public_url: Option<String>,
}

/// The `[audit]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Record every judged request (default on). Off only for measuring its cost.
    pub enabled: bool,
    /// Delete records older than this many milliseconds (default: keep forever).
    pub retention_ms: Option<u64>,
    /// Where the log is kept: its own SQLite file (default: beside the store,
    /// `toolgate-audit.db`; `sync`: `batched` (in the OS before the call is forwarded, on
    /// disk within `flush_interval`: the default), `full` (fsync) or `normal`), or
    /// PostgreSQL (`store = "postgres://…"`, shared by replicas).
    pub store: AuditStore,
}

impl AuditConfig {
    /// Where the log is, for messages (a PostgreSQL URL without its password).
    pub fn location(&self) -> String {
        match &self.store {
            AuditStore::Postgres(url) => redact_url(url),
            AuditStore::Sqlite { path, .. } => path.display().to_string(),
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
    /// Where the state lives.
    pub store: StoreUrl,
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
    /// Extra accepted `Host` names (`"*"`: any); see the gateway's `host` module.
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
    /// `[oauth]`: required when a server has `auth = "oauth"`.
    pub oauth: Option<OAuthConfig>,
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
    /// The caps for a server reached over `transport`, `(per grant, per server)`: the
    /// configured ones, else the defaults for what a session costs there (a child process
    /// or a connection for stdio and legacy SSE; a table entry for Streamable HTTP).
    pub fn caps(&self, transport: &Transport) -> (usize, usize) {
        let (grant, server) = match transport {
            Transport::Http { .. } => (
                DEFAULT_HTTP_SESSIONS_PER_GRANT,
                DEFAULT_HTTP_SESSIONS_PER_SERVER,
            ),
            // A virtual session may hold a child process per included stdio server.
            Transport::Stdio { .. } | Transport::Sse { .. } | Transport::Virtual { .. } => {
                (DEFAULT_SESSIONS_PER_GRANT, DEFAULT_SESSIONS_PER_SERVER)
            }
        };
        (
            self.per_grant.unwrap_or(grant),
            self.per_server.unwrap_or(server),
        )
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

/// True for a server or policy name: letters, digits, `-` and `_`, at most 64.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Config {
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
