//! The two stages: serde reads the raw shape (unknown keys refused), then
//! [`Config::validate`] checks meaning and collects every error with its path. Policy
//! files are read through [`Files`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toolgate_audit::{ArgumentsMode, Redactor};
use toolgate_policy::duration::parse_duration;

use crate::backend::{
    audit_path_beside, is_redis, redact_url, AuditStore, Durability, StoreUrl, DEFAULT_FLUSH_MS,
};
use crate::files::{DiskFiles, Files};
use crate::model::*;
use crate::ConfigError;

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
    #[serde(default)]
    virtual_servers: Vec<crate::virtual_server::RawVirtual>,
    audit: Option<RawAudit>,
    approvals: Option<RawApprovals>,
    auth: Option<RawAuth>,
    tracing: Option<RawTracing>,
    oauth: Option<RawOAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    token_key_file: Option<String>,
    token_key_env: Option<String>,
    public_url: Option<String>,
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
    era: Option<String>,
    auth: Option<String>,
    scopes: Option<Vec<String>>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    client_metadata_url: Option<String>,
    authorization_server: Option<String>,
}

/// `state_fail_mode` of the server at `at` (a wrong value recorded, closed used).
fn fail_mode(at: &str, value: Option<&str>, errors: &mut Vec<String>) -> FailMode {
    match value {
        None | Some("closed") => FailMode::Closed,
        Some("open") => FailMode::Open,
        Some(other) => {
            errors.push(format!(
                "{at}.state_fail_mode: expected \"closed\" (refuse calls while the counter store or audit log is unreachable, the default) or \"open\" (let them through uncounted and unaudited), got {other:?}"
            ));
            FailMode::Closed
        }
    }
}

/// `audit_arguments` of the server at `at` (a wrong value recorded, keys used).
fn arguments_mode(at: &str, value: Option<&str>, errors: &mut Vec<String>) -> ArgumentsMode {
    match value {
        None | Some("keys") => ArgumentsMode::Keys,
        Some("full") => ArgumentsMode::Full,
        Some(other) => {
            errors.push(format!(
                "{at}.audit_arguments: expected \"keys\" (names and a hash, the default) or \"full\" (values, redacted), got {other:?}"
            ));
            ArgumentsMode::Keys
        }
    }
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

impl Config {
    /// Reads, parses and validates a config file and the policies it names, from disk.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Self::load_with(file, &DiskFiles)
    }

    /// [`Config::load`], reading the config and its policies through `files`.
    pub fn load_with(file: &Path, files: &dyn Files) -> Result<Config, ConfigError> {
        let text = files.read(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            errors: vec![format!("cannot read the file: {e}")],
        })?;
        Self::parse_with(&text, file, &base_of(file), files)
    }

    /// Parses and validates config text, reading its policies from disk; `file` names it
    /// in errors, `base` is the folder relative paths are taken from.
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, file, base, &DiskFiles)
    }

    /// [`Config::parse`], reading the policies through `files`.
    pub fn parse_with(
        text: &str,
        file: &Path,
        base: &Path,
        files: &dyn Files,
    ) -> Result<Config, ConfigError> {
        let err = |errors: Vec<String>| ConfigError {
            file: file.to_path_buf(),
            errors,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| err(vec![e.to_string().trim().replace('\n', "\n  ")]))?;
        Self::validate(raw, file, base, files).map_err(err)
    }

    fn validate(
        raw: RawConfig,
        file: &Path,
        base: &Path,
        files: &dyn Files,
    ) -> Result<Config, Vec<String>> {
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
        let store_url = StoreUrl::parse(&store, base);
        if store_url.is_none() {
            errors.push(format!("store: expected \"sqlite://PATH\" (one machine, the default) or \"redis://HOST:PORT/DB\" (grants, approvals, pins and counters shared by replicas), got {:?}", redact_url(&store)));
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
            if !is_redis(c) {
                errors.push(format!("counters: expected \"redis://HOST:PORT/DB\" (counters shared by replicas), got {:?}; leave it out to keep counters in the store", redact_url(c)));
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
                    if url::Url::parse(url).is_err() || !url.starts_with("http") {
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
            match read_policy(&p, files) {
                Err(PolicyFault::Unreadable(e)) => errors.push(format!(
                    "policies.{name}: cannot read `{}`: {e}",
                    p.display()
                )),
                Err(PolicyFault::Invalid(diagnostics)) => {
                    for d in diagnostics {
                        errors.push(format!("policies.{name} (`{}`) {d}", p.display()));
                    }
                }
                Ok((policy, version)) => {
                    policy_versions.insert(name.clone(), version);
                    policies.insert(name.clone(), policy);
                }
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
                        || url::Url::parse(&url).is_err()
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
                    let command = stdio_command(&command, base);
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
            let state_fail_mode = fail_mode(&at, s.state_fail_mode.as_deref(), &mut errors);
            let audit_arguments = arguments_mode(&at, s.audit_arguments.as_deref(), &mut errors);
            let redactor = Redactor::new(&s.redact, &s.audit_allow_secrets).unwrap_or_else(|e| {
                errors.push(format!("{at}.redact: {e}"));
                Redactor::default()
            });
            let era = match (s.era.as_deref(), &transport) {
                (None | Some("auto"), _) => EraSetting::Auto,
                (Some("legacy"), _) => EraSetting::Legacy,
                (Some("modern"), Some(Transport::Http { .. })) => EraSetting::Modern,
                (Some("modern"), _) => {
                    errors.push(format!("{at}.era: \"modern\" is for Streamable HTTP servers (`url`); stdio and legacy SSE servers speak the legacy era, and toolgate relays 2026-07-28 requests to them over a legacy session"));
                    EraSetting::Legacy
                }
                (Some(other), _) => {
                    errors.push(format!("{at}.era: expected \"auto\" (ask the server, the default), \"legacy\" or \"modern\", got {other:?}"));
                    EraSetting::Auto
                }
            };
            let oauth = match s.auth.as_deref() {
                None => {
                    for (key, given) in [
                        ("scopes", s.scopes.is_some()),
                        ("client_id", s.client_id.is_some()),
                        ("client_secret_env", s.client_secret_env.is_some()),
                        ("client_metadata_url", s.client_metadata_url.is_some()),
                        ("authorization_server", s.authorization_server.is_some()),
                    ] {
                        if given {
                            errors.push(format!("{at}.{key}: goes with `auth = \"oauth\"`"));
                        }
                    }
                    None
                }
                Some(mode @ ("oauth" | "token_exchange")) => {
                    if !matches!(transport, Some(Transport::Http { .. })) {
                        errors.push(format!(
                            "{at}.auth: `{mode}` is for Streamable HTTP servers (`url`)"
                        ));
                    }
                    if let Some(Transport::Http { headers, .. }) = &transport {
                        if headers
                            .iter()
                            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        {
                            errors.push(format!("{at}.headers.Authorization: a server with `auth = \"{mode}\"` gets each identity's own token; remove the static one"));
                        }
                    }
                    if raw.oauth.is_none() {
                        errors.push(format!("{at}.auth: `{mode}` needs an [oauth] table with `token_key_file` or `token_key_env` (the key tokens are sealed with at rest: `openssl rand -hex 32`)"));
                    }
                    let exchange = mode == "token_exchange";
                    if let Some(u) = &s.client_metadata_url {
                        if !u.starts_with("https://") {
                            errors.push(format!("{at}.client_metadata_url: a Client ID Metadata Document is at an https URL, got {u:?}"));
                        }
                    }
                    if let Some(u) = &s.authorization_server {
                        if !(u.starts_with("https://") || u.starts_with("http://")) {
                            errors.push(format!("{at}.authorization_server: the issuer URL of the authorization server (https, or http on loopback), got {u:?}"));
                        }
                    }
                    if exchange && raw.auth.as_ref().and_then(|a| a.jwt.as_ref()).is_none() {
                        errors.push(format!("{at}.auth: `token_exchange` exchanges the agent's own JWT, so it needs [auth.jwt] (JWT identities)"));
                    }
                    Some(crate::model::UpstreamOAuth {
                        scopes: s.scopes.clone().unwrap_or_default(),
                        client_id: s.client_id.clone(),
                        client_secret_env: s.client_secret_env.clone(),
                        client_metadata_url: s.client_metadata_url.clone(),
                        authorization_server: s.authorization_server.clone(),
                        exchange,
                    })
                }
                Some(other) => {
                    errors.push(format!(
                        "{at}.auth: expected \"oauth\" or \"token_exchange\", got {other:?}"
                    ));
                    None
                }
            };
            if let Some(transport) = transport {
                servers.push(ServerConfig {
                    oauth,
                    era,
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
        let real: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        for (i, v) in raw.virtual_servers.into_iter().enumerate() {
            let at = format!("virtual_servers[{i}]");
            if !valid_name(&v.name) {
                errors.push(format!("{at}.name: expected letters, digits, '-' and '_' (it becomes the path /mcp/NAME), got {:?}", v.name));
            }
            if servers.iter().any(|o| o.name == v.name) {
                errors.push(format!(
                    "{at}.name: `{}` is already the name of a server or virtual server",
                    v.name
                ));
            }
            if let Some(p) = &v.policy {
                if !raw.policies.contains_key(p) {
                    errors.push(format!("{at}.policy: no policy named `{p}` in [policies]"));
                }
            }
            let state_fail_mode = fail_mode(&at, v.state_fail_mode.as_deref(), &mut errors);
            let audit_arguments = arguments_mode(&at, v.audit_arguments.as_deref(), &mut errors);
            let includes = crate::virtual_server::includes(&at, v.include, &real, &mut errors);
            let included: Vec<&ServerConfig> = servers
                .iter()
                .filter(|s| includes.iter().any(|i| i.server == s.name))
                .collect();
            // What the included servers redact is redacted here too, and what any of them
            // sanitises is sanitised (unless said otherwise).
            let redactor = Redactor::strictest(included.iter().map(|s| &s.redactor));
            let sanitize = v
                .sanitize_descriptions
                .unwrap_or_else(|| included.iter().any(|s| s.sanitize_descriptions));
            servers.push(ServerConfig {
                name: v.name,
                transport: Transport::Virtual { includes },
                policy: v.policy,
                // Definitions are pinned per real server (each include's own setting).
                pinning: Pinning::Off,
                state_fail_mode,
                sanitize_descriptions: sanitize,
                audit_arguments,
                redactor,
                era: EraSetting::Legacy,
                oauth: None,
            });
        }
        let oauth = raw.oauth.map(|o| {
            let token_key = match (o.token_key_file, o.token_key_env) {
                (Some(f), None) => crate::model::TokenKeySource::File(base.join(f)),
                (None, Some(e)) => crate::model::TokenKeySource::Env(e),
                _ => {
                    errors.push("oauth: give one of `token_key_file` or `token_key_env` (64 hex digits: `openssl rand -hex 32`)".into());
                    crate::model::TokenKeySource::Env(String::new())
                }
            };
            if let Some(u) = &o.public_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    errors.push(format!("oauth.public_url: expected an http(s) URL, got {u:?}"));
                }
            }
            crate::model::OAuthConfig {
                token_key,
                public_url: o.public_url.map(|u| u.trim_end_matches('/').to_string()),
            }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let (Some(listen), Some(store)) = (listen, store_url) else {
            return Err(vec!["listen or store: invalid".into()]);
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
            oauth,
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
                audit_path_beside(&store_file)
            }
            None => audit_path_beside(&store_file),
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
            None => DEFAULT_FLUSH_MS,
            Some(v) => match millis(v) {
                Some(ms) if (1..=1000).contains(&ms) => ms,
                _ => {
                    errors.push(format!(
                        "audit.flush_interval: expected a duration from \"1ms\" to \"1s\" (such as \"10ms\"), got {v}"
                    ));
                    DEFAULT_FLUSH_MS
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
            None | Some("batched") => Durability::Batched { flush_ms },
            Some("full") => Durability::Full,
            Some("normal") => Durability::Normal,
            Some(other) => {
                errors.push(format!(
                    "audit.sync: expected \"batched\" (the default: in the OS before a call is forwarded, on disk within flush_interval), \"full\" (on disk before a call is forwarded) or \"normal\" (survives a gateway crash, on disk when SQLite checkpoints), got {other:?}"
                ));
                Durability::default()
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
                    redact_url(u)
                ));
                None
            }
        };
        AuditConfig {
            enabled: raw.and_then(|a| a.enabled).unwrap_or(true),
            retention_ms,
            store: match postgres {
                Some(url) => AuditStore::Postgres(url),
                None => AuditStore::Sqlite { path, durability },
            },
        }
    }
}

/// The folder a config file's relative paths are taken from (`.` for a bare name).
pub fn base_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Why a policy file could not be used.
pub(crate) enum PolicyFault {
    /// It could not be read.
    Unreadable(std::io::Error),
    /// It does not validate: each diagnostic with its JSON Pointer.
    Invalid(Vec<String>),
}

/// Reads and validates the policy file at `path`: the policy and its version.
pub(crate) fn read_policy(
    path: &Path,
    files: &dyn Files,
) -> Result<(Arc<toolgate_policy::Policy>, String), PolicyFault> {
    let text = files.read(path).map_err(PolicyFault::Unreadable)?;
    match toolgate_policy::load_str(&text) {
        Ok(l) => Ok((Arc::new(l.policy), policy_version(&text))),
        Err(e) => Err(PolicyFault::Invalid(
            e.errors.iter().map(ToString::to_string).collect(),
        )),
    }
}

/// A stdio server's program: `toolgate` means this binary, a relative path with a `/` is
/// taken from `base`, a bare name is looked up on `PATH` when started.
pub(crate) fn stdio_command(command: &str, base: &Path) -> PathBuf {
    if command == "toolgate" {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from(command))
    } else if command.contains('/') && !Path::new(command).is_absolute() {
        base.join(command)
    } else {
        PathBuf::from(command)
    }
}
