//! The discovery documents: a protected resource's metadata (RFC 9728) and its
//! authorization server's (RFC 8414), where to fetch each, and the checks that make a
//! document trustworthy: it must describe the URL it was fetched for (`resource`,
//! `issuer`), so a server cannot send toolgate's tokens, or its people, to an origin of
//! someone else's choosing.

use serde::Deserialize;
use url::Url;

use crate::OAuthError;

/// Where a protected resource's metadata may be, most specific first (RFC 9728 §3.1): the
/// well-known path with the resource's path appended, then at the root.
pub fn resource_metadata_urls(resource: &str) -> Result<Vec<String>, OAuthError> {
    let u = parse_url("the server URL", resource)?;
    Ok(well_known(&u, "oauth-protected-resource"))
}

/// Where an authorization server's metadata may be (RFC 8414 §3.1, then OpenID Connect
/// Discovery), most specific first.
pub fn server_metadata_urls(issuer: &str) -> Result<Vec<String>, OAuthError> {
    let u = parse_url("the authorization server", issuer)?;
    let mut urls = well_known(&u, "oauth-authorization-server");
    let path = u.path().trim_end_matches('/');
    let mut oidc = u.clone();
    oidc.set_query(None);
    if path.is_empty() {
        oidc.set_path("/.well-known/openid-configuration");
        urls.push(oidc.to_string());
    } else {
        // Both forms the MCP spec names for an issuer with a path.
        let mut inserted = oidc.clone();
        inserted.set_path(&format!("/.well-known/openid-configuration{path}"));
        urls.push(inserted.to_string());
        oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
        urls.push(oidc.to_string());
    }
    urls.dedup();
    Ok(urls)
}

fn well_known(u: &Url, name: &str) -> Vec<String> {
    let path = u.path().trim_end_matches('/');
    let mut at = u.clone();
    at.set_query(None);
    at.set_fragment(None);
    let mut urls = Vec::new();
    if !path.is_empty() {
        at.set_path(&format!("/.well-known/{name}{path}"));
        urls.push(at.to_string());
    }
    at.set_path(&format!("/.well-known/{name}"));
    urls.push(at.to_string());
    urls
}

fn parse_url(what: &str, s: &str) -> Result<Url, OAuthError> {
    let u = Url::parse(s)
        .map_err(|e| OAuthError::invalid(what, format!("`{s}` is not a URL ({e})")))?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err(OAuthError::invalid(
            what,
            format!("`{s}` is not an http(s) URL"),
        ));
    }
    if u.scheme() == "http" && !is_loopback(&u) {
        return Err(OAuthError::invalid(
            what,
            format!("`{s}` is plain http on a host that is not loopback: OAuth needs https there"),
        ));
    }
    Ok(u)
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether two resource URLs name the same thing ([`same_url`]); false when either is not
/// a URL. A stored token is sent only to the resource it was issued for.
pub fn same_resource(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => same_url(&a, &b),
        _ => false,
    }
}

/// A URL a server's `401` challenge names for its resource metadata (RFC 9728 §5.1),
/// checked as every other URL toolgate fetches for OAuth: http(s), https unless on
/// loopback.
pub fn challenge_metadata_url(s: &str) -> Result<String, OAuthError> {
    Ok(parse_url("the resource_metadata of the server's 401 challenge", s)?.to_string())
}

/// Two URLs naming the same thing: scheme, host and port equal, paths equal but for a
/// trailing slash.
fn same_url(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

/// A protected resource's metadata (RFC 9728), the parts toolgate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceMetadata {
    /// The resource's identifier: must be the server's URL.
    pub resource: String,
    /// Its authorization servers (issuers); toolgate uses the first.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

impl ResourceMetadata {
    /// Reads the document fetched for `server_url` and checks it: its `resource` must be
    /// that URL (RFC 9728 §3.3) and it must name an authorization server at an http(s)
    /// URL (https unless on loopback).
    pub fn read(server_url: &str, body: &[u8]) -> Result<Self, OAuthError> {
        let what = format!("the protected resource metadata of {server_url}");
        let m: ResourceMetadata = serde_json::from_slice(body).map_err(|e| {
            OAuthError::invalid(
                &what,
                format!("not the JSON document RFC 9728 describes ({e})"),
            )
        })?;
        let server = parse_url(&what, server_url)?;
        let resource = parse_url(&what, &m.resource)?;
        if !same_url(&server, &resource) {
            return Err(OAuthError::invalid(
                &what,
                format!(
                    "it describes `{}`, not this server: refused (a metadata document must name the resource it was fetched for)",
                    m.resource
                ),
            ));
        }
        let Some(issuer) = m.authorization_servers.first() else {
            return Err(OAuthError::invalid(
                &what,
                "it names no `authorization_servers`",
            ));
        };
        parse_url(&what, issuer)?;
        Ok(m)
    }

    /// The authorization server toolgate uses (the first named).
    pub fn issuer(&self) -> &str {
        self.authorization_servers
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// An authorization server's metadata (RFC 8414), the parts toolgate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerMetadata {
    /// Its identifier: must be the issuer it was fetched for.
    pub issuer: String,
    /// Where people consent.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Dynamic client registration (RFC 7591), if offered.
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// Token revocation (RFC 7009), if offered.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// PKCE methods; `S256` is required.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Grant types offered.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Client ID Metadata Documents accepted as client ids.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// It puts `iss` on every authorization answer (RFC 9207): then an answer without one
    /// is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl ServerMetadata {
    /// Reads the document fetched for `issuer` and checks it: its `issuer` must be that
    /// issuer (RFC 8414 §3.3), every endpoint an http(s) URL (https unless on loopback),
    /// and PKCE with `S256` offered (the MCP spec requires it; a server that lists no
    /// methods is refused too, since toolgate cannot tell).
    pub fn read(issuer: &str, body: &[u8]) -> Result<Self, OAuthError> {
        let what = format!("the authorization server metadata of {issuer}");
        let m: ServerMetadata = serde_json::from_slice(body).map_err(|e| {
            OAuthError::invalid(
                &what,
                format!("not the JSON document RFC 8414 describes ({e})"),
            )
        })?;
        let expected = parse_url(&what, issuer)?;
        let said = parse_url(&what, &m.issuer)?;
        if !same_url(&expected, &said) {
            return Err(OAuthError::invalid(
                &what,
                format!(
                    "its `issuer` is `{}`, not the server it was fetched from: refused",
                    m.issuer
                ),
            ));
        }
        for e in [
            Some(&m.authorization_endpoint),
            Some(&m.token_endpoint),
            m.registration_endpoint.as_ref(),
            m.revocation_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            parse_url(&what, e)?;
        }
        if !m
            .code_challenge_methods_supported
            .iter()
            .any(|c| c == "S256")
        {
            return Err(OAuthError::invalid(
                &what,
                "it does not offer PKCE with S256 (`code_challenge_methods_supported`), which MCP requires",
            ));
        }
        Ok(m)
    }

    /// True when refresh tokens may be asked for.
    pub fn offers_refresh(&self) -> bool {
        self.grant_types_supported.is_empty()
            || self
                .grant_types_supported
                .iter()
                .any(|g| g == "refresh_token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_put_the_path_after_the_well_known_name() {
        assert_eq!(
            resource_metadata_urls("http://127.0.0.1:9/mcp").unwrap(),
            vec![
                "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp",
                "http://127.0.0.1:9/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            server_metadata_urls("https://auth.example").unwrap(),
            vec![
                "https://auth.example/.well-known/oauth-authorization-server",
                "https://auth.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            server_metadata_urls("https://auth.example/tenant")
                .unwrap()
                .len(),
            4
        );
        assert!(
            resource_metadata_urls("http://example.com/mcp").is_err(),
            "plain http off loopback"
        );
        // The challenge's URL is held to the same rule.
        assert!(challenge_metadata_url("http://10.0.0.5/.well-known/x").is_err());
        assert!(challenge_metadata_url("file:///etc/passwd").is_err());
        assert!(challenge_metadata_url("https://as.example/.well-known/x").is_ok());
        assert!(same_resource(
            "https://a.example/mcp/",
            "https://A.example:443/mcp"
        ));
        assert!(!same_resource(
            "https://a.example/mcp",
            "https://b.example/mcp"
        ));
        assert!(!same_resource("not a url", "not a url"));
    }

    #[test]
    fn a_document_for_another_url_is_refused() {
        let prm = br#"{"resource":"http://127.0.0.1:9/mcp","authorization_servers":["http://127.0.0.1:8"]}"#;
        let m = ResourceMetadata::read("http://127.0.0.1:9/mcp/", prm).unwrap();
        assert_eq!(m.issuer(), "http://127.0.0.1:8");
        let other = br#"{"resource":"http://127.0.0.1:7/mcp","authorization_servers":["http://127.0.0.1:8"]}"#;
        let e = ResourceMetadata::read("http://127.0.0.1:9/mcp", other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not this server"), "{e}");
        let none = br#"{"resource":"http://127.0.0.1:9/mcp"}"#;
        assert!(ResourceMetadata::read("http://127.0.0.1:9/mcp", none).is_err());

        let asm = br#"{"issuer":"http://127.0.0.1:8","authorization_endpoint":"http://127.0.0.1:8/auth","token_endpoint":"http://127.0.0.1:8/token","code_challenge_methods_supported":["S256"]}"#;
        let s = ServerMetadata::read("http://127.0.0.1:8/", asm).unwrap();
        assert!(s.offers_refresh() && s.registration_endpoint.is_none());
        let e = ServerMetadata::read("http://127.0.0.1:6", asm)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the server it was fetched from"), "{e}");
        let no_pkce = br#"{"issuer":"http://127.0.0.1:8","authorization_endpoint":"http://127.0.0.1:8/auth","token_endpoint":"http://127.0.0.1:8/token"}"#;
        assert!(ServerMetadata::read("http://127.0.0.1:8", no_pkce)
            .unwrap_err()
            .to_string()
            .contains("S256"));
        let far = br#"{"issuer":"http://127.0.0.1:8","authorization_endpoint":"http://evil.example/auth","token_endpoint":"http://127.0.0.1:8/token","code_challenge_methods_supported":["S256"]}"#;
        assert!(ServerMetadata::read("http://127.0.0.1:8", far).is_err());
    }
}
