//! `/api/v1/servers`: the upstream servers, their tools with scan results, pins and
//! policy states, and adding a Streamable HTTP or legacy SSE server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use toolgate_policy::edit::tool_state;
use toolgate_scan::ToolDef;
use toolgate_store::Role;

use super::policies::current_document;
use super::{admin_with_body, error, store_error, Authorized, Viewer};
use crate::config::{valid_name, Config, Pinning, ServerConfig, Transport};
use crate::manage::audit_admin;
use crate::state::AppState;

fn pinning(p: Pinning) -> &'static str {
    match p {
        Pinning::Enforce => "enforce",
        Pinning::Warn => "warn",
        Pinning::Off => "off",
    }
}

/// A server as the API shows it. Upstream credentials (header values, environment
/// values) only to `admin`; other roles see their names.
fn server_json(s: &ServerConfig, credentials: bool, tools: usize, held: usize) -> Value {
    let secret = |pairs: &[(String, String)]| -> Value {
        if credentials {
            Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        } else {
            json!(pairs.iter().map(|(k, _)| k).collect::<Vec<_>>())
        }
    };
    let (transport, url, extra) = match &s.transport {
        Transport::Http { url, headers } => {
            ("http", Some(url), json!({"headers": secret(headers)}))
        }
        Transport::Sse { url, headers } => ("sse", Some(url), json!({"headers": secret(headers)})),
        Transport::Stdio {
            command, args, env, ..
        } => (
            "stdio",
            None,
            if credentials {
                json!({"command": command.display().to_string(), "args": args, "env": secret(env)})
            } else {
                json!({"env": secret(env)})
            },
        ),
        Transport::Virtual { includes } => (
            "virtual",
            None,
            json!({"include": includes.iter().map(|i| json!({
                "server": i.server,
                "tools": i.tools,
                "prefix": i.prefix,
                "rename": i.rename.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "describe": i.describe.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })).collect::<Vec<_>>()}),
        ),
    };
    let mut v = json!({
        "name": s.name, "transport": transport, "url": url, "policy": s.policy,
        "pinning": if matches!(s.transport, Transport::Virtual { .. }) { "per included server" } else { pinning(s.pinning) }, "tools": tools, "held": held,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

/// `GET /api/v1/servers`.
pub(crate) async fn list(State(st): State<Arc<AppState>>, Authorized(who): Viewer) -> Response {
    let cfg = st.config();
    let mut out = vec![];
    for s in &cfg.servers {
        let pins = match exposed_pins(&st, s).await {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let held = pins.iter().filter(|p| p.pin.is_held()).count();
        out.push(server_json(s, who.role == Role::Admin, pins.len(), held));
    }
    Json(json!({ "servers": out })).into_response()
}

/// A pinned definition as agents of a server see it.
struct Exposed {
    pin: toolgate_store::Pin,
    /// The name agents call it by.
    name: String,
    /// On a virtual server: `server.tool` it comes from, and its description override.
    from: Option<(String, Option<String>)>,
}

/// The pinned definitions of a server's tools; a virtual server's are those of its
/// included servers that it exposes, under their exposed names.
async fn exposed_pins(
    st: &AppState,
    srv: &ServerConfig,
) -> Result<Vec<Exposed>, toolgate_store::StoreError> {
    let Transport::Virtual { includes } = &srv.transport else {
        let server = srv.name.clone();
        let pins = st.state(move |s| s.pins(&server)).await?;
        return Ok(pins
            .into_iter()
            .map(|p| Exposed {
                name: p.tool.clone(),
                pin: p,
                from: None,
            })
            .collect());
    };
    let mut out: Vec<Exposed> = vec![];
    for inc in includes {
        let server = inc.server.clone();
        let pins = st.state(move |s| s.pins(&server)).await?;
        for p in pins {
            let Some(name) = inc.expose(&p.tool) else {
                continue;
            };
            if out.iter().any(|e| e.name == name) {
                continue;
            }
            let describe = inc.description(&name).map(str::to_string);
            out.push(Exposed {
                from: Some((format!("{}.{}", inc.server, p.tool), describe)),
                name,
                pin: p,
            });
        }
    }
    Ok(out)
}

/// `GET /api/v1/servers/{name}/tools[?policy=P]`: the tools agents have been shown (the
/// pinned definitions, or the changed one waiting for approval), each with its scan
/// result and its state under the server's policy (or `P`).
pub(crate) async fn tools(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    _: Viewer,
) -> Response {
    let cfg = st.config();
    let Some(srv) = cfg.server(&name) else {
        return error(StatusCode::NOT_FOUND, &format!("no server named `{name}`"));
    };
    let pins = match exposed_pins(&st, srv).await {
        Ok(p) => p,
        Err(e) => return store_error(&e),
    };
    let mut defs = vec![];
    let mut held = vec![];
    for e in &pins {
        let p = &e.pin;
        let text = p.pending_definition.as_ref().or(p.definition.as_ref());
        let def = text
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .map(|mut v| {
                // A virtual server's tool as its agents see it.
                v["name"] = json!(e.name);
                if let Some((_, Some(d))) = &e.from {
                    v["description"] = json!(d);
                }
                v
            })
            .and_then(|v| ToolDef::from_value(&v));
        if let Some(d) = def {
            held.push((p.is_held(), e.from.as_ref().map(|(f, _)| f.clone())));
            defs.push(d);
        }
    }
    let report = toolgate_scan::report(&name, &defs);
    let policy = q.get("policy").cloned().or_else(|| srv.policy.clone());
    let doc = match &policy {
        Some(p) => match current_document(&st, p) {
            // The file compiled; if it does not (an edit refused by reload), the running policy.
            Ok((_, d)) => {
                let compiled = toolgate_policy::load_value(&d)
                    .ok()
                    .map(|l| Arc::new(l.policy))
                    .or_else(|| cfg.policies.get(p).cloned());
                compiled.map(|c| (d, c))
            }
            Err(r) => return r,
        },
        None => None,
    };
    let tools: Vec<Value> = report
        .tools
        .iter()
        .zip(defs.iter().zip(held))
        .map(|(t, (def, (is_held, from)))| {
            let (state, rule) = match &doc {
                Some((d, compiled)) => {
                    let s = tool_state(d, compiled, &def.name);
                    (s.state.as_str(), s.rule)
                }
                None => ("deny", "(no policy)".to_string()),
            };
            json!({
                "name": def.name, "title": def.title, "description": def.description,
                "state": state, "rule": rule,
                "pin": if is_held { "held" } else { "approved" },
                "upstream": from,
                "scan": {
                    "category": t.assessment.category.as_str(), "severity": t.assessment.severity.as_str(),
                    "confidence": t.assessment.confidence, "signals": t.assessment.signals,
                    "recommended": t.recommended,
                },
            })
        })
        .collect();
    Json(json!({
        "server": name, "policy": policy,
        "policy_version": policy.as_ref().and_then(|p| cfg.policy_versions.get(p)),
        "grade": report.grade.to_string(), "grade_reasons": report.grade_reasons,
        "pinning": pinning(srv.pinning), "tools": tools,
    }))
    .into_response()
}

/// True for addresses an admin-added upstream may not point at unless the config allows:
/// loopback, private, link-local, shared (CGNAT), unspecified, unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 224
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            // IPv4-compatible (deprecated `::a.b.c.d`) and multicast.
            if let Some(v4) = v6.to_ipv4() {
                return is_private(IpAddr::V4(v4));
            }
            if v6.is_multicast() {
                return true;
            }
            let seg = v6.segments();
            let first = seg[0];
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(seg[6]) << 16) | u32::from(seg[7]),
                )));
            }
            if first == 0x2002 {
                return is_private(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(seg[1]) << 16) | u32::from(seg[2]),
                )));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Refuses a URL whose host is, or resolves to, a private address.
async fn check_public(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if let Some(ip) = addrs.iter().find(|ip| is_private(**ip)) {
        return Err(format!(
            "`{host}` is a loopback or private address ({ip}); servers added through the API must be public unless the config sets `allow_private_upstreams = true`"
        ));
    }
    Ok(())
}

/// The `[[servers]]` block for a new server, as TOML text.
fn server_block(body: &Value) -> Result<(String, String, String), String> {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let name = s("name").ok_or("`name` is required")?;
    if !valid_name(&name) {
        return Err(format!(
            "`name` {name:?}: use letters, digits, '-' and '_' only"
        ));
    }
    if body.get("command").is_some() || body.get("args").is_some() {
        return Err("stdio servers (`command`) can be declared only in the config file, never through the API".into());
    }
    let (key, url) = match (s("url"), s("sse_url")) {
        (Some(u), None) => ("url", u),
        (None, Some(u)) => ("sse_url", u),
        _ => {
            return Err(
                "give exactly one of `url` (Streamable HTTP) or `sse_url` (legacy SSE)".into(),
            )
        }
    };
    let mut t = toml::Table::new();
    t.insert("name".into(), toml::Value::String(name.clone()));
    t.insert(key.into(), toml::Value::String(url.clone()));
    for k in ["policy", "pinning"] {
        if let Some(v) = s(k) {
            t.insert(k.into(), toml::Value::String(v));
        }
    }
    if let Some(h) = body.get("headers") {
        let Some(obj) = h.as_object() else {
            return Err("`headers` must be an object of strings".into());
        };
        let mut ht = toml::Table::new();
        for (k, v) in obj {
            let Some(v) = v.as_str() else {
                return Err(format!("`headers.{k}` must be a string"));
            };
            ht.insert(k.clone(), toml::Value::String(v.to_string()));
        }
        t.insert("headers".into(), toml::Value::Table(ht));
    }
    let mut wrapper = toml::Table::new();
    wrapper.insert(
        "servers".into(),
        toml::Value::Array(vec![toml::Value::Table(t)]),
    );
    let text = toml::to_string(&wrapper).map_err(|e| e.to_string())?;
    Ok((name, url, text))
}

/// `POST /api/v1/servers` (admin): adds a Streamable HTTP (`url`) or legacy SSE
/// (`sse_url`) server to the config file, validated first, live at once. Loopback and
/// private addresses are refused unless `allow_private_upstreams = true`; stdio commands
/// are never accepted here.
pub(crate) async fn add(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, body) = match admin_with_body(&st, &headers, Role::Admin, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (name, url, block) = match server_block(&body) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    if !st.config().allow_private_upstreams {
        if let Err(m) = check_public(&url).await {
            return error(StatusCode::FORBIDDEN, &m);
        }
    }
    let (s2, n2, who2) = (st.clone(), name.clone(), who.name.clone());
    let added = tokio::task::spawn_blocking(move || append_server(&s2, &n2, &who2, &block)).await;
    match added {
        Ok(Ok(shown)) => {
            audit_admin(
                &st,
                &who.name,
                format!("server `{name}` added ({url})"),
                Some(name),
            )
            .await;
            (StatusCode::CREATED, Json(shown)).into_response()
        }
        Ok(Err(r)) => r,
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("adding the server failed: {e}"),
        ),
    }
}

/// Appends the block to the config file (validated first, written atomically) and swaps
/// the new config in; the server as `admin` sees it. Blocking: run it off the async threads.
fn append_server(st: &AppState, name: &str, who: &str, block: &str) -> Result<Value, Response> {
    let _one_at_a_time = st.admin_lock.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = st.config();
    if cfg.server(name).is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("a server named `{name}` exists"),
        ));
    }
    let old = std::fs::read_to_string(&cfg.file).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read `{}`: {e}", cfg.file.display()),
        )
    })?;
    let text = format!(
        "{old}{}\n# added through the admin API by {} at {} ms\n{block}",
        if old.ends_with('\n') { "" } else { "\n" },
        who.replace('\n', " "),
        st.now_ms()
    );
    let new = Config::parse(&text, &cfg.file, &cfg.base).map_err(|e| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"error": "the server was refused by config validation", "errors": e.errors}),
            ),
        )
            .into_response()
    })?;
    crate::manage::write_atomically(&cfg.file, &text).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write `{}`: {e}", cfg.file.display()),
        )
    })?;
    let shown = new
        .server(name)
        .map(|s| server_json(s, true, 0, 0))
        .unwrap_or(Value::Null);
    st.set_config(new);
    Ok(shown)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "198.18.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::7f00:1",
            "ff02::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "100.128.0.1",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn blocks_are_valid_toml_and_refuse_commands() {
        let (name, _, text) = server_block(&json!({"name": "web", "url": "https://x.example/mcp",
            "headers": {"Authorization": "Bearer \"q\""}}))
        .unwrap();
        assert_eq!(name, "web");
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            back["servers"][0]["headers"]["Authorization"].as_str(),
            Some("Bearer \"q\"")
        );
        assert!(server_block(&json!({"name": "x", "command": "sh"})).is_err());
        assert!(server_block(&json!({"name": "x"})).is_err());
        assert!(server_block(&json!({"name": "a b", "url": "https://x"})).is_err());
    }
}
