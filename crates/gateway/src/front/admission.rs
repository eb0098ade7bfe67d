//! Admission: who may send this request. Server known, `Origin` allowed, bearer token →
//! an active grant for this server (or a JWT identity's grant, or the local grant of
//! `toolgate run`), a well-formed `MCP-Protocol-Version`, and the agent's session. Each
//! refusal is a [`Reject`], the one place such refusals become HTTP.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use toolgate_protocol::error_codes;
use toolgate_store::{Grant, GrantStatus};

use crate::config::ServerConfig;
pub use crate::error::Reject;
use crate::respond::{json_response, SESSION_HEADER, VERSION_HEADER};
use crate::session::Session;
use crate::state::AppState;

pub(crate) fn unauthorized(message: &str, invalid: bool) -> Reject {
    let value = if invalid {
        format!(
            "Bearer realm=\"toolgate\", error=\"invalid_token\", error_description=\"{message}\""
        )
    } else {
        "Bearer realm=\"toolgate\"".to_string()
    };
    let mut r = Reject::new(
        StatusCode::UNAUTHORIZED,
        error_codes::INVALID_REQUEST,
        message,
    );
    r.www_authenticate = Some(value);
    r
}

pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(origin) else {
        return false;
    };
    matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    )
}

/// The token of an `Authorization: Bearer TOKEN` header value, if it is one.
pub(crate) fn bearer_value(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The request's bearer token, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_value)
}

/// Authenticates the bearer token to an active grant for `server`.
pub(crate) async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    server: &str,
) -> Result<Grant, Reject> {
    if let Some(g) = st.local_grant.as_ref().filter(|g| g.server == server) {
        // Cached pin checks are valid for the store version read here (another process,
        // `toolgate tools approve`, may have changed the store).
        if let Err(e) = st.state_version().await {
            tracing::error!("state store check failed: {e}");
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::INTERNAL_ERROR,
                "the state store is unavailable; try again",
            ));
        }
        return Ok(g.clone());
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing bearer token: send `Authorization: Bearer TOKEN`",
            false,
        ));
    };
    let token = value.to_str().ok().and_then(bearer_value);
    let Some(token) = token else {
        return Err(unauthorized(
            "malformed Authorization header: expected `Bearer TOKEN`",
            true,
        ));
    };
    let grant = match st.grant_by_token(token).await {
        Ok(Some(g)) => g,
        Ok(None) if crate::jwt::looks_like_jwt(token) && st.jwt.is_some() => {
            return grant_for_jwt(st, token, server).await;
        }
        Ok(None) => return Err(unauthorized("unknown token", true)),
        Err(e) => {
            tracing::error!("grant lookup failed: {e}");
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::INTERNAL_ERROR,
                "the grant store is unavailable; try again",
            ));
        }
    };
    match grant.status(st.now_ms()) {
        GrantStatus::Active => {}
        GrantStatus::Expired => return Err(unauthorized("this token has expired", true)),
        GrantStatus::Revoked => return Err(unauthorized("this token was revoked", true)),
    }
    if grant.server != server {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            format!(
                "this token is for server `{}`, not `{server}`",
                grant.server
            ),
        ));
    }
    Ok(grant)
}

/// The grant a verified JWT's identity holds on `server`.
pub(crate) async fn grant_for_jwt(
    st: &AppState,
    token: &str,
    server: &str,
) -> Result<Grant, Reject> {
    let Some(v) = &st.jwt else {
        return Err(unauthorized("unknown token", true));
    };
    let identity = v.verify(token).map_err(|e| unauthorized(&e, true))?;
    let (srv, who, now) = (server.to_string(), identity.clone(), st.now_ms());
    match st
        .state(move |s| s.grant_for_identity(&srv, &who, now))
        .await
    {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            format!("no active grant for identity `{identity}` on server `{server}` (toolgate grants create --server {server} --label LABEL --identity {identity})"),
        )),
        Err(e) => {
            tracing::error!("grant lookup failed: {e}");
            Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::INTERNAL_ERROR,
                "the grant store is unavailable; try again",
            ))
        }
    }
}

/// Before the synchronous checks: fetches the issuer's keys again if a JWT names a key
/// id not seen yet (key rotation).
pub(crate) async fn refresh_keys(st: &AppState, headers: &HeaderMap) {
    let Some(v) = &st.jwt else {
        return;
    };
    if let Some(t) = bearer(headers).filter(|t| crate::jwt::looks_like_jwt(t)) {
        v.refresh_if_unknown(t).await;
    }
}

/// Where this server's protected resource metadata is (RFC 9728), from the request's host.
pub(crate) fn resource_metadata_url(headers: &HeaderMap, server: &str) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Some(format!(
        "{scheme}://{host}/.well-known/oauth-protected-resource/mcp/{server}"
    ))
}

/// `GET /.well-known/oauth-protected-resource/mcp/{server}` (RFC 9728).
pub(crate) async fn resource_metadata(
    State(st): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (Some(v), Some(_)) = (&st.jwt, st.config().server(&server)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let body = serde_json::json!({
        "resource": format!("{scheme}://{host}/mcp/{server}"),
        "authorization_servers": [v.issuer()],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("toolgate: server {server}"),
    });
    json_response(StatusCode::OK, body.to_string())
}

/// The checks shared by POST, GET and DELETE: server, origin, token.
/// True when `MCP-Protocol-Version` is absent or shaped like a revision date.
pub(crate) fn version_header_ok(headers: &HeaderMap) -> bool {
    headers.get(VERSION_HEADER).is_none_or(|v| {
        v.to_str().is_ok_and(|s| {
            s.len() == 10
                && s.as_bytes().iter().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        *c == b'-'
                    } else {
                        c.is_ascii_digit()
                    }
                })
        })
    })
}

pub(crate) const BAD_VERSION_HEADER: &str =
    "malformed MCP-Protocol-Version header: expected a date such as 2025-11-25";

pub(crate) async fn admit(
    st: &AppState,
    headers: &HeaderMap,
    server: &str,
) -> Result<(Arc<crate::config::Config>, ServerConfig, Grant), Reject> {
    let cfg = st.config();
    let Some(srv) = cfg.server(server).cloned() else {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            error_codes::INVALID_REQUEST,
            format!("no server named `{server}`"),
        ));
    };
    if !origin_allowed(headers, &cfg.allowed_origins) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            error_codes::INVALID_REQUEST,
            "origin not allowed",
        ));
    }
    let grant = authenticate(st, headers, server).await.map_err(|mut r| {
        if r.status() == StatusCode::UNAUTHORIZED && st.jwt.is_some() {
            if let (Some(w), Some(url)) =
                (&r.www_authenticate, resource_metadata_url(headers, server))
            {
                r.www_authenticate = Some(format!("{w}, resource_metadata=\"{url}\""));
            }
        }
        r
    })?;
    Ok((cfg, srv, grant))
}

pub(crate) fn session_of(
    st: &AppState,
    headers: &HeaderMap,
    srv: &ServerConfig,
    grant: &Grant,
    id_text: &str,
) -> Result<Arc<Session>, Reject> {
    let Some(sid) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_REQUEST,
            "missing Mcp-Session-Id header: send `initialize` first",
        )
        .for_id(id_text));
    };
    st.sessions.get(sid, &srv.name, &grant.id).ok_or_else(|| {
        Reject::new(
            StatusCode::NOT_FOUND,
            error_codes::SESSION_NOT_FOUND,
            "session not found (expired, closed or unknown): send `initialize` again",
        )
        .for_id(id_text)
    })
}

/// The checks of GET and DELETE: server, origin, token, then an existing session.
pub(crate) async fn admit_session(
    st: &AppState,
    headers: &HeaderMap,
    server: &str,
) -> Result<(ServerConfig, Arc<Session>), Reject> {
    let (_cfg, srv, grant) = admit(st, headers, server).await?;
    if !version_header_ok(headers) {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_REQUEST,
            BAD_VERSION_HEADER,
        ));
    }
    let session = session_of(st, headers, &srv, &grant, "null")?;
    let mut srv = srv;
    // `auth = "oauth"`: the stream and the session's end go with the identity's own token.
    if let Err(e) = crate::oauth::attach(st, &mut srv, &grant.identity, bearer(headers)).await {
        return Err(Reject::new(
            e.status(),
            error_codes::INVALID_REQUEST,
            e.to_string(),
        ));
    }
    Ok((srv, session))
}
